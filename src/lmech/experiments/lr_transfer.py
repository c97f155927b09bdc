r"""Learning-rate transfer across a family of networks: curves, their optima, how far the optimum moves.

The two transfer laws (``mu-transfer`` across width, ``depth-transfer`` across depth) measure the same
object: for each parametrization and each size :math:`s` (a width or a depth), the loss after training
at every rate of a grid of :math:`\log_2\eta` (one :func:`lmech.experiments.lr_grid.train_lr_grid` run
per network). This module holds what they share:

* :func:`measure_curves` computes the curves, one independent *point* (one network) at a time, in
  process or through the sweep machinery (:mod:`lmech.experiments.point_sweep`: resumable, on a
  process pool or Ray);
* :func:`optima` reads each curve's optimum as the vertex of a parabola in :math:`\log_2\eta`
  (:func:`lmech.experiments.lr_grid.parabola_optimum`), never the grid's argmin;
* :func:`shift` is how far the optimum moves across sizes (max − min, and smallest − largest size),
  with the reason it cannot be judged (fewer than two sizes, too narrow a span, an optimum at the
  grid's edge or a vertex clipped to the points it was fitted to);
* :func:`transferred` is the loss at every size at the rate tuned on the smallest (TP V's claim that a
  rate tuned small transfers: Yang et al. 2022, arXiv 2203.03466, §5);
* :func:`draw_curves` and :func:`ramp` draw TP V Fig. 1: loss vs :math:`\log_2\eta`, one curve per size.

A curve frame has one row per (parametrization, size, rate): columns ``parametrization``, the size
column (``width`` or ``depth``), ``log2_lr``, ``lr``, ``loss`` (inf for a diverged run),
``final_loss``, ``diverged_at`` and ``first_loss``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from lmech.errors import BadInput
from lmech.experiments.base import NullProgress, Progress, Result, RunConfig
from lmech.experiments.lr_grid import LrGridRun, parabola_optimum

__all__ = ["check_sweep", "curve_frame", "draw_curves", "measure_curves", "measure_transfer", "optima", "ramp", "shift",
           "transfer_figure", "transferred"]

def check_sweep(sizes_field: str, sizes: Sequence[int], log2_lrs: Sequence[float],
                parametrizations: Sequence[str]) -> None:
    """The rules every transfer config obeys: distinct increasing sizes, at least 3 increasing log2 rates
    spaced by at most 1 (one grid step is a factor 2: the tolerance of the laws), distinct parametrizations."""
    if len(set(sizes)) != len(sizes) or list(sizes) != sorted(sizes):
        raise BadInput(sizes_field, sizes, f"distinct {sizes_field} in increasing order")
    x = np.asarray(log2_lrs, dtype=float)
    if len(x) < 3 or np.any(np.diff(x) <= 0) or np.any(np.diff(x) > 1.0 + 1e-9):
        raise BadInput("log2_lrs", log2_lrs, "at least 3 increasing log2 learning rates, spaced by at most 1 "
                       "(a factor 2)")
    if not parametrizations or len(set(parametrizations)) != len(parametrizations):
        raise BadInput("parametrizations", parametrizations, "distinct parametrizations")


def curve_frame(run: LrGridRun, log2_lrs: Sequence[float], parametrization: str, size_column: str, size: int,
                steps: int) -> pd.DataFrame:
    """One network's curve: ``loss`` is the mean training loss over the last quarter of the steps (the
    minibatch losses, so the number a training curve shows at its end, less noisy than its last step),
    inf when the run diverged; ``final_loss`` the loss on the fixed evaluation batch after the last step."""
    tail = run.losses[-max(1, steps // 4):]
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(np.isfinite(tail), tail, np.nan), axis=0) if len(tail) else run.final
    loss = np.where(np.isfinite(run.final) & np.isfinite(mean), mean, np.inf)
    return pd.DataFrame({"parametrization": parametrization, size_column: size, "log2_lr": list(log2_lrs),
                         "lr": [2.0**v for v in log2_lrs], "loss": loss, "final_loss": run.final,
                         "diverged_at": run.diverged_at, "first_loss": run.losses[0]})


def measure_curves(name: str, config: RunConfig, axes: tuple[str, str],
                   curve: Callable[[RunConfig, str, int], pd.DataFrame], progress: Progress | None = None
                   ) -> pd.DataFrame:
    """Every curve of ``config``: one point per (parametrization, size) along ``axes`` (the tuple fields
    naming them), computed by ``curve(point, parametrization, size)`` in this process
    (``config.executor == "inline"``) or as a sweep of law ``name`` on ``config.executor``
    (:func:`lmech.experiments.point_sweep.run_points`: each point a run in ``config.store``, finished
    points reused, so an interrupted measurement resumes)."""
    from lmech.experiments.point_sweep import INLINE, run_points, split

    progress = progress or NullProgress()
    points = split(config, axes, INLINE)
    progress.start(len(points), name)
    if config.executor == "inline" or len(points) == 1:
        frames = []
        for point in points:
            frames.append(curve(point, getattr(point, axes[0])[0], getattr(point, axes[1])[0]))
            progress.advance(1)
    else:
        done = run_points(name, config, axes, executor=config.executor, store=config.store,
                          workers=config.workers, ray_address=config.ray_address, fixed=INLINE)
        frames = [series["curves"] for _, series in done]
        progress.advance(len(points))
    return pd.concat(frames, ignore_index=True)


def measure_transfer(name: str, config: RunConfig, axes: tuple[str, str], size_column: str,
                     curve: Callable[[RunConfig, str, int], pd.DataFrame], min_span: float,
                     progress: Progress | None = None) -> Result:
    """A transfer law's measurement: the curves (:func:`measure_curves`), their optima, and in the summary
    each parametrization's ``_shift`` (max − min of its optimum) and ``_drop`` (smallest minus largest size)."""
    curves = measure_curves(name, config, axes, curve, progress)
    opt = optima(curves, size_column)
    summary = {}
    for par in getattr(config, axes[0]):
        total, drop, _, _ = shift(opt, par, size_column, min_span)
        summary[f"{par}_shift"], summary[f"{par}_drop"] = total, drop
    return Result(series={"curves": curves, "optima": opt}, summary=summary)


