"""``lmech runs [list|show ID|query SQL|verify [--repair]]``: the stored runs.

Tables are rendered by :mod:`lmech.cli.tables`: all-null and internal columns dropped, aligned columns
when they fit the terminal, a record view (one block per run) when they do not, or ``--format
csv|json|markdown`` for other programs. Nothing is cut.
"""

from __future__ import annotations

import argparse

from rich.text import Text

from lmech.cli.common import EXIT_OK, EXIT_STORAGE, err, fmt, out, print_json, store_of
from lmech.cli.tables import FORMATS, render, terminal_width, tidy, wrap
from lmech.errors import BadInput

#: The columns of `runs list` (without --all-columns).
LIST_COLUMNS = ["run_id", "experiment", "label", "status", "verdict", "duration_s", "finished", "damage"]


def _pairs(title: str, items: dict, width: int) -> None:
    """A titled block of ``key  value`` lines, values wrapped at spaces."""
    out.print(Text(title, style="bold"))
    if not items:
        out.print("  (none)", markup=False)
        return
    key_w = min(max(len(str(k)) for k in items), max(12, width // 3))
    for k, v in items.items():
        head = f"  {str(k).ljust(key_w)}  "
        text = fmt(v)
        if len(head) + len(text) <= width:
            out.print(head + text, markup=False, highlight=False)
        else:
            out.print(f"  {k}", markup=False, highlight=False)
            for part in wrap(text, width, " " * 6):
                out.print(part, markup=False, highlight=False)


def _show(store, args: argparse.Namespace) -> int:
    if not args.arg:
        raise BadInput("runs show", None, "a run id (or a unique prefix)")
    rec = store.get(args.arg, full=True)
    if rec is None:
        raise BadInput("run id", args.arg, f"the id of a run in {store.root} (see `lmech runs list`)")
    if args.json or args.format == "json":
        print_json({"run_id": rec.run_id, "experiment": rec.experiment, "status": rec.status_info,
                    "verdict": rec.verdict, "config": rec.config, "meta": rec.meta, "summary": rec.summary,
                    "verdicts": rec.verdicts, "series": rec.series_names(),
                    "prediction": rec.series_names("prediction"),
                    "figures": [str(p) for p in rec.figures()], "path": str(rec.path)})
        return EXIT_OK
    width = terminal_width()
    for part in wrap(f"{rec.experiment} run {rec.run_id} — {rec.status}, verdict {rec.verdict}  ({rec.path})", width):
        out.print(Text(part, style="bold"))
    if rec.damage:
        err.print(f"damaged: {rec.damage}", markup=False, highlight=False)
    _pairs("run", {"label": rec.meta.get("label", ""), "device": rec.meta.get("device_name"),
                   "torch": rec.meta.get("torch"), "lmech": rec.meta.get("lmech"),
                   "duration_s": rec.status_info.get("duration_s"),
                   "replay": f"lmech run --replay {rec.run_id}"}, width)
    _pairs("config", rec.config, width)
    _pairs("summary", rec.summary, width)
    if rec.status == "failed":
        err.print(rec.status_info.get("traceback", ""), markup=False, highlight=False)
    for part in wrap(f"series: {', '.join(rec.series_names())}; figures: "
                     f"{', '.join(p.name for p in rec.figures())}", width):
        out.print(part, markup=False, highlight=False)
    return EXIT_OK


def cmd_verify(store, args: argparse.Namespace) -> int:
    """Check every run against its checksums; list the damaged ones; ``--repair`` moves them aside."""
    records = store.verify()
    damaged = [r for r in records if r.damage is not None]
    moved = {r.run_id: str(store.set_aside(r)) for r in damaged} if args.repair else {}
    if args.json:
        print_json({"runs": len(records), "damaged": [{"run_id": r.run_id, "experiment": r.experiment,
                                                       "damage": r.damage, "moved_to": moved.get(r.run_id)}
                                                      for r in damaged]})
    else:
        for r in damaged:
            where = f" → moved to {moved[r.run_id]}" if r.run_id in moved else ""
            out.print(f"[red]damaged[/] {r.experiment}/{r.run_id}: {r.damage}{where}")
        hint = "" if args.repair or not damaged else " (`lmech runs verify --repair` moves them aside; " \
            "`lmech check` and sweeps recompute them)"
        out.print(f"{len(records) - len(damaged)}/{len(records)} runs intact in {store.root}{hint}")
    return EXIT_STORAGE if damaged and not args.repair else EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    store = store_of(args, existing=args.action != "list")
    fmt_name = "json" if args.json else args.format
    if args.action == "verify":
        return cmd_verify(store, args)
    if args.action == "show":
        return _show(store, args)
    if args.action == "query":
        if not args.arg:
            raise BadInput("runs query", None, "an SQL query over the table `runs`")
        import duckdb

        try:
            frame = store.query(args.arg)
        except duckdb.Error as exc:  # DuckDB's parser/binder errors are user input errors
            raise BadInput("SQL", args.arg, f"a valid query over table `runs` ({exc})") from None
        keep: list[str] = []
    else:
        frame = store.table(args.experiment)
        if not frame.empty and not args.all_columns:
            frame = frame[[c for c in LIST_COLUMNS if c in frame]]
        keep = LIST_COLUMNS[:-1]  # "damage" only where some run is damaged
    if fmt_name in ("table", "markdown"):  # for people: what carries nothing goes (csv and json keep all)
        frame = tidy(frame, keep=keep)
    if fmt_name == "table" and frame.empty:
        out.print(f"no runs in {store.root}" if args.action == "list" else "no rows", markup=False)
        return EXIT_OK
    print(render(frame, fmt_name))
    return EXIT_OK


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("runs", parents=[common], help="list, show, query or verify stored runs",
                       description="Stored runs: `runs list`, `runs show ID`, `runs query SQL` (DuckDB over a "
                       "table named runs whose columns are config fields and summary metrics; no file or "
                       "network access), `runs verify` (every file against its checksum; exit 5 if a run is "
                       "damaged) and `runs verify --repair` (move damaged runs to <store>/.damaged). Tables that "
                       "do not fit the terminal are shown one run per block; nothing is cut.")
    s.add_argument("action", nargs="?", default="list", choices=["list", "show", "query", "verify"])
    s.add_argument("arg", nargs="?", help="run id (show) or SQL (query)")
    s.add_argument("--experiment", default=None, help="only runs of this law (list)")
    s.add_argument("--all-columns", action="store_true", help="list every column (config and metrics)")
    s.add_argument("--format", choices=FORMATS, default="table",
                   help="table (aligned, or one block per run when too wide; default), csv, json or markdown")
    s.add_argument("--json", action="store_true", help="the same as --format json")
    s.add_argument("--repair", action="store_true", help="verify: move damaged runs aside (they are recomputed "
                   "by the next check or sweep)")
    s.set_defaults(func=cmd_runs)
