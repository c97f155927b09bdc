"""scaling-exponents: the measurement's closed forms against iterated training on the same samples, the
sampler's moments, the preconditions (boundary, cut-off, short window) and the verdicts on the law-book runs.

The law-book runs (quick, seeds 0, 1, 2; their margins in the law's module docstring) are shared with the
contract test through ``quick_run``; nothing here trains them again.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lmech.data.power_law import power_law_features, regression_samples
from lmech.data.synthetic import generator
from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments import scaling_exponents as X
from lmech.experiments.base import NullProgress
from lmech.theory import scaling as S

NAME = "scaling-exponents"
SMALL = X.ScalingExponentsConfig(features=64, samples=32, data_sizes=(2, 4, 8, 16, 32), time_modes=(2.0, 8.0),
                                 model_sizes=(4, 8, 16), trials=1, replicates=2, curve_replicates=2, gd_sizes=(8,), gd_ratio=4,
                                 gd_steps=300, sgd_sizes=(8,), sgd_steps=50, sgd_chains=2)


def test_kernel_limit_gd_closed_form_equals_iterated_gd():
    """The N = ∞ GD curve (Gram eigensystem) against GD iterated on the same samples, w ← w − (η/P)Ψᵀ(Ψw − y)."""
    cfg = SMALL
    times, _ = X.kernel_limit_runs(cfg, NullProgress())
    lam, _, w_star = S.power_law_task(cfg.a, cfg.b, cfg.features)
    lam_t, w_t = torch.as_tensor(lam), torch.as_tensor(w_star)
    psi = power_law_features(cfg.samples, lam_t, generator(cfg.seed + 11))
    y = psi @ w_t
    w, losses = torch.zeros_like(w_t), {}
    for t in range(int(times.step.max()) + 1):
        err = w - w_t
        losses[t] = 0.5 * float((lam_t * err * err).sum())
        w = w - cfg.lr / cfg.samples * psi.T @ (psi @ w - y)
    assert np.allclose(times.loss, [losses[t] for t in times.step], rtol=1e-7)


def test_ridgeless_is_the_interpolant():
    """The data curve's estimator interpolates its samples with the minimum norm (GD's t → ∞ limit from 0)."""
    cfg = SMALL
    _, data = X.kernel_limit_runs(cfg, NullProgress())
    lam, _, w_star = S.power_law_task(cfg.a, cfg.b, cfg.features)
    psi = power_law_features(cfg.samples, torch.as_tensor(lam), generator(cfg.seed + 11)).numpy()
    for p, loss in zip(data.samples, data.loss):
        w = np.linalg.pinv(psi[:p]) @ (psi[:p] @ w_star)
        assert loss == pytest.approx(0.5 * float(np.sum(lam * (w - w_star) ** 2)), rel=1e-6)


def test_finite_n_gd_closed_form_equals_iterated_gd():
    cfg = SMALL
    draws = X.draw_projections(cfg)
    frame = X.gd_curve_runs(cfg, draws)
    n = cfg.gd_sizes[0]
    mu, theta, floor = (torch.as_tensor(v) for v in draws.at(n))
    x, y = regression_samples(cfg.gd_ratio * n, mu, theta, floor, generator(cfg.seed + 37))
    p = cfg.gd_ratio * n
    lr = cfg.lr / mu.max(-1).values
    w, out = torch.zeros_like(mu), {}
    for t in range(cfg.gd_steps + 1):
        out[t] = floor + 0.5 * (mu * (w - theta) ** 2).sum(-1)
        grad = (x.transpose(-1, -2) @ ((x @ w.unsqueeze(-1)).squeeze(-1) - y).unsqueeze(-1)).squeeze(-1) / p
        w = w - lr[:, None] * grad
    for r in range(cfg.replicates):
        part = frame[frame.replicate == r]
        assert np.allclose(part.loss, [float(out[t][r]) for t in part.step], rtol=1e-7)


def test_regression_samples_have_the_stated_moments():
    """u_i ~ N(0, μ_i) independent, y = θ·u + √(2L) ξ: E uuᵀ = diag μ, E uy = μθ, E y² = Σμθ² + 2L."""
    f64 = torch.float64
    mu, theta = torch.tensor([1.0, 0.3, 0.05], dtype=f64), torch.tensor([0.5, -1.0, 2.0], dtype=f64)
    floor = torch.tensor(0.1, dtype=f64)
    u, y = regression_samples(200_000, mu, theta, floor, generator(5))
    assert torch.allclose(u.T @ u / len(u), torch.diag(mu), atol=0.01)
    assert torch.allclose(u.T @ y / len(u), mu * theta, atol=0.01)
    assert float((y * y).mean()) == pytest.approx(float((mu * theta**2).sum() + 2 * floor), rel=0.01)


@pytest.mark.parametrize("overrides,field", [
    ({"spectrum_exponent": 1.0}, "spectrum_exponent"), ({"target_exponent": 0.9}, "target_exponent"),
    ({"sgd_sizes": (20,)}, "sgd_sizes"), ({"samples": 4096}, "samples"), ({"time_modes": (8.0, 4.0)}, "time_modes"),
    ({"data_sizes": (32, 16, 64)}, "data_sizes"), ({"model_sizes": (12, 16, 4096)}, "model_sizes")])
def test_bad_configs_are_refused(overrides, field):
    from lmech.config import validate

    with pytest.raises(BadInput, match=field):
        validate(dataclasses.replace(X.ScalingExponentsConfig(), **overrides))


def test_preconditions_flag_boundaries_short_windows_and_the_cut_off():
    """A task near a − 1 = b (the model exponent changes form) or a window under a decade is not judged."""
    near = X.window_checks(dataclasses.replace(X.ScalingExponentsConfig(), target_exponent=4.05)).set_index("exponent")
    assert "phase boundary" in X.precondition(near.loc["model"])
    short = dataclasses.replace(X.ScalingExponentsConfig(), model_sizes=(16, 32, 64, 128), time_modes=(4.0, 8.0))
    rows = X.window_checks(short).set_index("exponent")
    assert "too short" in X.precondition(rows.loc["model"])
    assert "too short" in X.precondition(rows.loc["time"])  # 4 → 8 modes at b = 3: t spans 2³ = 8x
    binds = dataclasses.replace(X.ScalingExponentsConfig(), spectrum_exponent=1.2, target_exponent=1.8, features=1024,
                                time_modes=(2.0, 64.0))
    for _, row in X.window_checks(binds).iterrows():
        assert "cut-off" in X.precondition(row)


@pytest.mark.parametrize("label", ["super-easy", "hard"])
def test_lawbook_exponents_and_asymmetry(quick_run, label):
    """The fitted exponents sit inside their 10% bands and the asymmetry is judged only for the super-easy task."""
    exp = get(NAME)
    prediction, measurement, verdicts, _ = quick_run(NAME, label)
    keys = {v.key: v for v in verdicts}
    assert ("asymmetry" in keys) == (label.startswith("super-easy"))
    fits = measurement.series["fits"].set_index("exponent")
    ex = prediction.arrays["exponents"]
    for key in ("time", "data", "model"):
        assert fits.loc[key, "measured"] == pytest.approx(getattr(ex, key), rel=X.EXPONENT_TOL)
        assert keys[f"{key}_exponent"].status == "holds"
    if "asymmetry" in keys:  # model size saturates at b, not at the data's min(a − 1, 2b)
        assert fits.loc["model", "measured"] < 0.8 * fits.loc["data", "measured"]
    config = dict(exp.lawbook())[label]
    shifted = X._summary_model_exponent(config, prediction, measurement)
    assert {v.key: v.status for v in exp.verdict(config, prediction, shifted)}["model_exponent"] == (
        "violated" if label.startswith("super-easy") else "holds")


def test_the_law_holds_at_a_task_outside_the_law_book():
    """(a, b) = (4.5, 2.5), super-easy in phase III (model 2.5, data 3.5, time 1.4): every criterion holds at
    seed 0 (seeds 0-2 measured: worst 5.9%, the asymmetry at seed 2)."""
    exp = get(NAME)
    cfg = dataclasses.replace(exp.quick_config(), target_exponent=4.5, spectrum_exponent=2.5, replicates=24,
                              gd_sizes=(16,), sgd_sizes=(16,))
    verdicts = exp.verdict(cfg, exp.predict(cfg), exp.measure(cfg))
    assert {v.key: v.status for v in verdicts} == {k: "holds" for k in (
        "time_exponent", "data_exponent", "model_exponent", "asymmetry", "gd_curve", "sgd_curve")}


def test_a_pre_asymptotic_window_is_not_judged():
    """At (2.5, 2) the projection DE's slope over N = 12-128 is 1.41, 5.8% short of a − 1 = 1.5, and at
    M = 2048 the data window's DE slope moves by 2.7% out to 16M: both inconclusive, never judged."""
    rows = X.window_checks(dataclasses.replace(X.ScalingExponentsConfig(), target_exponent=2.5,
                                               spectrum_exponent=2.0)).set_index("exponent")
    assert "pre-asymptotic" in X.precondition(rows.loc["model"])
    assert "cut-off" in X.precondition(rows.loc["data"])
    assert X.precondition(rows.loc["time"]) is None


