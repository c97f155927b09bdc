"""The batched L-BFGS against SciPy's L-BFGS-B, and its pruning on a landscape with two minima."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, rosen, rosen_der

from lmech.laws.lbfgs import CONVERGED, MERGED, STALLED, lbfgs_batch


def rosenbrock(x, rows):
    """The d-dimensional Rosenbrock function of every row (SciPy's ``rosen``), with its gradient."""
    return np.array([rosen(v) for v in x]), np.array([rosen_der(v) for v in x])


def test_batch_reaches_scipys_minimum():
    """2-D Rosenbrock (one minimum, at (1, 1), in a curved valley) from 12 random starts."""
    starts = np.random.default_rng(0).uniform(-2, 2, (12, 2))
    res = lbfgs_batch(rosenbrock, starts)
    assert np.all(res.status == CONVERGED)
    for x0, x, f in zip(starts, res.x, res.f):
        ref = minimize(rosen, x0, jac=rosen_der, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})
        assert f <= ref.fun + 1e-10
        np.testing.assert_allclose(x, ref.x, atol=1e-5)


def test_iterates_do_not_depend_on_the_scale_of_the_objective():
    starts = np.random.default_rng(1).uniform(-2, 2, (6, 3))
    base = lbfgs_batch(rosenbrock, starts)
    for scale in (1e-3, 1e3):
        other = lbfgs_batch(lambda x, r, s=scale: tuple(a * s for a in rosenbrock(x, r)), starts)
        np.testing.assert_allclose(other.x, base.x, atol=1e-8)
        np.testing.assert_array_equal(other.iterations, base.iterations)


def two_wells(x, rows):
    """f(x) = (x² − 1)² + 0.3 x + 1 (positive; a deep well near x = −1, a shallow one near x = +1)."""
    return (x[:, 0] ** 2 - 1) ** 2 + 0.3 * x[:, 0] + 1.0, (4 * x[:, 0] * (x[:, 0] ** 2 - 1) + 0.3)[:, None]


def test_pruning_keeps_the_global_minimum_and_groups_apart():
    starts = np.linspace(-2, 2, 400)[:, None]
    starts = np.concatenate([starts, starts])
    groups = np.repeat([0, 1], 400)
    full = lbfgs_batch(two_wells, starts, groups=groups)
    pruned = lbfgs_batch(two_wells, starts, groups=groups, merge=1e-2, stall_horizon=5, stall_window=5)
    best = full.f.min()
    for grp in (0, 1):
        members = groups == grp
        assert pruned.f[members].min() == np.float64(best) or abs(pruned.f[members].min() - best) < 1e-12
        assert np.sum(pruned.status[members] == CONVERGED) >= 1
    assert np.sum(pruned.status == MERGED) > 0 and np.sum(pruned.status == STALLED) > 0
    assert pruned.evaluations < full.evaluations