def optima(curves: pd.DataFrame, size_column: str) -> pd.DataFrame:
    """The parabola optimum of every curve: one row per parametrization and size (``log2_lr``, its fitted
    ``loss``, the grid's best point, ``clipped``, ``edge``: why the optimum is not bracketed, else ""). A
    vertex clipped to its fitting window is not bracketed either: ``edge`` says so, and the verdicts that
    are inconclusive at an edge optimum (:func:`shift`, :func:`transferred`) are inconclusive there too."""
    rows = []
    for (par, size), curve in curves.groupby(["parametrization", size_column], sort=False):
        curve = curve.sort_values("log2_lr")
        opt = parabola_optimum(curve["log2_lr"].to_numpy(), curve["loss"].to_numpy())
        edge = opt.edge or ""
        if opt.clipped:
            edge = (f"the parabola's vertex (log2 lr {opt.vertex:.3g}) is outside the points it was fitted to "
                    f"[{opt.window[0]:g}, {opt.window[1]:g}]")
        rows.append({"parametrization": par, size_column: int(size), "log2_lr": opt.log2_lr, "loss": opt.loss,
                     "grid_log2_lr": opt.grid_log2_lr, "grid_loss": opt.grid_loss, "clipped": opt.clipped,
                     "edge": edge})
    return pd.DataFrame(rows, columns=["parametrization", size_column, "log2_lr", "loss", "grid_log2_lr",
                                       "grid_loss", "clipped", "edge"])


def span_problem(sizes: Sequence[int], size_column: str, min_span: float) -> str | None:
    """Why the sizes cannot judge a transfer law: fewer than two, or a ratio largest/smallest below ``min_span``."""
    if len(sizes) < 2:
        return f"one {size_column} only: the law compares {size_column}s (this is one point of a sweep)"
    if max(sizes) / min(sizes) < min_span:
        return (f"{size_column}s span {max(sizes) / min(sizes):g}×, less than the {min_span:g}× the law is "
                "judged over")
    return None


def shift(opt: pd.DataFrame, parametrization: str, size_column: str, min_span: float
          ) -> tuple[float, float, str | None, dict]:
    """How far ``parametrization``'s optimal log2 lr moves across sizes: (max − min, smallest size's minus
    largest size's, why it cannot be judged or None, optimum by size)."""
    sel = opt[opt.parametrization == parametrization].sort_values(size_column)
    per_size = {str(s): v for s, v in zip(sel[size_column].tolist(), sel["log2_lr"].tolist())}
    if sel.empty:
        return math.nan, math.nan, f"{parametrization} was not run", per_size
    problem = span_problem(sel[size_column].tolist(), size_column, min_span)
    edges = [f"{size_column} {s}: {e}" for s, e in zip(sel[size_column], sel["edge"]) if e]
    if edges and problem is None:
        problem = "the optimum is not bracketed by the grid (" + "; ".join(edges) + ")"
    values = sel["log2_lr"].to_numpy(dtype=float)
    return float(values.max() - values.min()), float(values[0] - values[-1]), problem, per_size


