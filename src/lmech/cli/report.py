"""``lmech report``: the HTML law book from the store (or a sweep's report with ``--sweep ID``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmech.cli.common import EXIT_OK, out, store_of
from lmech.errors import BadInput


def cmd_report(args: argparse.Namespace) -> int:
    from lmech.report.html import write_report, write_sweep_report

    store = store_of(args, existing=True)  # a typo in --store is an error, not a new folder
    if args.sweep:
        path = write_sweep_report(store, args.sweep, Path(args.out) if args.out else None)
        out.print(f"sweep report written to {path}", markup=False, highlight=False)
        return EXIT_OK
    runs = store.runs()
    if not runs:
        raise BadInput("--store", str(store.root), "a store holding runs (this one has none: `lmech check` or "
                       "`lmech run NAME` first)")
    ids = [r.run_id for r in runs] if args.all else None
    path = write_report(store, Path(args.out) if args.out else None, ids)
    out.print(f"report written to {path}", markup=False, highlight=False)
    return EXIT_OK


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("report", parents=[common], help="write the HTML law book from the store",
                       description="Write the self-contained HTML report: the last law-book check, --all runs, "
                       "or one sweep (--sweep ID: its summary figure and runs ordered by the swept values).")
    s.add_argument("--out", metavar="PATH", default=None,
                   help="output file (default: <store>/report.html; a sweep's: <store>/sweeps/<id>.html)")
    s.add_argument("--all", action="store_true", help="every stored run instead of the last check")
    s.add_argument("--sweep", metavar="ID", default=None, help="the report of this sweep (a unique prefix is enough)")
    s.set_defaults(func=cmd_report)
