"""The ``lmech`` command: a thin layer over the library.

Exit codes: 0 every requested law holds; 1 a law is violated; 2 bad input (nothing was run);
3 a run crashed (its traceback is kept in the store).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lmech.errors import BadInput

EXIT_OK, EXIT_VIOLATED, EXIT_BAD_INPUT, EXIT_FAILED = 0, 1, 2, 3

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


# -- progress --------------------------------------------------------------------------------------
class RichProgress:
    """Adapter from lmech's Progress protocol to a rich progress bar (drawn on stderr)."""

    def __init__(self, progress: Progress | None):
        self.progress, self.task = progress, None

    def start(self, total: int, description: str) -> None:
        if self.progress is None:
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, n)

    def close(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def _bars(enabled: bool) -> Progress | None:
    if not enabled:
        return None
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err, transient=True)


# -- shared helpers --------------------------------------------------------------------------------
def _store(args: argparse.Namespace):
    from lmech.store import RunStore

    return RunStore(args.store) if args.store else RunStore()


def _config(exp, args: argparse.Namespace):
    """The config of ``lmech run``/``sweep``: default or quick, then --seed/--device, then --set."""
    from lmech.config import apply_overrides

    base = exp.quick_config() if getattr(args, "quick", False) else exp.default_config()
    overrides: dict[str, Any] = {}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.device is not None:
        overrides["device"] = args.device
    config = apply_overrides(base, overrides)
    return apply_overrides(config, args.set or [])


def fmt(value: Any) -> str:
    from lmech.report.html import fmt as _fmt

    return _fmt(value)


def verdict_table(outcomes: Sequence[Any], title: str = "Verdicts") -> Table:
    """The terminal verdict table: one row per criterion of every run.

    Predicted and measured values are shown when the terminal is wide enough; the report and
    ``--json`` always carry them.
    """
    wide = out.width >= 150
    table = Table(title=title, title_justify="left", header_style="bold")
    columns = ["law", "config", "criterion"] + (["quantity", "predicted", "measured"] if wide else []) + [
        "agreement", "tolerance", "verdict", "run"]
    for col in columns:
        table.add_column(col, justify="right" if col in ("agreement", "tolerance") else "left",
                         max_width=40 if col == "quantity" else 26 if col in ("predicted", "measured") else None)
    for o in outcomes:
        run = o.run_id[:10] + (" (cached)" if o.cached else "")
        if not o.verdicts:
            word = f"[yellow]{o.status}[/]"
            blanks = [""] * (3 if wide else 0)
            table.add_row(o.experiment, o.label, o.error or "—", *blanks, "", "", word, run)
        for v in o.verdicts:
            tol = v["tolerance"]
            tol_text = f"in [{fmt(tol[0])}, {fmt(tol[1])}]" if isinstance(tol, list) else f"≤ {fmt(tol)}"
            word = "[green]holds[/]" if v["holds"] else "[red]violated[/]"
            if o.status == "diverged":
                word += " [yellow](diverged)[/]"
            extra = [v["quantity"], fmt(v["predicted"]), fmt(v["measured"])] if wide else []
            table.add_row(o.experiment, o.label, v["key"], *extra, fmt(v["agreement"]), tol_text, word, run)
    return table


def _outcome_json(o) -> dict[str, Any]:
    return {"experiment": o.experiment, "run_id": o.run_id, "label": o.label, "status": o.status,
            "holds": o.holds, "cached": o.cached, "path": str(o.path) if o.path else None,
            "error": o.error, "summary": o.summary}


def _exit_code(outcomes: Sequence[Any]) -> int:
    if any(o.status == "failed" for o in outcomes):
        return EXIT_FAILED
    return EXIT_OK if all(o.holds for o in outcomes) else EXIT_VIOLATED


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, allow_nan=True))


