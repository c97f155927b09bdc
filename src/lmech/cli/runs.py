"""``lmech runs [list|show ID|query SQL|verify [--repair]]``: the stored runs."""

from __future__ import annotations

import argparse

from rich.table import Table

from lmech.cli.common import EXIT_OK, EXIT_STORAGE, err, fmt, out, print_json, store_of
from lmech.errors import BadInput


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
    store = store_of(args)
    if args.action == "verify":
        return cmd_verify(store, args)
    if args.action == "show":
        if not args.arg:
            raise BadInput("runs show", None, "a run id (or a unique prefix)")
        rec = store.get(args.arg, full=True)
        if rec is None:
            raise BadInput("run id", args.arg, f"the id of a run in {store.root} (see `lmech runs list`)")
        if args.json:
            print_json({"run_id": rec.run_id, "experiment": rec.experiment, "status": rec.status_info,
                        "verdict": rec.verdict, "config": rec.config, "meta": rec.meta, "summary": rec.summary,
                        "verdicts": rec.verdicts, "series": rec.series_names(),
                        "prediction": rec.series_names("prediction"),
                        "figures": [str(p) for p in rec.figures()], "path": str(rec.path)})
            return EXIT_OK
        out.print(f"[bold]{rec.experiment}[/] run [bold]{rec.run_id}[/] — {rec.status}  ({rec.path})")
        if rec.damage:
            err.print(f"[red]damaged:[/] {rec.damage}")
        out.print(f"label: {rec.meta.get('label', '')}   device: {rec.meta.get('device_name')}   "
                  f"torch {rec.meta.get('torch')}   lmech {rec.meta.get('lmech')}")
        cfg = Table("field", "value", title="config", title_justify="left")
        for k, v in rec.config.items():
            cfg.add_row(k, fmt(v))
        out.print(cfg)
        summ = Table("metric", "value", title="summary", title_justify="left")
        for k, v in rec.summary.items():
            summ.add_row(k, fmt(v))
        out.print(summ)
        if rec.status == "failed":
            err.print(rec.status_info.get("traceback", ""))
        out.print(f"series: {', '.join(rec.series_names())}; figures: {', '.join(p.name for p in rec.figures())}")
        return EXIT_OK
    if args.action == "query":
        if not args.arg:
            raise BadInput("runs query", None, "an SQL query over the table `runs`")
        import duckdb

        try:
            frame = store.query(args.arg)
        except duckdb.Error as exc:  # DuckDB's parser/binder errors are user input errors
            raise BadInput("SQL", args.arg, f"a valid query over table `runs` ({exc})") from None
    else:
        frame = store.table(args.experiment)
        if not frame.empty:
            cols = [c for c in ["run_id", "experiment", "label", "status", "holds", "duration_s", "finished"]
                    if c in frame] + (["damage"] if frame["damage"].notna().any() else [])
            frame = frame if args.all_columns else frame[cols]
    if args.json:
        print(frame.to_json(orient="records", date_format="iso", default_handler=str))
        return EXIT_OK
    if frame.empty:
        out.print(f"no runs in {store.root}")
        return EXIT_OK
    table = Table(*map(str, frame.columns), header_style="bold")
    for row in frame.itertuples(index=False):
        table.add_row(*(fmt(v) if not isinstance(v, str) else v for v in row))
    out.print(table)
    return EXIT_OK


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("runs", parents=[common], help="list, show, query or verify stored runs",
                       description="Stored runs: `runs list`, `runs show ID`, `runs query SQL` (DuckDB over a "
                       "table named runs whose columns are config fields and summary metrics; no file or "
                       "network access), `runs verify` (every file against its checksum; exit 5 if a run is "
                       "damaged) and `runs verify --repair` (move damaged runs to <store>/.damaged).")
    s.add_argument("action", nargs="?", default="list", choices=["list", "show", "query", "verify"])
    s.add_argument("arg", nargs="?", help="run id (show) or SQL (query)")
    s.add_argument("--experiment", default=None, help="only runs of this law (list)")
    s.add_argument("--all-columns", action="store_true", help="list every column (config and metrics)")
    s.add_argument("--json", action="store_true", help="rows as a JSON list of objects")
    s.add_argument("--repair", action="store_true", help="verify: move damaged runs aside (they are recomputed "
                   "by the next check or sweep)")
    s.set_defaults(func=cmd_runs)
