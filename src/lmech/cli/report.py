"""``lmech report``: the HTML law book from the store."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmech.cli.common import EXIT_OK, out, store_of


def cmd_report(args: argparse.Namespace) -> int:
    from lmech.report.html import write_report

    store = store_of(args)
    ids = None if not args.all else [r.run_id for r in store.runs()]
    path = write_report(store, Path(args.out) if args.out else None, ids)
    out.print(f"report written to {path}")
    return EXIT_OK


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("report", parents=[common], help="write the HTML law book from the store",
                       description="Write the self-contained HTML report: the last law-book check, or --all runs.")
    s.add_argument("--out", metavar="PATH", default=None, help="output file (default: <store>/report.html)")
    s.add_argument("--all", action="store_true", help="every stored run instead of the last check")
    s.set_defaults(func=cmd_report)