# -- commands --------------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from lmech import experiments
    from lmech.config import describe

    if args.name:
        exp = experiments.get(args.name)
        if args.json:
            _print_json([{"name": n, "type": t, "default": d, "help": h} for n, t, d, h in describe(exp.Config)])
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
        _print_json(rows)
        return EXIT_OK
    table = Table("name", "law", "citation", title="The law book", title_justify="left", header_style="bold")
    for r in rows:
        table.add_row(r["name"], r["law"], r["citation"])
    out.print(table)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from lmech import experiments

    exp = experiments.get(args.name)
    config = _config(exp, args)  # validated: bad input exits 2 before any work
    store = None if args.no_store else _store(args)
    with (_bars(not args.json) or _Null()) as bars:
        progress = RichProgress(bars if isinstance(bars, Progress) else None)
        outcome = experiments.execute(exp, config, store=store, progress=progress, force=args.force)
    if args.json:
        _print_json({"verdicts": outcome.verdicts, "runs": [_outcome_json(outcome)], "holds": outcome.holds})
    else:
        out.print(verdict_table([outcome], title=f"{exp.name}: {exp.law}"))
        if outcome.traceback:
            err.print(outcome.traceback)
        if outcome.path:
            out.print(f"[dim]run stored in {outcome.path}[/]")
    return _exit_code([outcome])


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
    store = _store(args)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise BadInput("--workers", workers, "a number of worker processes >= 1")
    outcomes: dict[int, Any] = {}
    with (_bars(not args.json) or _Null()) as bars:
        book = bars.add_task("law book", total=len(entries)) if isinstance(bars, Progress) else None

        def finished(i: int, outcome) -> None:
            outcomes[i] = outcome
            if book is not None:
                bars.advance(book)
                word = "holds" if outcome.holds else ("failed" if outcome.status == "failed" else "violated")
                color = "green" if outcome.holds else "red"
                cached = ", cached" if outcome.cached else ""
                bars.console.print(f"{outcome.experiment} {outcome.label}: [{color}]{word}[/] "
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
                finished(tasks[run.run_id], run.outcome(store_run(store, run)))
        else:
            for i in pending:
                exp, label, config = entries[i]
                progress = RichProgress(bars if isinstance(bars, Progress) else None)
                finished(i, experiments.execute(exp, config, store=store, progress=progress, label=label,
                                                force=args.force))
                progress.close()
    outcomes = [outcomes[i] for i in range(len(entries))]
    store.write_lawbook([o.run_id for o in outcomes])
    report = write_report(store, Path(args.out) if args.out else None, [o.run_id for o in outcomes])
    if args.json:
        _print_json({"verdicts": [v for o in outcomes for v in o.verdicts], "runs": [_outcome_json(o) for o in outcomes],
                     "holds": all(o.holds for o in outcomes), "report": str(report)})
    else:
        out.print(verdict_table(outcomes, title="The law book"))
        held = sum(o.holds for o in outcomes)
        out.print(f"{held}/{len(outcomes)} runs hold. Report: {report}")
    return _exit_code(outcomes)


def cmd_runs(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "show":
        if not args.arg:
            raise BadInput("runs show", None, "a run id (or a unique prefix)")
        rec = store.get(args.arg)
        if rec is None:
            raise BadInput("run id", args.arg, f"the id of a run in {store.root} (see `lmech runs list`)")
        if args.json:
            _print_json({"run_id": rec.run_id, "experiment": rec.experiment, "status": rec.status_info,
                         "config": rec.config, "meta": rec.meta, "summary": rec.summary, "verdicts": rec.verdicts,
                         "series": rec.series_names(), "prediction": rec.series_names("prediction"),
                         "figures": [str(p) for p in rec.figures()], "path": str(rec.path)})
            return EXIT_OK
        out.print(f"[bold]{rec.experiment}[/] run [bold]{rec.run_id}[/] — {rec.status}  ({rec.path})")
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
                    if c in frame]
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


def cmd_report(args: argparse.Namespace) -> int:
    from lmech.report.html import write_report

    store = _store(args)
    ids = None if not args.all else [r.run_id for r in store.runs()]
    path = write_report(store, Path(args.out) if args.out else None, ids)
    out.print(f"report written to {path}")
    return EXIT_OK


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


# -- parser ----------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="PATH", default=None,
                        help="run store folder (default: $LMECH_STORE or ./lab)")
    p = argparse.ArgumentParser(prog="lmech", description="The laboratory of learning mechanics: theory predicts, "
                                "training measures, a verdict compares.",
                                epilog="Exit codes: 0 laws hold, 1 a law is violated, 2 bad input, 3 a run crashed.")
    p.add_argument("--version", action="version", version=f"lmech {__import__('lmech').__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", parents=[common], help="the law book: name, law, citation",
                       description="List the laws; with NAME, the config fields of that law.")
    s.add_argument("name", nargs="?", help="show the config fields of this law")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_list)

    def run_options(s: argparse.ArgumentParser) -> None:
        s.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a config field (repeatable); `lmech list NAME` shows the fields")
        s.add_argument("--quick", action="store_true", help="start from the quick config (the law book's)")
        s.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (checked before any work)")
        s.add_argument("--seed", type=int, default=None, help="the run's seed")

    s = sub.add_parser("run", parents=[common], help="run one law and print its verdict",
                       description="Run one law: predict, train and measure, judge; store the run.")
    s.add_argument("name", help="the law (see `lmech list`)")
    run_options(s)
    s.add_argument("--force", action="store_true", help="recompute even if this exact run is already stored")
    s.add_argument("--no-store", action="store_true", help="do not record the run")
    s.add_argument("--json", action="store_true", help="print one JSON object with the verdicts")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("check", parents=[common], help="run the law book, print the verdicts, write the report",
                       description="Run the law book (all laws, or NAMES), print the verdict table and write "
                       "the HTML report.")
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

    s = sub.add_parser("runs", parents=[common], help="list, show or query stored runs",
                       description="Stored runs: `runs list`, `runs show ID`, `runs query SQL` (DuckDB over a "
                       "table named runs whose columns are config fields and summary metrics).")
    s.add_argument("action", nargs="?", default="list", choices=["list", "show", "query"])
    s.add_argument("arg", nargs="?", help="run id (show) or SQL (query)")
    s.add_argument("--experiment", default=None, help="only runs of this law (list)")
    s.add_argument("--all-columns", action="store_true", help="list every column (config and metrics)")
    s.add_argument("--json", action="store_true", help="rows as a JSON list of objects")
    s.set_defaults(func=cmd_runs)

    s = sub.add_parser("report", parents=[common], help="write the HTML law book from the store",
                       description="Write the self-contained HTML report: the last law-book check, or --all runs.")
    s.add_argument("--out", metavar="PATH", default=None, help="output file (default: <store>/report.html)")
    s.add_argument("--all", action="store_true", help="every stored run instead of the last check")
    s.set_defaults(func=cmd_report)

    try:  # sweeps add their own command when the package provides it
        from lmech.sweeps.cli import add_sweep_command
    except ImportError:
        pass
    else:
        add_sweep_command(sub, common, run_options)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BadInput as exc:
        err.print("[red]error:[/]", escape(str(exc)), emoji=False)  # the message verbatim (no markup, no :emoji:)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished runs are stored; rerun to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
