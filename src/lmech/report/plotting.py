"""Shared figure conventions: theory dashed, measurement solid, one colour per curve; PNG via Agg.

Experiments draw their panels with matplotlib directly and use these helpers so that every law's
figure reads the same way.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

THEORY = {"linestyle": "--", "linewidth": 1.6, "color": "black", "alpha": 0.8}
MEASURED = {"linestyle": "-", "linewidth": 2.0, "alpha": 0.75}


def colors(n: int) -> list:
    """``n`` distinguishable colours."""
    cmap = plt.get_cmap("viridis" if n > 10 else "tab10")
    return [cmap(i / max(n - 1, 1)) if n > 10 else cmap(i) for i in range(n)]


def panels(n: int, ncols: int = 2, size: tuple[float, float] = (5.0, 3.6)):
    """A figure with ``n`` axes on a grid of ``ncols`` columns; returns (fig, flat list of axes)."""
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def theory_legend(ax) -> None:
    """Add 'theory (dashed) / measured (solid)' entries to a legend."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], **THEORY), Line2D([], [], color="grey", **{k: v for k, v in MEASURED.items()})]
    labels += ["theory", "measured"]
    ax.legend(handles, labels, fontsize=8, frameon=False)


def save(fig, path: Path) -> Path:
    """Save ``fig`` as PNG at ``path`` (atomically: temporary name, then rename) and close it."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def line_handle(label: str, **style):
    """A legend entry for a line drawn with ``style`` (for legends built from explicit entries)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], label=label, **style)


def theory_handle(label: str = "theory"):
    """The legend entry of a theory curve (dashed black, the convention of :data:`THEORY`)."""
    return line_handle(label, **THEORY)


def legend_below(ax, handles=None, ncol: int = 2, fontsize: float = 7.5) -> None:
    """A legend under the axes, outside the plotting area, so that it never covers a curve.

    ``handles``: the entries (each with its label); by default the axes' labelled artists. Every entry
    should match a line drawn in the panel (use :func:`line_handle` / :func:`theory_handle`).
    """
    from matplotlib.transforms import offset_copy

    if handles is None:
        handles, _ = ax.get_legend_handles_labels()
    if handles:
        # anchored a fixed 38 points under the axes: below the tick labels and the x label at any panel size
        below = offset_copy(ax.transAxes, fig=ax.figure, y=-38, units="points")
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncol=ncol,
                  fontsize=fontsize, frameon=False)


def band_handle(label: str, color: str = "grey", alpha: float = 0.15):
    """The legend entry of a shaded band (``axhspan``) drawn with ``color`` and ``alpha``."""
    from matplotlib.patches import Patch

    return Patch(color=color, alpha=alpha, label=label)
