"""``lmech fit scaling results.csv --n COL (--d COL | --flop COL) --loss COL``: a scaling law for your runs.

Fits L(N, D) = E + A/N^α + B/D^β as Besiroglu et al. 2024 refit Hoffmann et al. 2022
(:mod:`lmech.laws.scaling`), prints the parameters with bootstrap intervals and the compute-optimal
allocation, and with ``--out`` draws iso-loss contours with the compute-optimal frontier beside the
runs over their fitted curves. The CSV is checked before any fitting: a missing or misspelled column,
a non-numeric, non-positive or NaN value, or fewer runs than parameters exit 2 naming the column or row.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np
from rich import box
from rich.progress import Progress
from rich.table import Table

from lmech.cli.common import EXIT_CODES_HELP, EXIT_OK, RichProgress, bars, out, print_json
from lmech.errors import BadInput


def _read_csv(path: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise BadInput("results", path, "the path of a CSV file with one row per training run")
    try:
        return pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BadInput("results", path, f"a readable CSV file with a header row ({exc})") from None


def _g(x: float) -> str:
    return f"{x:.4g}"


def _budgets(args, runs) -> np.ndarray:
    if args.budget:
        C = np.array(args.budget, float)
        if np.any(~np.isfinite(C) | (C <= 0)):
            raise BadInput("--budget", args.budget, "positive compute budgets in FLOP")
        return C
    top = float(np.max(6 * runs["N"] * runs["D"]))
    return top * np.array([1.0, 10.0, 100.0])


def cmd_fit_scaling(args: argparse.Namespace) -> int:
    from lmech.laws.scaling import PARAMS, fit_scaling
    from lmech.laws.tables import runs_from_table

    if args.bootstrap < 0:
        raise BadInput("--bootstrap", args.bootstrap, "a number of bootstrap replicates >= 0 (0: no intervals)")
    if not 0 < args.level < 1:
        raise BadInput("--level", args.level, "a confidence level in (0, 1), e.g. 0.95")
    if args.out is not None and Path(args.out).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise BadInput("--out", args.out, "a figure path ending in .png, .pdf or .svg")
    frame = _read_csv(args.results)
    runs = runs_from_table(frame, n=args.n, d=args.d, flop=args.flop, loss=args.loss,
                           drop_highest_loss=args.drop_highest_loss, source=Path(args.results).name)
    budgets = _budgets(args, runs)
    with bars(not args.json and args.bootstrap > 0) as shown:
        progress = RichProgress(shown if isinstance(shown, Progress) else None)
        fit = fit_scaling(runs["N"], runs["D"], runs["L"], bootstrap=args.bootstrap, seed=args.seed,
                          delta=args.delta, progress=progress)
        progress.close()
    opt = fit.compute_optimal(budgets, level=args.level)
    figure = None
    if args.out is not None:
        from lmech.report.scaling_plots import draw_scaling_fit

        figure = draw_scaling_fit(fit, runs["N"], runs["D"], runs["L"], Path(args.out), level=args.level)

    if args.json:
        doc = fit.to_dict(args.level) | {
            "source": str(args.results), "columns": {"n": args.n, "d": args.d, "flop": args.flop, "loss": args.loss},
            "dropped_rows": runs["dropped"].tolist(),
            "compute_optimal": [
                {"C": float(c)} | {k: float(opt[k]["value"][i]) for k in ("N", "D", "tokens_per_parameter")}
                | ({f"{k}_interval": [float(opt[k]["lo"][i]), float(opt[k]["hi"][i])]
                    for k in ("N", "D", "tokens_per_parameter")} if fit.bootstrap is not None else {})
                for i, c in enumerate(budgets)],
            "figure": str(figure) if figure else None}
        print_json(doc)
        return EXIT_OK

    s = fit.starts
    lines = [f"Chinchilla law L = E + A/N^alpha + B/D^beta fitted to {fit.n_points} runs of "
             f"{Path(args.results).name}."]
    if len(runs["dropped"]):
        k, rows = len(runs["dropped"]), ", ".join(map(str, runs["dropped"]))
        lines.append(f"Dropped the {k} highest losses: rows {rows}." if k > 1 else f"Dropped the highest loss: row {rows}.")
    lines.append(f"Huber loss (delta {fit.delta:g}) on log loss: {fit.objective:.10g}, the best of "
                 f"{sum(s.values())} L-BFGS starts ({s['converged']} converged, {s['merged into a better start']} "
                 f"merged into a better one, {s['stalled above the best start']} stalled above it).")
    for line in lines:
        out.print(textwrap.fill(line, width=80, break_on_hyphens=False), markup=False)
    boot = fit.bootstrap is not None
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    table.add_column("param")
    table.add_column("estimate", justify="right")
    if boot:
        table.add_column(f"{args.level:.0%} interval ({args.bootstrap} bootstraps)", justify="right")
        table.add_column("std. err.", justify="right")
        ci, se = fit.intervals(args.level), fit.standard_errors()
    for name in PARAMS:
        row = [name, _g(fit.params[name])]
        if boot:
            row += [f"[{_g(ci[name][0])}, {_g(ci[name][1])}]", _g(se[name])]
        table.add_row(*row)
    out.print(table)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False,
                  title="compute-optimal allocation, C = 6ND (Hoffmann et al. eq. 4)", title_justify="left")
    for col in ("C (FLOP)", "", "estimate") + ((f"{args.level:.0%} interval",) if boot else ()):
        table.add_column(col, justify="left" if col in ("", "C (FLOP)") else "right")
    names = {"N": "N_opt", "D": "D_opt", "tokens_per_parameter": "tokens/param"}
    for i, c in enumerate(budgets):
        for j, (key, label) in enumerate(names.items()):
            row = [f"{c:.3g}" if j == 0 else "", label, _g(opt[key]["value"][i])]
            if boot:
                row.append(f"[{_g(opt[key]['lo'][i])}, {_g(opt[key]['hi'][i])}]")
            table.add_row(*row)
    out.print(table)
    if figure:
        out.print(f"figure: {figure}")
    return EXIT_OK


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("fit", parents=[common], help="fit an empirical law to your own results",
                       description="Fit an empirical law to a CSV of your own runs.", epilog=EXIT_CODES_HELP)
    laws = s.add_subparsers(dest="law", required=True, metavar="LAW")
    p = laws.add_parser("scaling", parents=[common], help="L(N, D) = E + A/N^alpha + B/D^beta (Chinchilla)",
                        description="Fit L(N, D) = E + A/N^alpha + B/D^beta as Besiroglu et al. 2024 refit "
                        "Hoffmann et al. 2022: Huber loss (delta 1e-3) on log loss, L-BFGS from 4,500 starts, "
                        "bootstrap intervals, compute-optimal allocation for C = 6ND.", epilog=EXIT_CODES_HELP)
    p.add_argument("results", help="CSV file, one row per training run")
    p.add_argument("--n", required=True, metavar="COL", help="column of the parameter counts N")
    tokens = p.add_mutually_exclusive_group(required=True)
    tokens.add_argument("--d", metavar="COL", help="column of the training tokens D")
    tokens.add_argument("--flop", metavar="COL", help="column of the training compute C (then D = C / 6N)")
    p.add_argument("--loss", required=True, metavar="COL", help="column of the final losses")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B",
                   help="bootstrap replicates for the intervals (default 1000; 0: none)")
    p.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                   help="drop the K runs with the highest loss first (Besiroglu et al. drop 5)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    p.add_argument("--budget", type=float, action="append", metavar="FLOP",
                   help="compute budget for the allocation table (repeatable; default: the largest run's "
                   "compute, 10x and 100x it)")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber threshold on log-loss residuals (1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    p.add_argument("--json", action="store_true", help="one JSON object: params, intervals, allocation")
    p.add_argument("--out", metavar="FIG", default=None, help="draw the fit to this figure (.png, .pdf, .svg)")
    p.set_defaults(func=cmd_fit_scaling)
