"""The summary figure of a sweep: a metric against a varied field, one line per value of another.

``--plot x=lr,y=final_loss,hue=width`` draws ``y`` (a summary metric or config field of the runs
table) against ``x`` (a config field), one line per value of ``hue`` (optional), the mean over the
remaining axes (e.g. seeds) with their min–max as a band (labelled with the number of runs it spans).
Runs whose law was violated are circled in red (inconclusive ones boxed in orange). Axes are logarithmic where the grid is
(``log:``) or the values span two decades or more. Diverged runs are marked with a red × on the top
edge at their ``x``: a learning-rate sweep shows where training blows up (done runs without a finite
``y`` are counted in the title). The PNG is written to ``<store>/sweeps/<sweep_id>.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmech.config import field_types
from lmech.errors import BadInput


@dataclass(frozen=True)
class PlotSpec:
    """What to draw: ``y`` against ``x``, one line per ``hue`` value."""

    x: str
    y: str
    hue: str | None = None


def parse_plot(text: str, config_cls: type) -> PlotSpec:
    """Parse ``x=FIELD,y=METRIC[,hue=FIELD]``; ``x`` and ``hue`` must be config fields (checked here)."""
    parts: dict[str, str] = {}
    for item in text.split(","):
        if "=" not in item:
            raise BadInput("--plot", text, "x=FIELD,y=METRIC[,hue=FIELD] (e.g. x=lr,y=final_loss,hue=width)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in ("x", "y", "hue") or not value or key in parts:
            raise BadInput("--plot", text, "x=FIELD,y=METRIC[,hue=FIELD], each once")
        parts[key] = value
    if "x" not in parts or "y" not in parts:
        raise BadInput("--plot", text, "both x= and y= (e.g. x=lr,y=final_loss)")
    fields = field_types(config_cls)
    for key in ("x", "hue"):
        if key in parts and parts[key] not in fields:
            raise BadInput(f"--plot {key}", parts[key], f"a field of {config_cls.__name__}: {', '.join(sorted(fields))}")
    return PlotSpec(parts["x"], parts["y"], parts.get("hue"))


def check_metric(spec: PlotSpec, experiment, table: pd.DataFrame) -> bool:
    """Check ``y`` before the sweep runs: True if it is known to exist (a config field, a criterion of the
    law, a column of this law's finished runs in ``table``); BadInput if the store's finished runs of the law
    show it does not; False when it cannot be known before a run exists (a fresh store)."""
    known = set(field_types(experiment.Config)) | {"holds", "verdict", "diverged_at"}
    known |= {key for case in experiment.counterexamples() for key in case.criteria}
    finished = table[table["status"].isin(("done", "diverged"))] if not table.empty else table
    columns = {c[2:] if c.startswith("m_") else c for c in finished.columns if finished[c].notna().any()}
    if spec.y in known or spec.y in columns:
        return True
    if finished.empty:
        return False
    metrics = sorted(columns - {"run_id", "experiment", "label", "finished", "status", "damage", "duration_s"})
    raise BadInput("--plot y", spec.y, f"a metric of {experiment.name}'s runs: {', '.join(metrics)}")


def _column(frame: pd.DataFrame, name: str, what: str) -> str:
    if f"m_{name}" in frame and what == "y":
        return f"m_{name}"
    if name in frame:
        return name
    metrics = [c for c in frame.columns if c not in ("run_id", "experiment", "label", "finished")]
    raise BadInput(f"--plot {what}", name, f"a column of the sweep's runs: {', '.join(metrics)}")


def _log(values: np.ndarray, declared: str | None) -> bool:
    finite = values[np.isfinite(values)]
    if declared in ("log", "random-log"):
        return True
    return bool(finite.size and finite.min() > 0 and finite.max() / finite.min() >= 100)


def plot_sweep(table: pd.DataFrame, spec: PlotSpec, path: Path, scales: dict[str, str] | None = None,
               title: str = "") -> Path:
    """Draw ``spec`` from the sweep's runs ``table`` (:meth:`RunStore.table` rows) into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = scales or {}
    if table.empty:
        raise BadInput("--plot", f"x={spec.x},y={spec.y}", "a sweep with finished runs to draw")
    x, y = _column(table, spec.x, "x"), _column(table, spec.y, "y")
    hue = _column(table, spec.hue, "hue") if spec.hue else None
    frame = table.copy()
    frame["_x"] = pd.to_numeric(frame[x], errors="coerce")
    frame["_y"] = pd.to_numeric(frame[y], errors="coerce").astype(float)
    if frame["_x"].isna().all():
        raise BadInput("--plot x", spec.x, "a numeric field")
    finite = np.isfinite(frame["_y"].to_numpy())
    diverged = frame[frame["status"] == "diverged"]
    good = frame[finite & (frame["status"] == "done")]
    missing = int((~finite & (frame["status"] == "done")).sum())
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    groups = [(None, good)] if hue is None else list(good.groupby(hue, sort=True))
    random = scales.get(spec.x, "").startswith("random")
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.9, max(len(groups), 1)))
    band_labelled = False
    over = "seeds" if "seed" in scales else "runs"
    for color, (key, g) in zip(colors, groups):
        label = None if hue is None else f"{spec.hue}={key}"
        if random:
            ax.plot(g["_x"], g["_y"], "o", color=color, label=label, alpha=0.8)
            continue
        stats = g.groupby("_x")["_y"].agg(["mean", "min", "max", "count"]).sort_index()
        ax.plot(stats.index, stats["mean"], "o-", color=color, label=label)
        if (stats["count"] > 1).any():
            band = None if band_labelled else f"min–max over {int(stats['count'].max())} {over} (line: mean)"
            ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2, linewidth=0, label=band)
            band_labelled = True
    if "verdict" in good:  # runs whose law was violated (or could not be tested), marked where they landed
        for state, style in (("violated", {"edgecolors": "red", "marker": "o"}),
                             ("inconclusive", {"edgecolors": "darkorange", "marker": "s"})):
            hit = good[good["verdict"] == state]
            if not hit.empty:
                ax.scatter(hit["_x"], hit["_y"], s=110, facecolors="none", linewidths=1.6, zorder=3,
                           label=f"law {state} ({len(hit)} runs)", **style)
    if _log(frame["_x"].to_numpy(dtype=float), scales.get(spec.x)):
        ax.set_xscale("log")
    if _log(good["_y"].to_numpy(dtype=float), None):
        ax.set_yscale("log")
    if not diverged.empty:
        ax.plot(diverged["_x"], np.ones(len(diverged)), "x", color="red", markersize=9, mew=2, clip_on=False,
                transform=ax.get_xaxis_transform(), label="diverged")
    if good.empty:
        ax.set_xlim(*_limits(frame["_x"].to_numpy(dtype=float), ax.get_xscale() == "log"))
    note = f"\n({missing} finished runs without a finite {spec.y} not drawn)" if missing else ""
    ax.set(xlabel=spec.x, ylabel=spec.y, title=(title or f"{spec.y} against {spec.x}") + note)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _limits(values: np.ndarray, log: bool) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    if log:
        return lo / 2, hi * 2
    pad = (hi - lo) * 0.1 or abs(lo) * 0.1 or 1.0
    return lo - pad, hi + pad


__all__ = ["PlotSpec", "check_metric", "parse_plot", "plot_sweep"]
