"""lmech.theory.scaling against independent references: closed forms (Γ-function asymptotics, the algebra of
the compute-optimal frontier redone by brute-force minimisation), dense exact computations on small cases
(the projection residual by least squares, GD iterated on the population loss) and Monte Carlo SGD."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmech.errors import BadInput
from lmech.theory import scaling as S

HARD, MIDDLE, SUPER_EASY = (2.5, 2.0), (3.5, 2.0), (6.0, 2.0)


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small numpy products on one BLAS thread: on a shared machine threads only contend (8 s instead of 0.1 s)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.mark.parametrize("a,b,expected", [
    # (a, b): phase, time (a−1)/b, data min(a−1, 2b), model min(a−1, b), L*(C), N*(C)
    (2.5, 2.0, ("Ia", 0.75, 1.5, 1.5, 1.5 / 3, 1 / 3)),
    (3.5, 2.0, ("II", 1.25, 2.5, 2.0, 2.5 / 3.5, 1.5 / 3.5)),
    (6.0, 2.0, ("III", 2.5, 4.0, 2.0, 0.75, 0.5)),
    (5.0, 1.5, ("III", 4 / 1.5, 3.0, 1.5, 1 - 1 / 3, 0.5)),
])
def test_exponents_closed_forms(a, b, expected):
    ex = S.exponents(a, b)
    got = (ex.phase.name, ex.time, ex.data, ex.model, ex.compute_loss, ex.compute_model)
    assert got[0] == expected[0]
    assert np.allclose(got[1:], expected[1:], rtol=1e-12)
    assert ex.compute_steps == pytest.approx(1 - ex.compute_model)
    assert ex.compute_ratio == pytest.approx(1 - 2 * ex.compute_model)


def test_model_size_saturates_at_b_data_at_2b():
    """The asymmetry: for a − 1 > 2b the model exponent is b and the data exponent 2b."""
    ex = S.exponents(*SUPER_EASY)
    assert ex.model == SUPER_EASY[1] and ex.data == 2 * SUPER_EASY[1]


@pytest.mark.parametrize("a,b,field", [(2.0, 1.0, "spectrum_exponent"), (2.0, 0.5, "spectrum_exponent"),
                                        (1.0, 2.0, "target_exponent"), (float("nan"), 2.0, "target_exponent"),
                                        (True, 2.0, "target_exponent")])
def test_check_task_refuses_outside_the_domain(a, b, field):
    with pytest.raises(BadInput, match=field):
        S.exponents(a, b)


def test_phase_boundaries_are_flagged():
    assert S.phase(3.05, 2.0).boundary and "Ia/II" in S.phase(3.05, 2.0).boundary
    assert S.phase(4.0, 2.0).boundary and "II/III" in S.phase(4.0, 2.0).boundary
    assert S.phase(*HARD).boundary is None and S.phase(*SUPER_EASY).boundary is None
    assert S.exponents(5.0, 2.0).data_boundary and S.exponents(*SUPER_EASY).data_boundary is None


@pytest.mark.parametrize("a,b", [HARD, MIDDLE, SUPER_EASY, (2.2, 1.5), (3.0, 1.5), (4.0, 1.5)])
def test_compute_optimal_by_brute_force(a, b):
    """Minimise Paquette et al.'s decomposition F_pp + F_ac + F_0 + K_pp (unit constants) over N at N·t = C
    on a fine grid, at astronomically large C, and read the slopes of L* and N*: the table's algebra."""
    log_n = np.linspace(0, 300, 300_001) * math.log(10)  # N from 1 to 10^300, 1000 points a decade

    def best(log_c):
        log_t = log_c - log_n
        terms = [-(a - 1) / b * log_t, -min(a - 1, b) * log_n, -(2 - 1 / b) * log_t]
        if a - 1 > b:
            terms.append(-log_n - (1 - 1 / b) * log_t)
        loss = np.where(log_t >= 0, np.logaddexp.reduce(np.stack(terms), axis=0), np.inf)
        i = int(np.argmin(loss))
        return loss[i], log_n[i]

    (l1, n1), (l2, n2) = best(200 * math.log(10)), best(300 * math.log(10))
    x, y = S.compute_optimal(a, b)
    dc = 100 * math.log(10)
    assert -(l2 - l1) / dc == pytest.approx(x, abs=2e-3)
    assert (n2 - n1) / dc == pytest.approx(y, abs=2e-3)