def transferred(curves: pd.DataFrame, opt: pd.DataFrame, parametrization: str, size_column: str,
                min_span: float) -> tuple[float, dict, str | None]:
    """The loss at every size at the rate tuned on the smallest (the grid rate nearest its parabola
    optimum): (largest relative rise of the loss from one size to the next, losses by size, why not judged)."""
    sel = opt[opt.parametrization == parametrization].sort_values(size_column)
    if sel.empty:
        return math.nan, {}, f"{parametrization} was not run"
    problem = span_problem(sel[size_column].tolist(), size_column, min_span)
    first = sel.iloc[0]
    if first["edge"] and problem is None:
        problem = f"the smallest {size_column}'s optimum is not bracketed ({first['edge']})"
    if not math.isfinite(first["log2_lr"]):
        return math.nan, {}, problem or f"no optimum at the smallest {size_column}"
    mine = curves[curves.parametrization == parametrization]
    grid = np.sort(mine["log2_lr"].unique())
    rate = float(grid[np.argmin(np.abs(grid - first["log2_lr"]))])
    at = mine[mine.log2_lr == rate].sort_values(size_column)
    values = at["loss"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rises = values[1:] / values[:-1] - 1.0
    worst = float(np.max(np.where(np.isnan(rises), np.inf, rises))) if len(rises) else math.nan
    losses = {str(int(s)): float(v) for s, v in zip(at[size_column], values)}
    return worst, {"log2_lr": rate, **losses}, problem


def ramp(values) -> dict:
    """A colour per value, dark to light along viridis (TP V's figures: darker = narrower/shallower)."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return {v: cmap(0.85 * i / max(len(values) - 1, 1)) for i, v in enumerate(values)}


def draw_curves(ax, curves: pd.DataFrame, opt: pd.DataFrame, hue: str, colors: dict) -> None:
    """Loss against log2 learning rate, one curve per value of ``hue`` (diverged rates left out), the
    parabola optimum of each marked by a star; the y axis logarithmic when the losses span a decade."""
    from lmech.report import plotting as P

    for value, curve in curves.groupby(hue, sort=True):
        curve = curve.sort_values("log2_lr")
        ok = np.isfinite(curve["loss"].to_numpy(dtype=float))
        ax.plot(curve["log2_lr"][ok], curve["loss"][ok], color=colors[value], label=f"{hue} {value}", **P.MEASURED)
        mark = opt[opt[hue] == value]
        if not mark.empty and math.isfinite(mark["log2_lr"].iloc[0]):
            ax.plot(mark["log2_lr"], mark["loss"], marker="*", markersize=11, color=colors[value], linestyle="none",
                    markeredgecolor="black", markeredgewidth=0.5)
    finite = curves["loss"][np.isfinite(curves["loss"].to_numpy(dtype=float))]
    if len(finite) and finite.max() / max(finite.min(), 1e-12) > 10:
        ax.set_yscale("log")
    first = curves["first_loss"].to_numpy(dtype=float)
    if len(finite) and np.isfinite(first).any():
        ax.set_ylim(top=min(float(finite.max()) * 1.1, float(np.nanmax(first)) * 1.5))
    P.legend_below(ax, ncol=3)


def transfer_figure(curves: pd.DataFrame, size_column: str, labels: dict[str, str], subtitle: str, band: str,
                    tolerance: float):
    """TP V Fig. 1 for a family: one panel per parametrization (in the order of ``labels``, titled
    ``label, subtitle``) with loss vs log2 lr per size, and a last panel of the optimum vs size with the
    band of width ``tolerance`` above ``band``'s lowest optimum (inside it: the criterion holds).
    Returns (figure, the last axis, the optima) for the law to add its theory lines."""
    from lmech.report import plotting as P

    opt = optima(curves, size_column)
    pars = [p for p in labels if p in set(curves["parametrization"])]
    fig, axes = P.panels(len(pars) + 1, ncols=len(pars) + 1, size=(4.6, 3.8))
    colors = ramp(sorted(set(curves[size_column])))
    for ax, par in zip(axes, pars):
        draw_curves(ax, curves[curves.parametrization == par], opt[opt.parametrization == par], size_column, colors)
        ax.set(title=f"{labels[par]}, {subtitle}", xlabel="log2 learning rate", ylabel="training loss")
    ax = axes[len(pars)]
    for par, marker in zip(pars, ("o", "s", "^")):
        sel = opt[opt.parametrization == par].sort_values(size_column)
        ax.plot(sel[size_column], sel["log2_lr"], marker=marker, label=f"{labels[par]} optimum", **P.MEASURED)
    held = opt[opt.parametrization == band]["log2_lr"].to_numpy(dtype=float)
    if np.isfinite(held).any():
        low = float(np.nanmin(held))
        ax.axhspan(low, low + tolerance, color="grey", alpha=0.15,
                   label=f"{labels[band]}: within {tolerance:g} grid step")
    sizes = sorted(set(curves[size_column]))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(int(v)) for v in sizes])
    ax.minorticks_off()
    ax.set(xlabel=size_column, ylabel="optimal log2 learning rate", title=f"optimum vs {size_column}")
    return fig, ax, opt
