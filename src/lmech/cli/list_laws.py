"""``lmech list [NAME]``: the law book, or one law's config fields."""

from __future__ import annotations

import argparse

from rich.table import Table

from lmech.cli.common import EXIT_OK, fmt, out, print_json


def cmd_list(args: argparse.Namespace) -> int:
    from lmech import experiments
    from lmech.config import describe

    if args.name:
        exp = experiments.get(args.name)
        if args.json:
            print_json([{"name": n, "type": t, "default": d, "help": h} for n, t, d, h in describe(exp.Config)])
            return EXIT_OK
        out.print(f"[bold]{exp.name}[/]: {exp.law}\n[dim]{exp.citation}[/]\n")
        table = Table("field", "type", "default", "quick", "meaning", header_style="bold")
        quick = exp.quick_config()
        for name, tp, default, help_text in describe(exp.Config):
            table.add_row(name, tp, fmt(default), fmt(getattr(quick, name)), help_text)
        out.print(table)
        return EXIT_OK
    rows = [{"name": n, "law": experiments.get(n).law, "citation": experiments.get(n).citation}
            for n in experiments.names()]
    if args.json:
        print_json(rows)
        return EXIT_OK
    table = Table("name", "law", "citation", title="The law book", title_justify="left", header_style="bold")
    for r in rows:
        table.add_row(r["name"], r["law"], r["citation"])
    out.print(table)
    return EXIT_OK


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("list", parents=[common], help="the law book: name, law, citation",
                       description="List the laws; with NAME, the config fields of that law.")
    s.add_argument("name", nargs="?", help="show the config fields of this law")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_list)