def test_time_exponent_closed_form():
    """½Σ k^−a (1 − ηk^−b)^2t → Γ((a − 1)/b)/(2b) (2ηt)^−(a−1)/b (module docstring)."""
    a, b, lr = *HARD, 0.5
    lam, power, _ = S.power_law_task(a, b, 2**20)
    ts = np.array([10_000, 100_000])
    loss = S.population_gd(lam, power, lr, ts)
    closed = math.gamma((a - 1) / b) / (2 * b) * (2 * lr * ts) ** (-(a - 1) / b)
    assert np.allclose(loss / closed, 1, atol=0.02)


def test_deterministic_equivalents_reach_their_exponents():
    """The model- and data-limited DE curves at large N have the slopes min(a − 1, b) and min(a − 1, 2b)."""
    for a, b in (HARD, SUPER_EASY):
        lam, power, _ = S.power_law_task(a, b, 2**18)
        ex = S.exponents(a, b)
        model = [S.best_in_class_loss(lam, power, n) for n in (1000, 4000)]
        data = [S.ridgeless_loss(lam, power, n) for n in (1000, 4000)]
        assert -math.log(model[1] / model[0]) / math.log(4) == pytest.approx(ex.model, rel=0.03)
        assert -math.log(data[1] / data[0]) / math.log(4) == pytest.approx(ex.data, rel=0.03)


def _draw(a, b, m, n, rng):
    lam, _, w = S.power_law_task(a, b, m)
    A = rng.standard_normal((n, m))
    return lam, w, A


def test_floor_is_the_projection_residual():
    """L_N of the eigensystem equals ½‖(I − Π_B)v‖², Π_B the projector on the rows of B = AΛ^½/√N, computed by
    least squares in the M-dimensional feature space (a dense exact reference)."""
    rng = np.random.default_rng(0)
    a, b = SUPER_EASY
    lam, w, A = _draw(a, b, 300, 12, rng)
    K, g, total = S.projected_covariance(A, lam, w)
    es = S.regression_eigensystem(K, g, total)
    B = A * np.sqrt(lam) / math.sqrt(12)
    v = np.sqrt(lam) * w
    coef = np.linalg.lstsq(B.T, v, rcond=None)[0]
    assert es.floor == pytest.approx(0.5 * float(np.sum((v - B.T @ coef) ** 2)), rel=1e-8)
    # the eigensystem reproduces K and g
    assert np.allclose(es.basis @ np.diag(es.mu) @ es.basis.T, K)
    assert np.allclose(es.basis @ (es.mu * es.theta), g)


@pytest.mark.parametrize("a,b", [HARD, SUPER_EASY])
def test_best_in_class_deterministic_equivalent(a, b):
    """The DE ½Σ p_k κ/(λ_k + κ) against the mean exact L_N over 40 random projections (N = 24, M = 1500)."""
    rng = np.random.default_rng(1)
    lam, power, w = S.power_law_task(a, b, 1500)
    floors = []
    for _ in range(40):
        A = rng.standard_normal((24, 1500))
        floors.append(S.regression_eigensystem(*S.projected_covariance(A, lam, w)).floor)
    assert np.mean(floors) == pytest.approx(S.best_in_class_loss(lam, power, 24), rel=0.08)


def test_population_gd_equals_iterated_gd():
    """GD iterated on the population loss ½E(w·x − y)² of a random 6-dimensional problem."""
    rng = np.random.default_rng(2)
    Q = rng.standard_normal((6, 6))
    K = Q @ Q.T / 6 + 0.05 * np.eye(6)
    g = rng.standard_normal(6)
    total = float(g @ np.linalg.solve(K, g)) + 0.3
    es = S.regression_eigensystem(K, g, total)
    lr = 1.0 / float(np.linalg.eigvalsh(K).max())
    steps = np.array([0, 1, 5, 40])
    predicted = S.population_gd(es.mu, es.power, lr, steps, es.floor)
    w, out = np.zeros(6), {}
    for t in range(41):
        out[t] = 0.5 * (total - 2 * w @ g + w @ K @ w)
        w = w - lr * (K @ w - g)
    assert es.floor == pytest.approx(0.15)
    assert np.allclose(predicted, [out[t] for t in steps], rtol=1e-10)


