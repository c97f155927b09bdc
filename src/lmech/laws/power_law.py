"""Power-law fits: the slope of a straight line in log-log coordinates, with its confidence interval.

``log_log_slope(x, y)`` fits log y = slope · log x + intercept by least squares, the estimator behind
width-scaling laws such as the 1/√width convergence of the empirical NTK (Jacot et al. 2018,
arXiv 1806.07572; Lee et al. 2019, arXiv 1902.06720). ``log_log_fit`` adds the intervals: with n points,
residual variance s² = Σ r² / (n − 2) and S = Σ (log x − mean)², the slope's standard error is s / √S
and its interval slope ± t_{n−2} · s / √S (the ordinary least-squares intervals, e.g. Weisberg,
*Applied Linear Regression*, 4th ed., §2.4), exact when the log-residuals are independent and Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmech.errors import BadInput


@dataclass(frozen=True)
class PowerLawFit:
    """y ≈ exp(intercept) · x^slope, with standard errors and ``level`` confidence intervals."""

    slope: float
    intercept: float
    slope_se: float
    intercept_se: float
    slope_interval: tuple[float, float]
    intercept_interval: tuple[float, float]
    level: float
    n: int

    def predict(self, x) -> np.ndarray:
        return np.exp(self.intercept) * np.asarray(x, dtype=float) ** self.slope


def _logs(x, y, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < min_points:
        raise BadInput("x, y", (x.shape, y.shape), f"two 1-D arrays of the same length >= {min_points}")
    if np.any(~np.isfinite(x)) or np.any(~np.isfinite(y)) or np.any(x <= 0) or np.any(y <= 0):
        raise BadInput("x, y", "non-positive or non-finite values", "positive values (their logarithms are fitted)")
    return np.log(x), np.log(y)


def log_log_slope(x, y) -> tuple[float, float]:
    """Least-squares (slope, intercept) of log y against log x; x and y positive, at least 2 points."""
    lx, ly = _logs(x, y, 2)
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept)


def log_log_fit(x, y, level: float = 0.95) -> PowerLawFit:
    """Least-squares fit of log y = slope · log x + intercept with Student-t intervals (module docstring);
    at least 3 points (one degree of freedom for the residual variance)."""
    from scipy import stats

    if not 0 < level < 1:
        raise BadInput("level", level, "a number in (0, 1)")
    lx, ly = _logs(x, y, 3)
    n = len(lx)
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    if sxx == 0:
        raise BadInput("x", "a single distinct value", "at least 2 distinct x values")
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (slope * lx + intercept)
    s2 = float(resid @ resid) / (n - 2)
    slope_se = np.sqrt(s2 / sxx)
    intercept_se = np.sqrt(s2 * (1.0 / n + lx.mean() ** 2 / sxx))
    t = float(stats.t.ppf(0.5 + level / 2, n - 2))
    return PowerLawFit(float(slope), float(intercept), float(slope_se), float(intercept_se),
                       (float(slope - t * slope_se), float(slope + t * slope_se)),
                       (float(intercept - t * intercept_se), float(intercept + t * intercept_se)), level, n)
