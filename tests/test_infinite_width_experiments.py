"""The four infinite-width laws (issue 5): quick law-book entries hold, and each verdict can fail.

* ntk-convergence: eNTK vs the analytic NTK (Jacot et al. 2018); against the NTK of the wrong depth the
  error stops decaying and the slope verdict is violated.
* linearized-training: GD on wide MLPs vs the closed-form linearized dynamics (Lee et al. 2019); narrow
  networks (widest 64) miss the 0.1 tolerance.
* eigenlearning: kernel regression learning curves vs the eigenlearning equations (Simon et al. 2023);
  the NNGP's spectrum does not predict the NTK's regression.
* lazy-rich: Geiger et al. 2020 / Chizat et al. 2019; against α alone the measurements do not collapse,
  and the lazy corner tends to kernel regression with the network's own initial eNTK as α → ∞.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from lmech.config import apply_overrides
from lmech.errors import BadInput
from lmech.experiments import Result, get

LAWS = ["ntk-convergence", "linearized-training", "eigenlearning", "lazy-rich"]


@pytest.mark.parametrize("name", LAWS)
def test_quick_lawbook_entry_holds(quick_run, name):
    _, measurement, verdicts, figures = quick_run(name)
    assert measurement.diverged_at is None and figures
    failed = {v.key: (v.agreement, v.tolerance) for v in verdicts if not v.holds}
    assert not failed, failed


# -- ntk-convergence ----------------------------------------------------------------------------------

def test_ntk_convergence_slope_near_minus_half(quick_run):
    _, measurement, verdicts, _ = quick_run("ntk-convergence")
    (slope,) = verdicts
    assert -0.6 <= slope.agreement <= -0.4
    mean = measurement.series["mean_errors"]["mean"].to_numpy()
    assert mean[-1] < mean[0] / 3  # 32× the width: the error shrinks by ≈ √32 ≈ 5.7


def test_ntk_convergence_against_wrong_kernel_is_violated():
    # The eNTK of depth-2 networks compared with the depth-3 analytic NTK: the error saturates at the
    # kernels' difference, the fitted slope is far from −1/2, and the verdict reports a violation.
    from lmech.experiments.ntk_convergence import _inputs, analytic_ntk, relative_errors

    exp = get("ntk-convergence")
    cfg = dataclasses.replace(exp.quick_config(), widths=(64, 256, 1024), seeds=3, circle_points=0)
    x, _ = _inputs(cfg)
    wrong = analytic_ntk(dataclasses.replace(cfg, depth=3), x)
    errors = relative_errors(cfg, wrong)
    mean = errors.groupby("width")["rel_error"].mean().reset_index().rename(columns={"rel_error": "mean"})
    (verdict,) = exp.verdict(cfg, exp.predict(cfg), Result(series={"mean_errors": mean}))
    assert not verdict.holds and verdict.agreement > -0.3


# -- linearized-training ------------------------------------------------------------------------------

def test_linearized_training_error_shrinks_and_prediction_starts_at_f0(quick_run):
    prediction, measurement, verdicts, _ = quick_run("linearized-training")
    by_key = {v.key: v for v in verdicts}
    per_width = by_key["nrmse_widest"].details["per_width"]
    widths = sorted(per_width)
    assert per_width[widths[-1]] <= 0.1 and per_width[widths[0]] > per_width[widths[-1]]
    # At step 0 the closed form and the network agree exactly: same f0.
    p, m = prediction.series["test_outputs"], measurement.series["test_outputs"]
    np.testing.assert_allclose(p[p.step == 0]["f"].to_numpy(), m[m.step == 0]["f"].to_numpy(), rtol=0, atol=1e-12)
    # The networks fit the training set: final training loss far below the initial one.
    loss = measurement.series["train_loss"]
    assert loss[loss.step == loss.step.max()]["loss"].max() < 1e-3 * loss[loss.step == 0]["loss"].min()


def test_linearized_training_narrow_networks_are_judged_violated():
    exp = get("linearized-training")
    cfg = dataclasses.replace(exp.quick_config(), widths=(16, 64), seeds=1, steps=60)
    verdicts = {v.key: v for v in exp.verdict(cfg, exp.predict(cfg), exp.measure(cfg))}
    assert not verdicts["nrmse_widest"].holds


# -- eigenlearning ------------------------------------------------------------------------------------

def test_eigenlearning_learnabilities_and_conservation(quick_run):
    prediction, measurement, verdicts, _ = quick_run("eigenlearning")
    by_key = {v.key: v for v in verdicts}
    assert by_key["conservation"].agreement <= 1e-6
    # Σ_i N_i L_i + δ/κ = n, and the continuum stands for modes far below κ.
    curve = prediction.series["learning_curve"]
    np.testing.assert_allclose(curve["learnability_sum"], curve["n"], rtol=1e-9)
    assert curve["tail_ratio"].max() < 1e-3
    # Measured learnability of the degree-1 and degree-2 components within 0.05 of the theory at every n.
    lp, lm = prediction.series["learnability"], measurement.series["learnability"]
    for ell in (1, 2):
        diff = lm[lm.degree == ell]["learnability"].to_numpy() - lp[lp.degree == ell]["learnability"].to_numpy()
        assert np.max(np.abs(diff)) < 0.06, diff


def test_eigenlearning_wrong_spectrum_is_judged_violated(quick_run):
    # Regression with the NTK judged against the eigenlearning curve of the NNGP (a different spectrum).
    exp = get("eigenlearning")
    cfg = exp.quick_config()
    _, measurement, _, _ = quick_run("eigenlearning")
    wrong = exp.predict(dataclasses.replace(cfg, kernel="nngp"))
    verdicts = {v.key: v for v in exp.verdict(cfg, wrong, measurement)}
    assert not verdicts["test_mse"].holds


def test_eigenlearning_sphere_target_has_the_stated_power():
    from lmech.data.synthetic import generator, sphere_points
    from lmech.experiments.eigenlearning import _Target

    cfg = get("eigenlearning").quick_config()
    target = _Target(cfg, generator(0))
    comps = target.components(sphere_points(40000, cfg.in_features, generator(1)))
    # ‖c √N P_ℓ(x̂·u)‖² = c² (Monte Carlo, 40k points: ~1-2% standard error per degree)
    np.testing.assert_allclose(comps.pow(2).mean(0).numpy(), cfg.powers, rtol=0.08)
    gram = (comps.T @ comps / comps.shape[0]).numpy()  # different degrees are orthogonal
    off = gram - np.diag(np.diag(gram))
    assert np.abs(off).max() < 0.05


# -- lazy-rich ----------------------------------------------------------------------------------------

def test_lazy_rich_collapse_is_in_alpha_sqrt_h_not_alpha(quick_run):
    _, measurement, verdicts, _ = quick_run("lazy-rich")
    by_key = {v.key: v for v in verdicts}
    w = by_key["collapse_weights"]
    assert w.details["spread_vs_alpha"] > 5 * w.agreement
    k = by_key["collapse_kernel"]
    assert k.details["factor_vs_alpha"] > k.agreement + 1.0
    # Lazy regime: relative weight change ∝ 1/(α√h), kernel distance ∝ 1/((α√h)² h) (module docstring).
    grid = measurement.series["grid"]
    for _h, sel in grid.groupby("width"):
        lazy = sel[sel.alpha_sqrt_h >= 10].sort_values("alpha_sqrt_h")
        slope_w = np.polyfit(np.log(lazy["alpha_sqrt_h"]), np.log(lazy["weight_change"]), 1)[0]
        assert slope_w == pytest.approx(-1.0, abs=0.05)
    tail = k.details["lazy_tail_S_beta2_h"]
    assert max(tail.values()) / min(tail.values()) < 1.5
    assert grid["converged"].all()


def test_lazy_corner_tends_to_initial_entk_regression():
    # α → ∞ (α√h = 10⁴): training is the linearized flow with the initial eNTK; stopped at a tight
    # training loss its test MSE is the converged eNTK regression's to well under 1%.
    from lmech.experiments.lazy_rich import _task, train_centred

    exp = get("lazy-rich")
    cfg = dataclasses.replace(exp.quick_config(), loss_tol=1e-7, lr_fraction=0.9, max_steps=5000)
    out = train_centred(cfg, _task(cfg), 256, 1e4)
    assert out["converged"] and out["kernel_distance"] < 1e-9 and out["weight_change"] < 1e-3
    assert out["test_mse"] == pytest.approx(out["init_entk_regression_mse"], rel=5e-3)


def test_lazy_rich_helpers():
    from lmech.experiments.lazy_rich import collapse_factor, collapse_metric, crossover

    x = {1: np.array([0.1, 1.0, 10.0]), 2: np.array([0.1, 1.0, 10.0])}
    same = {1: np.array([1.0, 0.1, 0.01]), 2: np.array([1.0, 0.1, 0.01])}
    assert collapse_metric(x, same) == 0.0 and collapse_factor(x, same) == 1.0
    shifted = {1: same[1], 2: 2 * same[2]}
    assert collapse_factor(x, shifted) == pytest.approx(2.0)
    assert collapse_metric(x, shifted) == pytest.approx(math.log(2) / math.log(200))
    assert crossover(np.array([0.1, 1.0, 10.0]), np.array([10.0, 1.0, 0.1])) == pytest.approx(1.0)
    assert math.isnan(crossover(np.array([0.1, 1.0]), np.array([0.5, 0.1])))


# -- configs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,override,field", [
    ("ntk-convergence", {"widths": (64, 64, 128)}, "widths"),
    ("ntk-convergence", {"activation": "swish"}, "activation"),
    ("ntk-convergence", {"seeds": 0}, "seeds"),
    ("linearized-training", {"widths": (128,)}, "widths"),
    ("linearized-training", {"lr_fraction": 1.5}, "lr_fraction"),
    ("eigenlearning", {"powers": (1.0,)}, "powers"),
    ("eigenlearning", {"degrees": (1, 200, 3, 4)}, "max_degree"),
    ("eigenlearning", {"ns": (20,)}, "ns"),
    ("eigenlearning", {"kernel": "rbf"}, "kernel"),
    ("lazy-rich", {"widths": (256,)}, "widths"),
    ("lazy-rich", {"alpha_sqrt_h": (1.0, -1.0, 2.0)}, "alpha_sqrt_h"),
    ("lazy-rich", {"loss_tol": 0.0}, "loss_tol"),
])
def test_bad_config_rejected_before_work(name, override, field):
    with pytest.raises(BadInput) as err:
        apply_overrides(get(name).quick_config(), override)
    assert field in str(err.value)


def test_threads_and_seeds_are_local():
    # No experiment seeds torch globally: the global generator state is untouched by a run's pieces.
    state = torch.random.get_rng_state()
    exp = get("ntk-convergence")
    exp.measure(dataclasses.replace(exp.quick_config(), widths=(8, 16, 32), seeds=1, circle_points=0))
    assert torch.equal(state, torch.random.get_rng_state())
