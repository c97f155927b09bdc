"""Figures of a fitted Chinchilla law (:mod:`lmech.laws.scaling`), after Hoffmann et al. 2022 Fig. 4.

``iso_loss_panel``: contours of L̂ in the (compute C = 6ND, parameters N) plane, the compute-optimal
frontier N_opt(C) with its bootstrap band, and the runs coloured by their loss. ``loss_curves_panel``:
each model size's losses against compute, over the fitted curve L̂(N, C/6N) of that size.
``draw_scaling_fit`` puts both side by side (``lmech fit scaling --out``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmech.report.plotting import THEORY, colors, panels, save


def size_groups(N: np.ndarray, max_groups: int = 10, decimals: int = 2) -> list[np.ndarray]:
    """Indices of the runs grouped by model size (log10 N rounded to ``decimals``); when there are more
    than ``max_groups`` sizes, ``max_groups`` of them evenly spaced in log N."""
    keys = np.round(np.log10(N), decimals)
    sizes = np.unique(keys)
    if len(sizes) > max_groups:
        sizes = sizes[np.unique(np.round(np.linspace(0, len(sizes) - 1, max_groups)).astype(int))]
    return [np.flatnonzero(keys == s) for s in sizes]


def iso_loss_panel(ax, fit, N, D, L, level: float = 0.95, resolution: int = 160) -> None:
    """Iso-loss contours of the fit over the runs' (C, N) range, the frontier and the runs."""
    C = 6 * N * D
    c_lo, c_hi = np.log10(C.min()) - 0.5, np.log10(C.max()) + 1.0
    n_lo, n_hi = np.log10(N.min()) - 0.5, np.log10(N.max()) + 1.0
    cc, nn = np.meshgrid(np.logspace(c_lo, c_hi, resolution), np.logspace(n_lo, n_hi, resolution))
    loss = fit.law.loss(nn, cc / (6 * nn))
    levels = np.quantile(L, np.linspace(0.02, 0.98, 9))
    cs = ax.contour(cc, nn, loss, levels=np.unique(np.round(levels, 2)), cmap="viridis_r", linewidths=1.0)
    ax.clabel(cs, fontsize=7, fmt="%.2f")
    budgets = np.logspace(c_lo, c_hi, 60)
    opt = fit.compute_optimal(budgets, level=level)
    if np.all(np.isfinite(opt["N"]["value"])):
        ax.plot(budgets, opt["N"]["value"], color="crimson", linewidth=2.0, label="compute-optimal N")
        if opt["N"]["lo"] is not None:
            ax.fill_between(budgets, opt["N"]["lo"], opt["N"]["hi"], color="crimson", alpha=0.15,
                            label=f"{level:.0%} bootstrap band")
    sc = ax.scatter(C, N, c=L, cmap="viridis_r", s=14, edgecolors="black", linewidths=0.3, zorder=3)
    ax.figure.colorbar(sc, ax=ax, label="loss")
    ax.set(xscale="log", yscale="log", xlabel="compute C = 6ND (FLOP)", ylabel="parameters N",
           title="iso-loss contours of the fit", ylim=(10**n_lo, 10**n_hi))
    ax.legend(fontsize=8, frameon=False, loc="upper left")


def loss_curves_panel(ax, fit, N, D, L, max_groups: int = 10) -> None:
    """Each model size's runs (loss against compute) and the fitted curve at that size."""
    groups = size_groups(N, max_groups)
    for color, idx in zip(colors(len(groups)), groups):
        n = float(np.exp(np.mean(np.log(N[idx]))))
        C = 6 * N[idx] * D[idx]
        grid = np.logspace(np.log10(C.min()) - 0.3, np.log10(C.max()) + 0.3, 80)
        ax.plot(grid, fit.law.loss(n, grid / (6 * n)), color=color, **{k: v for k, v in THEORY.items() if k != "color"})
        ax.scatter(C, L[idx], color=color, s=12, label=f"N = {n:.3g}", zorder=3)
    ax.set(xscale="log", xlabel="compute C = 6ND (FLOP)", ylabel="loss", title="runs over the fitted law (dashed)")
    ax.legend(fontsize=7, frameon=False, ncol=2)


def draw_scaling_fit(fit, N, D, L, path: Path, level: float = 0.95) -> Path:
    """Both panels in one PNG at ``path``."""
    N, D, L = (np.asarray(v, float) for v in (N, D, L))
    fig, (left, right) = panels(2, size=(5.6, 4.2))
    iso_loss_panel(left, fit, N, D, L, level)
    loss_curves_panel(right, fit, N, D, L)
    p = fit.params
    fig.suptitle(f"L = {p['E']:.3g} + {p['A']:.4g}/N^{p['alpha']:.3f} + {p['B']:.4g}/D^{p['beta']:.3f}", fontsize=10)
    return save(fig, path)