def _kernel_problem(n=12, replicates=6, seed=0):
    """Eigensystems of drawn projections of the (5, 3) task (M = 64): the SGD kernel's inputs."""
    cfg = dataclasses.replace(SMALL, model_sizes=(4, 8, n), replicates=replicates, seed=seed)
    mu, theta, floor = X.draw_projections(cfg).at(n)
    return mu, theta, floor, 0.15 / mu.sum(-1)


def test_sgd_kernel_float32_equals_float64_on_the_same_draws():
    """The float32 iterate against a float64 iterate driven by exactly the same draws (the float64 kernel it
    replaced): the chain-mean loss curves agree to 1e-4 relative (measured 5e-7; SGD's own run-to-run scatter
    is ±5-15% per step), with no drift (the mean relative gap ≤ 1e-5), for B = 1 and B = 3."""
    mu, theta, floor, lr = _kernel_problem()
    steps = np.concatenate([[0], np.unique(np.geomspace(1, 600, 25).astype(int))])
    for batch in (1, 3):
        curves = [X.sgd_losses(mu, theta, floor, lr, batch, 4, steps, generator(7), dtype=dtype)
                  for dtype in (torch.float32, torch.float64)]
        gap = curves[0] / curves[1] - 1
        assert np.max(np.abs(gap)) <= 1e-4 and abs(float(gap.mean())) <= 1e-5


def test_sgd_kernel_is_deterministic_and_tracks_the_volterra_expectation():
    """Same generator seed ⇒ the same numbers; with B = 2 (the batched path) the mean of 6 draws × 64 runs tracks
    the exact expected loss (:func:`lmech.theory.scaling.sgd_volterra`, itself tested against a literal
    evaluation) with normalized RMS ≤ 0.1 (the law's SGD tolerance; measured 0.010) and the initial loss
    exact (½E y², the same at every draw)."""
    mu, theta, floor, lr = _kernel_problem()
    steps = np.concatenate([[0], np.unique(np.geomspace(1, 400, 20).astype(int))])
    runs = [X.sgd_losses(mu, theta, floor, lr, 2, 64, steps, generator(3)) for _ in range(2)]
    assert np.array_equal(runs[0], runs[1])
    exact = S.sgd_volterra(mu, mu * theta**2, lr, 2, steps, floor)
    assert np.allclose(runs[0][:, 0], exact[:, 0], rtol=1e-6)
    gap = runs[0].mean(0)[1:] / exact.mean(0)[1:] - 1
    assert float(np.sqrt(np.mean(gap**2))) <= 0.1
