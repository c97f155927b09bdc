"""``lmech run NAME``: one law, predicted, trained, judged and stored.

``--entry LABEL`` runs a law-book entry (``lmech list NAME`` lists them; with ``--quick``, the quick law
book's, which ``lmech check`` runs); ``--replay RUN_ID`` recomputes a stored run from its stored config.
"""

from __future__ import annotations

import argparse

from rich.progress import Progress
from rich.text import Text

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
from lmech.cli.tables import terminal_width, wrap
from lmech.cli.verdicts import details_lines
from lmech.errors import BadInput


def replayed(args: argparse.Namespace):
    """The experiment and config of the stored run ``--replay ID`` (then --seed/--device/--set on top)."""
    from lmech import experiments
    from lmech.config import apply_overrides, from_dict

    store = store_of(args, existing=True)
    rec = store.get(args.replay)
    if rec is None:
        raise BadInput("--replay", args.replay, f"the id (or a unique prefix) of a run in {store.root} "
                       "(`lmech runs list`)")
    if args.name not in (None, rec.experiment):
        raise BadInput("name", args.name, f"the replayed run's law {rec.experiment!r} (or no name)")
    if args.entry is not None or args.quick:
        raise BadInput("--replay", args.replay, "no --entry or --quick (the stored run's config is the start)")
    exp = experiments.get(rec.experiment)
    config = from_dict(exp.Config, rec.config)
    overrides = {k: v for k, v in (("seed", args.seed), ("device", args.device)) if v is not None}
    config = apply_overrides(apply_overrides(config, overrides), args.set or [])
    return exp, config, rec.meta.get("label")


def cmd_run(args: argparse.Namespace) -> int:
    from lmech import experiments

    if args.replay:
        exp, config, label = replayed(args)
        force = True  # a replay recomputes, even when the same run is stored
    else:
        if not args.name:
            raise BadInput("name", None, "a law (see `lmech list`), or --replay RUN_ID")
        exp = experiments.get(args.name)
        config = config_of(exp, args)  # validated: bad input exits 2 before any work
        label = args.entry if args.entry else None
        force = args.force
    store = None if args.no_store else store_of(args)
    with bars(not args.json) as shown:
        progress = RichProgress(shown if isinstance(shown, Progress) else None)
        outcome = experiments.execute(exp, config, store=store, progress=progress, force=force, label=label)
    if args.json:
        print_json({"verdicts": outcome.verdicts, "runs": [outcome_json(outcome)], "holds": outcome.holds,
                    "verdict": outcome.verdict})
    else:
        for i, part in enumerate(wrap(f"{exp.name}: {exp.law}", terminal_width(), "")):
            out.print(Text(part, style="bold" if i == 0 else ""), highlight=False)  # the law, whole at 80 columns
        for line in details_lines([outcome]):
            out.print(line)
        if outcome.traceback:
            err.print(outcome.traceback, markup=False, highlight=False)
        if outcome.path:
            where = f"run stored in {outcome.path}"  # a long path goes on its own line, never cut
            for part in ([where] if len(where) <= terminal_width() else ["run stored in", str(outcome.path)]):
                out.print(Text(part, style="dim"), highlight=False)
    return exit_code([outcome])


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("run", parents=[common], help="run one law and print its verdict",
                       description="Run one law: predict, train and measure, judge; store the run. The config "
                       "is the law's default (`lmech list NAME` shows it), or the quick one (--quick), or a "
                       "law-book entry (--entry), or a stored run's (--replay); then --seed, --device, --set.",
                       epilog=EXIT_CODES_HELP)
    s.add_argument("name", nargs="?", help="the law (see `lmech list`)")
    run_options(s)
    s.add_argument("--entry", metavar="LABEL", default=None,
                   help="start from this law-book entry (`lmech list NAME` lists them; with --quick, the quick "
                   "law book's, as `lmech check` runs it)")
    s.add_argument("--replay", metavar="RUN_ID", default=None,
                   help="recompute a stored run from its stored config (`lmech runs list` gives the ids)")
    s.add_argument("--force", action="store_true", help="recompute even if this exact run is already stored")
    s.add_argument("--no-store", action="store_true", help="do not record the run")
    s.add_argument("--json", action="store_true", help="print one JSON object with the verdicts")
    s.set_defaults(func=cmd_run)
