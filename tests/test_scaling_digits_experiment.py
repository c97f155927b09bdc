"""scaling-digits: config validation naming the field, the eigensystem's reconstruction of the kernel (dense
reference), and the law-book run's reported power-law summary (shared with the contract through ``quick_run``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lmech.errors import BadInput
from lmech.experiments import scaling_digits as X

NAME = "scaling-digits"


@pytest.mark.parametrize("overrides,field", [
    ({"sample_sizes": (40, 80, 160)}, "sample_sizes"), ({"sample_sizes": (80, 40, 800)}, "sample_sizes"),
    ({"kernel": "rbf"}, "kernel"), ({"spectrum_modes": (200, 4)}, "spectrum_modes")])
def test_bad_configs_are_refused(overrides, field):
    from lmech.config import validate

    with pytest.raises(BadInput, match=field):
        validate(dataclasses.replace(X.ScalingDigitsConfig(), **overrides))


def test_lawbook_run_reports_the_power_law_summary(quick_run):
    """The judged prediction is the eigenlearning curve's slope; beside it b, a − 1 and min(a − 1, 2b) from the
    same spectrum, and the target power summed over modes equals the one-hot targets' mean square (Parseval on
    the 1,797 points: the eigenvectors are an orthonormal basis; tolerance 1e-6 relative)."""
    prediction, measurement, verdicts, _ = quick_run(NAME, "ntk")
    v = verdicts[0]
    assert v.details["power_law_exponent"] == pytest.approx(min(v.details["fitted_a_minus_1"], 2 * v.details["fitted_b"]))
    assert 1.0 < v.details["fitted_b"] < 2.0 and 0.4 < v.details["fitted_a_minus_1"] < 1.0
    spectrum = prediction.series["spectrum"]
    assert float(spectrum.power.sum()) == pytest.approx(1.0, rel=1e-6)  # one-hot: Σ_c y_c² = 1 per digit
    assert np.all(np.diff(spectrum.eigenvalue.to_numpy()) <= 1e-12)


def test_the_kernel_is_computed_once_and_is_the_fresh_one():
    """Prediction and measurement share one kernel per (population, depth, kernel): the second call returns the
    same read-only arrays, equal bit for bit to a fresh computation (cache cleared); another config's kernel is
    another matrix."""
    cfg = X.ScalingDigitsConfig(population=300, sample_sizes=(20, 40, 80), spectrum_modes=(2, 50))
    X._kernel_matrix.cache_clear()
    K, Y = X.kernel_matrix(cfg)
    assert X.kernel_matrix(dataclasses.replace(cfg, seed=5, splits=2))[0] is K  # fields it does not depend on
    assert not K.flags.writeable and not Y.flags.writeable
    X._kernel_matrix.cache_clear()
    K2, Y2 = X.kernel_matrix(cfg)
    assert K2 is not K and np.array_equal(K2, K) and np.array_equal(Y2, Y)
    assert not np.array_equal(X.kernel_matrix(dataclasses.replace(cfg, kernel="nngp"))[0], K)