def _sgd_problem():
    mu = np.array([1.0, 0.5, 0.25, 0.1])
    return mu, mu * np.array([1.0, -0.5, 0.8, 1.2]) ** 2, np.array([1.0, -0.5, 0.8, 1.2]), 0.05


def test_volterra_running_sums_equal_the_literal_convolution():
    mu, power, _, floor = _sgd_problem()
    direct = S.volterra_direct(mu, power, 0.4, 2, 300, floor)
    fast = S.sgd_volterra(mu, power, 0.4, 2, np.arange(301), floor)
    assert np.allclose(fast, direct, rtol=1e-11)


def test_volterra_blocks_approximate_the_exact_recursion():
    lam, power, _ = S.power_law_task(*HARD, 200)
    steps = np.unique(np.geomspace(1, 20_000, 30).astype(np.int64))
    exact = S.sgd_volterra(lam, power, 0.3, 1, steps)
    blocked = S.sgd_volterra(lam, power, 0.3, 1, steps, block=0.005)
    assert np.max(np.abs(blocked / exact - 1)) < 1e-3


def test_volterra_matches_monte_carlo_sgd():
    """The expected loss of one-pass SGD on Gaussian data, by 20,000 independent chains (numpy)."""
    mu, power, theta, floor = _sgd_problem()
    lr, batch, horizon, chains = 0.4, 2, 40, 20_000
    rng = np.random.default_rng(3)
    w = np.zeros((chains, 4))
    losses = []
    for _ in range(horizon + 1):
        losses.append(floor + 0.5 * np.mean(np.sum(mu * (w - theta) ** 2, -1)))
        x = rng.standard_normal((chains, batch, 4)) * np.sqrt(mu)
        y = x @ theta + rng.standard_normal((chains, batch)) * math.sqrt(2 * floor)
        resid = np.einsum("cbi,ci->cb", x, w) - y
        w = w - lr / batch * np.einsum("cb,cbi->ci", resid, x)
    predicted = S.sgd_volterra(mu, power, lr, batch, np.arange(horizon + 1), floor)
    assert np.max(np.abs(np.array(losses) / predicted - 1)) < 0.03


def test_bad_arrays_are_refused():
    with pytest.raises(BadInput, match="modes"):
        S.power_law_task(2.5, 2.0, 0)
    with pytest.raises(BadInput, match="steps"):
        S.population_gd(np.ones(3), np.ones(3), 0.1, np.array([3, 1]))
    with pytest.raises(BadInput, match="batch"):
        S.sgd_volterra(np.ones(3), np.ones(3), 0.1, 0, np.array([1, 2]))
    with pytest.raises(BadInput, match="covariance"):
        S.regression_eigensystem(-np.eye(2), np.ones(2), 1.0)


def test_volterra_takes_one_step_per_problem():
    """Batched problems with their own steps γ_r equal the problems solved one at a time; a step <= 0 is refused."""
    lam, power, _ = S.power_law_task(*HARD, 50)
    mu = np.stack([lam, 0.7 * lam])
    p = np.stack([power, power])
    steps = np.array([0, 3, 30, 300])
    lrs = np.array([0.4, 0.2])
    both = S.sgd_volterra(mu, p, lrs, 2, steps, np.array([0.01, 0.02]))
    for r in range(2):
        assert np.allclose(both[r], S.sgd_volterra(mu[r], p[r], float(lrs[r]), 2, steps, [0.01, 0.02][r]), rtol=1e-12)
    with pytest.raises(BadInput, match="lr"):
        S.sgd_volterra(mu, p, np.array([0.4, 0.0]), 2, steps)


@pytest.mark.parametrize("a,b", [HARD, SUPER_EASY])
def test_sgd_time_exponent_from_the_volterra_risk(a, b):
    """One-pass SGD at N = ∞ (the Volterra risk on the task's own spectrum, M = 2^14): the loss falls as
    t^−(a−1)/b where the target sets the pace, and as t^−(2−1/b) where SGD noise does (phase III)."""
    lam, power, _ = S.power_law_task(a, b, 2**14)
    steps = np.array([2_000, 20_000])
    loss = S.sgd_volterra(lam, power, 0.3 / lam.sum(), 1, steps, block=0.005)
    slope = -math.log(loss[1] / loss[0]) / math.log(10)
    assert slope == pytest.approx(S.exponents(a, b).sgd_time, rel=0.05)
