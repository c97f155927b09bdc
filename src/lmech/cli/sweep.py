"""``lmech sweep``: a law over a grid or random search of configs, on local processes or a Ray cluster.

::

    lmech sweep deep-linear --grid init_scale=1e-2,1e-3,1e-4 --grid depth=2,3 --seeds 3
    lmech sweep deep-linear --grid lr=log:1e-3:1e-1:7 --executor ray --ray-address auto
    lmech sweep deep-linear --random 20 --range lr=log:1e-3:1e-1 --range init_scale=log:1e-4:1e-2
    lmech sweep --file sweeps/example.toml
    lmech sweep ... --plot x=lr,y=final_loss,hue=depth

The grid varies fields of the config that ``--quick``, ``--set``, ``--seed`` and ``--device`` give, as
for ``lmech run``. Every config is built and validated before any run starts (bad input exits 2).
Runs already finished in the store are skipped, so rerunning an interrupted sweep resumes it. Exit
code: 0 when every run finished (done or diverged), 3 when some failed (their tracebacks are stored;
a rerun retries them).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from lmech.cli.common import EXIT_FAILED, EXIT_OK, run_options
from lmech.errors import BadInput


def add(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to the ``lmech`` parser (``sub``: its subparsers)."""
    s = sub.add_parser("sweep", parents=[common], help="run a law over a grid or random search of configs",
                       description="Run a law over a grid (or random search) of configs, on local processes "
                       "or a Ray cluster; finished runs are skipped, so a rerun resumes.",
                       epilog="Grid specs: v1,v2,... | lin:a:b:n | log:a:b:n (tuple fields: tuples separated "
                       "by ';'). Ranges (--range, with --random N): lin:a:b | log:a:b | v1,v2,... "
                       "Exit codes: 0 every run finished (done or diverged), 2 bad input (nothing ran), "
                       "3 some run failed.")
    s.add_argument("name", nargs="?", help="the law (see `lmech list`); optional with --file")
    run_options(s)
    s.add_argument("--file", metavar="TOML", default=None, help="read the sweep from a TOML file "
                   "(flags given here are added: --grid/--set/--range append, others override)")
    s.add_argument("--grid", action="append", metavar="KEY=SPEC", help="a grid axis (repeatable): "
                   "KEY=v1,v2,... or KEY=lin:a:b:n or KEY=log:a:b:n")
    s.add_argument("--seeds", type=int, default=None, metavar="N", help="add the axis seed = base seed + 0..N-1")
    s.add_argument("--random", type=int, default=None, metavar="N", help="draw N random points from the --range's")
    s.add_argument("--range", action="append", dest="ranges", metavar="KEY=SPEC",
                   help="a random-search range (repeatable): KEY=lin:a:b (uniform), KEY=log:a:b (log-uniform) "
                   "or KEY=v1,v2,... (a choice)")
    s.add_argument("--sweep-seed", type=int, default=None, metavar="S", help="seed of the random draws (default 0)")
    s.add_argument("--executor", default=None, help="local (a process pool, default) or ray")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (local default: one per core; ray local instance: num_cpus)")
    s.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to join (e.g. auto, or ray://host:10001); default: start a local instance")
    s.add_argument("--force", action="store_true", help="recompute runs already stored")
    s.add_argument("--no-figures", action="store_true", help="do not draw each run's figures (faster)")
    s.add_argument("--plot", metavar="x=F,y=M[,hue=F]", default=None,
                   help="write a summary figure <store>/sweeps/<sweep_id>.png (e.g. x=lr,y=final_loss,hue=depth)")
    s.add_argument("--dry-run", action="store_true", help="list the planned runs (and which are stored); run nothing")
    s.add_argument("--json", action="store_true", help="print a JSON summary of the sweep")
    s.set_defaults(func=cmd_sweep)
    return s


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep's options: the file's (if any), then the command line's on top."""
    from lmech.sweeps import files

    opts: dict[str, Any] = files.load(args.file) if args.file else {}
    if args.name:
        if opts.get("experiment") not in (None, args.name):
            raise BadInput("name", args.name, f"the file's experiment {opts['experiment']!r} (or no name)")
        opts["experiment"] = args.name
    if not opts.get("experiment"):
        raise BadInput("experiment", None, "a law name (`lmech sweep NAME ...`) or `experiment = ...` in --file")
    opts["quick"] = bool(args.quick or opts.get("quick", False))
    for key in ("seed", "device", "seeds", "executor", "workers", "ray_address", "plot", "sweep_seed", "random"):
        value = getattr(args, key)
        if value is not None:
            opts[key] = value
    opts["set"] = list(opts.get("set", [])) + list(args.set or [])
    opts["grid"] = list(opts.get("grid", [])) + list(args.grid or [])
    opts["ranges"] = list(opts.get("ranges", [])) + list(args.ranges or [])
    if args.no_figures:
        opts["figures"] = False
    return opts


def cmd_sweep(args: argparse.Namespace) -> int:
    """The ``lmech sweep`` command (see the module docstring)."""
    from lmech import experiments
    from lmech.report.html import write_sweep_report
    from lmech.store import RunStore
    from lmech.sweeps.executors import make_executor
    from lmech.sweeps.plot import check_metric, parse_plot
    from lmech.sweeps.sweep import SweepSpec, plan

    opts = _options(args)
    spec = SweepSpec(experiment=opts["experiment"], quick=opts["quick"], overrides=tuple(opts["set"]),
                     seed=opts.get("seed"), device=opts.get("device"), grid=tuple(opts["grid"]),
                     random=opts.get("random", 0), ranges=tuple(opts["ranges"]), seeds=opts.get("seeds", 0),
                     sweep_seed=opts.get("sweep_seed", 0))
    sweep = plan(spec)  # every config validated: bad input exits 2 before any work
    exp = experiments.get(spec.experiment)
    plot = parse_plot(opts["plot"], exp.Config) if opts.get("plot") else None
    store = RunStore(args.store) if args.store else RunStore()
    if plot is not None:  # y is checked against the law's stored runs before any work, where there are some
        check_metric(plot, exp, store.table(exp.name))
    if args.dry_run:
        return _dry_run(sweep, store, args)
    executor = make_executor(opts.get("executor", "local"), opts.get("workers"), opts.get("ray_address"))
    report = _run_with_progress(sweep, store, executor, force=args.force, figures=opts.get("figures", True),
                                quiet=args.json)
    plot = plot if plot is not None else default_plot(sweep, store, exp)
    try:
        plot_path = _plot(sweep, store, plot) if plot is not None else None
    except BadInput as exc:  # the runs ran and are stored: say so, and keep the sweep's own exit code
        plot_path = None
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[red]no summary figure:[/] {escape(str(exc))} (the sweep's runs are stored)")
    html = write_sweep_report(store, sweep.sweep_id)
    if args.json:
        print(json.dumps({**report.to_dict(), "store": str(store.root), "plot": str(plot_path) if plot_path else None,
                          "report": str(html), "runs": [{"run_id": p.run_id, "values": p.values} for p in sweep.points]},
                         indent=2, default=str, allow_nan=True))
    else:
        _print_summary(report, store, plot_path, sweep, html)
    failed = [rid for rid, status in report.computed.items() if status == "failed"]
    return EXIT_FAILED if failed else EXIT_OK


def _dry_run(sweep, store, args) -> int:
    from lmech.sweeps.sweep import pending

    _todo, finished = pending(sweep, store, args.force)
    done = {p.run_id for p in finished}
    rows = [{"run_id": p.run_id, "values": p.values, "stored": p.run_id in done} for p in sweep.points]
    if args.json:
        print(json.dumps({"sweep_id": sweep.sweep_id, "total": len(rows), "stored": len(done), "runs": rows},
                         indent=2, default=str))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table("run", *sweep.scales, "stored", title=f"sweep {sweep.sweep_id}: {sweep.experiment}, "
                  f"{len(rows)} runs ({len(done)} stored)", title_justify="left", header_style="bold")
    for p in sweep.points:
        table.add_row(p.run_id[:10], *(str(p.values.get(k, "")) for k in sweep.scales), "yes" if p.run_id in done else "")
    Console(highlight=False, soft_wrap=True, emoji=False).print(table)
    return EXIT_OK


def _run_with_progress(sweep, store, executor, *, force: bool, figures: bool, quiet: bool):
    """Run the sweep with one rich bar on stderr (done/total, failures, ETA) and a line per finished run."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from lmech.sweeps.sweep import run_sweep

    err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("[red]{task.fields[failures]} failed[/]"), TimeElapsedColumn(), TextColumn("eta"),
                   TimeRemainingColumn(), console=err, transient=True, disable=quiet)
    state: dict[str, Any] = {}

    def on_start(to_compute: int, skipped: int) -> None:
        err.print(f"sweep {sweep.sweep_id}: {sweep.experiment}, {len(sweep)} runs — {skipped} already stored, "
                  f"{to_compute} to compute on {getattr(executor, 'name', '?')} "
                  f"({getattr(executor, 'workers', None) or 'auto'} workers)")
        state["task"] = bar.add_task(f"sweep {sweep.sweep_id}", total=to_compute, failures=0)

    def on_run(event) -> None:
        run = event.run
        color = {"done": "green", "diverged": "yellow", "failed": "red"}[run.status]
        where = escape(" ".join(f"{k}={v}" for k, v in event.point.values.items()))
        extra = ""
        if run.status == "diverged":
            extra = f" at step {run.diverged_at}"
        elif run.status == "failed":
            extra = f": {escape(run.error or '')}"
        elif run.summary.get("holds") is not None:
            extra = " (law holds)" if run.summary["holds"] else " (law violated)"
        bar.console.print(f"[{color}]{run.status}[/]{extra}  {event.done}/{event.total}  {run.run_id[:10]}  {where}  "
                          f"[dim]{run.duration_s:.1f} s[/]")
        bar.update(state["task"], advance=1, failures=event.failures)

    with bar:
        return run_sweep(sweep, store, executor, force=force, figures=figures, on_run=on_run, on_start=on_start)


def _plot(sweep, store, plot):
    from lmech.sweeps.plot import plot_sweep
    from lmech.sweeps.sweep import sweep_dir

    table = store.table(sweep.experiment)
    ids = {p.run_id for p in sweep.points}
    table = table[table["run_id"].isin(ids)] if not table.empty else table
    path = plot_sweep(table, plot, sweep_dir(store) / f"{sweep.sweep_id}.png", sweep.scales,
                      title=f"{sweep.experiment}: sweep {sweep.sweep_id}")
    return path


def default_plot(sweep, store, exp):
    """The summary figure drawn when ``--plot`` is not given: the law's first criterion (its agreement)
    against the first numeric swept field, one line per value of the second; None if nothing is numeric."""
    from lmech.sweeps.plot import PlotSpec

    numeric = [k for k in sweep.scales if k != "seed"
               and all(isinstance(p.values.get(k), (int, float)) and not isinstance(p.values.get(k), bool)
                       for p in sweep.points)]
    if not numeric:
        return None
    keys = [c.key for c in exp.criteria()]
    if not keys:
        for p in sweep.points:
            rec = store.get(p.run_id)
            if rec is not None and rec.verdicts:
                keys = [v["key"] for v in rec.verdicts]
                break
    if not keys:
        return None
    others = [k for k in sweep.scales if k not in ("seed", numeric[0])]
    return PlotSpec(numeric[0], keys[0], others[0] if others else None)


def query_hint(sweep) -> str:
    """A query whose answer reads in a terminal: the swept fields, status and verdict of this sweep's law."""
    keys = [k for k in sweep.scales if k != "seed"] + (["seed"] if "seed" in sweep.scales else [])
    cols = ", ".join(keys + ["status", "verdict"])
    order = f" order by {', '.join(keys)}" if keys else ""
    return f"lmech runs query \"select {cols} from runs where experiment = '{sweep.experiment}'{order}\""


def _print_summary(report, store, plot_path, sweep, html) -> None:
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=True, emoji=False)
    c = report.counts()
    out.print(f"sweep {report.sweep_id}: {report.total} runs — {len(report.skipped)} already stored, "
              f"{len(report.computed)} computed ([green]{c['done']} done[/], [yellow]{c['diverged']} diverged[/], "
              f"[red]{c['failed']} failed[/]) in {report.wall_s:.1f} s")
    for rid, error in report.errors.items():
        out.print(f"  [red]failed[/] {rid[:10]}: {escape(error)}  (`lmech runs show {rid[:10]}` for the traceback)")
    out.print(f"runs in {store.root}; spec {report.spec_path}", markup=False, highlight=False)
    if plot_path is not None:
        out.print(f"summary figure: {plot_path}", markup=False, highlight=False)
    out.print(f"report (runs ordered by the swept values): {html}", markup=False, highlight=False)
    out.print(f"query: {query_hint(sweep)}", markup=False, highlight=False)

