"""Power-law fits: the slope of a straight line in log-log coordinates.

``log_log_slope(x, y)`` fits log y = slope · log x + intercept by least squares, the estimator behind
width-scaling laws such as the 1/√width convergence of the empirical NTK (Jacot et al. 2018,
arXiv 1806.07572; Lee et al. 2019, arXiv 1902.06720).
"""

from __future__ import annotations

import numpy as np

from lmech.errors import BadInput


def log_log_slope(x, y) -> tuple[float, float]:
    """Least-squares (slope, intercept) of log y against log x; x and y positive, at least 2 points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise BadInput("x, y", (x.shape, y.shape), "two 1-D arrays of the same length >= 2")
    if np.any(x <= 0) or np.any(y <= 0):
        raise BadInput("x, y", "non-positive values", "positive values (their logarithms are fitted)")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(intercept)
