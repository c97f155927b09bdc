"""``lmech run NAME``: one law, predicted, trained, judged and stored."""

from __future__ import annotations

import argparse

from rich.progress import Progress

from lmech.cli.common import (
    EXIT_CODES_HELP,
    RichProgress,
    bars,
    config_of,
    err,
    exit_code,
    out,
    outcome_json,
    print_json,
    run_options,
    store_of,
)
from lmech.cli.verdicts import verdict_table


def cmd_run(args: argparse.Namespace) -> int:
    from lmech import experiments

    exp = experiments.get(args.name)
    config = config_of(exp, args)  # validated: bad input exits 2 before any work
    store = None if args.no_store else store_of(args)
    with bars(not args.json) as shown:
        progress = RichProgress(shown if isinstance(shown, Progress) else None)
        outcome = experiments.execute(exp, config, store=store, progress=progress, force=args.force)
    if args.json:
        print_json({"verdicts": outcome.verdicts, "runs": [outcome_json(outcome)], "holds": outcome.holds,
                    "verdict": outcome.verdict})
    else:
        out.print(verdict_table([outcome], title=f"{exp.name}: {exp.law}"))
        if outcome.traceback:
            err.print(outcome.traceback)
        if outcome.path:
            out.print(f"[dim]run stored in {outcome.path}[/]")
    return exit_code([outcome])


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("run", parents=[common], help="run one law and print its verdict",
                       description="Run one law: predict, train and measure, judge; store the run.",
                       epilog=EXIT_CODES_HELP)
    s.add_argument("name", help="the law (see `lmech list`)")
    run_options(s)
    s.add_argument("--force", action="store_true", help="recompute even if this exact run is already stored")
    s.add_argument("--no-store", action="store_true", help="do not record the run")
    s.add_argument("--json", action="store_true", help="print one JSON object with the verdicts")
    s.set_defaults(func=cmd_run)
