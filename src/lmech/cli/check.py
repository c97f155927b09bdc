"""``lmech check [NAMES]``: run the law book, print the verdicts, write the HTML report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from rich.progress import Progress

from lmech.cli.common import (
    EXIT_VIOLATED,
    RichProgress,
    bars,
    exit_code,
    out,
    outcome_json,
    print_json,
    store_of,
)
from lmech.cli.verdicts import STATE_COLOR, verdict_table
from lmech.errors import BadInput


def cmd_check(args: argparse.Namespace) -> int:
    from lmech import experiments
    from lmech.config import apply_overrides, to_dict
    from lmech.report.html import write_report
    from lmech.store import run_id

    names = args.names or experiments.names()
    exps = [experiments.get(n) for n in names]  # unknown names exit 2 before work
    entries = []
    for exp in exps:
        for label, config in exp.lawbook(quick=not args.full):
            overrides = {k: v for k, v in (("device", args.device), ("seed", args.seed)) if v is not None}
            entries.append((exp, label, apply_overrides(config, overrides)))
    store = store_of(args)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise BadInput("--workers", workers, "a number of worker processes >= 1")
    outcomes: dict[int, Any] = {}
    with bars(not args.json) as shown:
        book = shown.add_task("law book", total=len(entries)) if isinstance(shown, Progress) else None

        def finished(i: int, outcome) -> None:
            outcomes[i] = outcome
            if book is not None:
                shown.advance(book)
                word = outcome.verdict
                cached = ", cached" if outcome.cached else ""
                shown.console.print(f"{outcome.experiment} {outcome.label}: [{STATE_COLOR.get(word, 'red')}]{word}[/] "
                                    f"({outcome.duration_s:.1f} s{cached})")

        pending = []
        for i, (exp, label, config) in enumerate(entries):
            rid = run_id(exp.name, to_dict(config))
            if not args.force and store.is_finished(exp.name, rid):
                finished(i, experiments.execute(exp, config, store=store, label=label))  # read back
            else:
                pending.append(i)
        if workers > 1 and len(pending) > 1:
            # Independent runs: a process pool (one torch thread each), the driver alone writes the store.
            from lmech.experiments.runner import store_run
            from lmech.sweeps.executors import LocalExecutor, Task

            tasks = {run_id(entries[i][0].name, to_dict(entries[i][2])): i for i in pending}
            executor = LocalExecutor(min(workers, len(pending)))
            for run in executor.run(Task(entries[i][0].name, to_dict(entries[i][2]), entries[i][1])
                                    for i in pending):
                finished(tasks[run.run_id], run.outcome(store_run(store, run, force=args.force)))
        else:
            for i in pending:
                exp, label, config = entries[i]
                progress = RichProgress(shown if isinstance(shown, Progress) else None)
                finished(i, experiments.execute(exp, config, store=store, progress=progress, label=label,
                                                force=args.force))
                progress.close()
    outcomes = [outcomes[i] for i in range(len(entries))]
    store.write_lawbook([o.run_id for o in outcomes])
    report = write_report(store, Path(args.out) if args.out else None, [o.run_id for o in outcomes])
    if args.json:
        print_json({"verdicts": [v for o in outcomes for v in o.verdicts], "runs": [outcome_json(o) for o in outcomes],
                    "holds": all(o.holds for o in outcomes), "report": str(report)})
    else:
        out.print(verdict_table(outcomes, title="The law book"))
        held = sum(o.holds for o in outcomes)
        undecided = sum(o.verdict == "inconclusive" for o in outcomes)
        extra = f" ({undecided} inconclusive: the law book did not test them)" if undecided else ""
        out.print(f"{held}/{len(outcomes)} runs hold{extra}. Report: {report}")
    # A law book must test its laws: an inconclusive entry fails the check.
    return exit_code(outcomes, inconclusive=EXIT_VIOLATED)


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("check", parents=[common], help="run the law book, print the verdicts, write the report",
                       description="Run the law book (all laws, or NAMES), print the verdict table and write "
                       "the HTML report.",
                       epilog="Exit codes: 0 every entry holds, 1 an entry is violated or inconclusive (the law "
                       "book must test its laws), 2 bad input, 3 a run crashed.")
    s.add_argument("names", nargs="*", help="laws to check (default: all)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", default=True, help="quick configs (default)")
    g.add_argument("--full", action="store_true", help="the default (published-setting) configs")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps")
    s.add_argument("--seed", type=int, default=None, help="seed for every run")
    s.add_argument("--force", action="store_true", help="recompute runs already stored")
    s.add_argument("--workers", type=int, default=None,
                   help="run the law book's entries in N worker processes (default: one per core; 1 = in "
                   "this process, with a progress bar per run)")
    s.add_argument("--out", metavar="PATH", default=None, help="report path (default: <store>/report.html)")
    s.add_argument("--json", action="store_true", help="print one JSON object with the verdicts")
    s.set_defaults(func=cmd_check)
