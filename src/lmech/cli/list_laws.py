"""``lmech list [NAME]``: the law book, or everything about one law before running it.

For one law: its config fields with the values ``lmech run NAME`` uses (``default_config()``, the one
source of truth, not the dataclass defaults) and those of ``--quick``; its law-book entries with the
command that runs each; and its criteria (key, tolerance, what is measured, why that tolerance).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from typing import Any

from rich.text import Text

from lmech.cli.common import EXIT_OK, fmt, out, print_json, store_of
from lmech.cli.tables import table_lines, terminal_width, wrap
from lmech.report.format import tolerance


def _diff(config, base) -> str:
    """The fields of ``config`` that differ from ``base``, as ``key=value``."""
    return " ".join(f"{f.name}={fmt(getattr(config, f.name))}" for f in dataclasses.fields(config)
                    if getattr(config, f.name) != getattr(base, f.name))


def entries_of(exp) -> list[dict[str, Any]]:
    """The law-book entries, quick and full, each with its config and the command that runs it."""
    from lmech.config import to_dict

    rows = []
    for book, quick in (("quick", True), ("full", False)):
        base = exp.quick_config() if quick else exp.default_config()
        for label, config in exp.lawbook(quick=quick):
            flag = " --quick" if quick else ""
            entry = f" --entry {shlex.quote(label)}" if label else ""
            rows.append({"book": book, "label": label, "command": f"lmech run {exp.name}{flag}{entry}",
                         "differs": _diff(config, base), "config": to_dict(config)})
    return rows


def criteria_of(exp, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """The law's criteria and where they come from: its declaration, else its latest stored run, else the
    keys its counterexamples name (tolerances then known only once it runs)."""
    declared = [c.to_dict() for c in exp.criteria()]
    if declared:
        return declared, "declared by the law"
    store = store_of(args)
    runs = [r for r in store.runs(exp.name) if r.verdicts] if store.root.is_dir() else []
    if runs:
        latest = max(runs, key=lambda r: r.status_info.get("finished", 0))
        rows = [{k: v.get(k) for k in ("key", "quantity", "tolerance", "why")} for v in latest.verdicts]
        return rows, f"as judged in its latest stored run {latest.run_id[:10]} (the law declares none)"
    keys = list(dict.fromkeys(k for cx in exp.counterexamples() for k in cx.criteria))
    rows = [{"key": k, "quantity": "", "tolerance": None, "why": ""} for k in keys]
    return rows, "named by its counterexamples; tolerances are stated when it runs (the law declares none)"


def describe_law(exp, args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``lmech list NAME --json`` prints."""
    from lmech.config import describe

    default, quick = exp.default_config(), exp.quick_config()
    fields = [{"name": n, "type": t, "default": _plain(getattr(default, n)), "quick": _plain(getattr(quick, n)),
               "help": h} for n, t, _, h in describe(exp.Config)]
    criteria, source = criteria_of(exp, args)
    return {"name": exp.name, "law": exp.law, "citation": exp.citation, "fields": fields,
            "entries": entries_of(exp), "criteria": criteria, "criteria_source": source}


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def heading(text: str, width: int) -> None:
    for part in wrap(text, width):
        out.print(Text(part, style="bold"))


def _print_law(info: dict[str, Any], width: int) -> None:
    say = out.print
    for line in wrap(f"{info['name']}: {info['law']}", width):
        say(Text(line, style="bold"))
    for line in wrap(info["citation"], width):
        say(Text(line, style="dim"))
    say("")
    heading(f"Config: `lmech run {info['name']}` uses the default column, --quick the quick column; "
            "--set KEY=VALUE changes one field.", width)
    rows = [[f["name"], f["type"], fmt(f["default"]), fmt(f["quick"])] for f in info["fields"]]
    # Values too long for their column go on their own lines below the field (wrapped, never cut).
    fixed = max(len(r[0]) for r in rows) + max(len(r[1]) for r in rows) + 6
    cap = max(8, (width - fixed) // 2)
    long_rows = [len(r[2]) > cap or len(r[3]) > cap for r in rows]
    shown = [r[:2] + (["(below)", "(below)"] if long else r[2:]) for r, long in zip(rows, long_rows)]
    lines = table_lines(["field", "type", "default", "quick"], shown)
    say(Text(lines[0], style="bold"))
    say(lines[1], markup=False)
    for line, f, row, long in zip(lines[2:], info["fields"], rows, long_rows):
        for part in wrap(line, width) if len(line) > width else [line]:
            say(part, markup=False, highlight=False)
        if long:
            for part in wrap(f"default: {row[2]}", width, "    ") + wrap(f"quick: {row[3]}", width, "    "):
                say(part, markup=False, highlight=False)
        for part in wrap(f["help"], width, "    "):
            say(Text(part, style="dim"))
    say("")
    heading("Law-book entries (`lmech check` runs the quick book; `lmech check --full` the full one):", width)
    for e in info["entries"]:
        head = f"  {e['book']:5}  {e['label'] or '(one entry)'}"
        say(head, markup=False, highlight=False)
        for part in wrap(e["command"], width, "      "):
            say(part, markup=False, highlight=False)
        if e["differs"]:
            for part in wrap(f"changes: {e['differs']}", width, "      "):
                say(Text(part, style="dim"))
    say("")
    heading(f"Criteria ({info['criteria_source']}):", width)
    for c in info["criteria"]:
        tol = tolerance(c["tolerance"]) if c.get("tolerance") is not None else "tolerance stated when it runs"
        for part in wrap(f"  {c['key']}  {tol}" + (f"  (where {c['when']})" if c.get("when") else ""), width, "  "):
            say(part, markup=False, highlight=False)
        if c.get("quantity"):
            for part in wrap(c["quantity"], width, "      "):
                say(part, markup=False, highlight=False)
        if c.get("why"):
            for part in wrap(f"why: {c['why']}", width, "      "):
                say(Text(part, style="dim"))


def cmd_list(args: argparse.Namespace) -> int:
    from lmech import experiments

    width = terminal_width()
    if args.name:
        info = describe_law(experiments.get(args.name), args)
        if args.json:
            print_json(info)
        else:
            _print_law(info, width)
        return EXIT_OK
    rows = [{"name": n, "law": experiments.get(n).law, "citation": experiments.get(n).citation}
            for n in experiments.names()]
    if args.json:
        print_json(rows)
        return EXIT_OK
    out.print(Text(f"The law book: {len(rows)} laws", style="bold"))
    for part in wrap("(`lmech list NAME`: one law's config, entries and criteria)", width):
        out.print(Text(part, style="dim"))
    for r in rows:
        out.print("")
        out.print(Text(r["name"], style="bold"))
        for part in wrap(r["law"], width, "    "):
            out.print(part, markup=False, highlight=False)
        for part in wrap(r["citation"], width, "    "):
            out.print(Text(part, style="dim"))
    return EXIT_OK


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("list", parents=[common], help="the law book, or one law's config, entries and criteria",
                       description="List the laws; with NAME, the config `lmech run NAME` uses (default and "
                       "quick values), the law-book entries with the command that runs each, and the criteria "
                       "with their tolerances.")
    s.add_argument("name", nargs="?", help="show this law's config, entries and criteria")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_list)
