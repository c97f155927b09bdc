"""Log-log fits with intervals, against SciPy's linregress and by the coverage of their intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lmech.errors import BadInput
from lmech.laws.power_law import log_log_fit, log_log_slope


def test_matches_linregress():
    rng = np.random.default_rng(0)
    x = np.logspace(1, 4, 12)
    y = 3.0 * x**-0.5 * np.exp(rng.normal(0, 0.05, x.shape))
    fit = log_log_fit(x, y)
    ref = stats.linregress(np.log(x), np.log(y))
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert fit.slope_se == pytest.approx(ref.stderr, rel=1e-10)
    assert fit.intercept_se == pytest.approx(ref.intercept_stderr, rel=1e-10)
    assert (fit.slope, fit.intercept) == pytest.approx(log_log_slope(x, y), rel=1e-12)
    np.testing.assert_allclose(fit.predict(x), np.exp(ref.intercept) * x**ref.slope, rtol=1e-12)


def test_interval_covers_the_true_slope_at_its_level():
    """400 noisy data sets of 8 points: the 90% interval holds the true slope in 90% ± 4.5% of them
    (3 binomial standard deviations, 0.015 each)."""
    rng = np.random.default_rng(1)
    x = np.logspace(0, 3, 8)
    hits = 0
    for _ in range(400):
        y = 2.0 * x**-1.0 * np.exp(rng.normal(0, 0.1, x.shape))
        lo, hi = log_log_fit(x, y, level=0.9).slope_interval
        hits += lo <= -1.0 <= hi
    assert abs(hits / 400 - 0.9) <= 0.045


@pytest.mark.parametrize("x, y", [([1, 2], [1, 2]), ([1, 2, -3], [1, 2, 3]), ([1, 2, 3], [1, np.nan, 3]),
                                  ([2, 2, 2], [1, 2, 3])])
def test_bad_input(x, y):
    with pytest.raises(BadInput):
        log_log_fit(x, y)
