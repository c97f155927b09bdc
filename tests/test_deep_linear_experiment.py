"""The deep-linear law against trained networks, at the issue's tolerances (5% on t½, 0.05 transition RMS).

The network is trained by autograd on whitened data; the prediction is the closed form (depth 2) or
the integrated mode ODE (depth 3). A run with a step size too large for gradient descent to follow
gradient flow must be judged violated: the verdict can fail.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from lmech.config import apply_overrides
from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments.deep_linear import transition_errors
from lmech.experiments.runner import compute

EXP = get("deep-linear")
FAST = replace(EXP.quick_config(), stage_init_scales=())


def _verdicts(config):
    prediction, measurement, verdicts, _ = compute(EXP, config)
    return prediction, measurement, {v.key: v for v in verdicts}


@pytest.mark.parametrize("depth", [2, 3])
def test_trained_network_follows_theory(depth):
    _, measurement, verdicts = _verdicts(replace(FAST, depth=depth))
    assert verdicts["t_half_err"].holds and verdicts["t_half_err"].agreement <= 0.05
    assert verdicts["transition_rms_err"].holds and verdicts["transition_rms_err"].agreement <= 0.02
    # Every mode is learned by the end of the run (2 × the slowest t½): u_i within 1% of s_i.
    modes = measurement.series["modes"].iloc[-1]
    np.testing.assert_allclose([modes[f"u{i}"] for i in range(4)], FAST.singular_values, rtol=1e-2)


@pytest.mark.parametrize("reduction,half,lr", [("sum", True, 0.005 / 32), ("mean", False, 0.0025),
                                               ("sum", False, 0.0025 / 32)])
def test_time_constant_conversion_other_loss_conventions(reduction, half, lr):
    # Same dimensionless dynamics under each convention when c·η is held fixed: the law must hold and
    # the measured half-learning times in *steps* must equal t½·τ with τ = 1/(c η).
    config = replace(FAST, loss_reduction=reduction, loss_half=half, lr=lr)
    prediction, measurement, verdicts = _verdicts(config)
    assert verdicts["t_half_err"].holds
    steps_per_t = 1.0 / (lr * (32 if reduction == "sum" else 1) * (1 if half else 2))
    assert prediction.arrays["tau_steps"] == pytest.approx(steps_per_t, rel=1e-12)
    frame = measurement.series["modes"]
    t_from_steps = frame["step"].to_numpy() / steps_per_t
    np.testing.assert_allclose(frame["t"].to_numpy(), t_from_steps, rtol=1e-12)


def test_large_step_is_judged_violated():
    # With c·η·s_max = 0.45 the discrete map lags gradient flow by ≈ c·η·s/2 in t½ (16% measured) for the
    # strongest mode: both criteria must report a violation (the test of a law can fail). The old
    # whole-run trajectory RMS held here (0.03 < 0.05): plateaus before and after each transition agree.
    prediction, measurement, verdicts = _verdicts(replace(FAST, lr=0.15))
    assert not verdicts["t_half_err"].holds and verdicts["t_half_err"].agreement > 0.12
    assert not verdicts["transition_rms_err"].holds
    cols = [f"u{i}" for i in range(4)]
    pred, meas = prediction.series["modes"], measurement.series["modes"]
    whole_run = np.sqrt(np.mean((meas[cols].to_numpy() - pred[cols].to_numpy()) ** 2)) / 3.0
    assert whole_run < 0.05  # why the metric is judged over each transition window instead


@pytest.mark.parametrize("depth", [2, 3])
def test_transition_error_sees_a_five_percent_timing_shift(depth):
    # The prediction against itself run 5% slower (u(t/1.05)): the transition error must exceed the
    # tolerance 0.05, and it is exactly 0 for the prediction against itself.
    prediction = EXP.predict(replace(FAST, depth=depth))
    pred = prediction.series["modes"]
    slow = pred.copy()
    for i in range(4):
        slow[f"u{i}"] = np.interp(pred["t"] / 1.05, pred["t"], pred[f"u{i}"])
    assert np.all(transition_errors(pred, pred, FAST.singular_values) == 0)
    shifted = transition_errors(pred, slow, FAST.singular_values)
    assert shifted.max() > 0.05 and shifted.min() > 0.02, shifted


def test_progress_never_overshoots_its_total():
    class Count:
        def start(self, total, description):
            self.total, self.done = total, 0

        def advance(self, n=1):
            self.done += n
            assert self.done <= self.total

    progress = Count()
    config = replace(EXP.quick_config(), stage_init_scales=(1e-1, 1e-2))
    EXP.measure(config, progress)
    assert progress.done == progress.total


def test_non_finite_start_is_diverged_at_step_zero(tmp_path):
    # init_noise = 1e308 overflows the weights (refused by validation; built here without it): there is
    # no prediction (NaN) and the run diverges at step 0; the verdicts are violated, the figure is drawn.
    with pytest.raises(BadInput, match="init_noise"):
        apply_overrides(EXP.quick_config(), {"init_noise": 1e308})
    config = replace(FAST, init_noise=1e308)
    prediction, measurement, verdicts, figures = compute(EXP, config, figures_dir=tmp_path)
    assert measurement.diverged_at == 0 and len(measurement.series["modes"]) == 1
    assert np.all(np.isnan(prediction.arrays["t_half"]))
    assert all(v.status == "violated" and math.isnan(v.agreement) for v in verdicts)
    assert figures and figures[0].stat().st_size > 5000


def test_divergence_mid_run_cuts_the_series(tmp_path):
    # A prediction run with a measurement that blows up at step 40: the verdicts are violated (the
    # transitions are not covered) and the figure draws the 41 rows that exist.
    prediction = EXP.predict(FAST)
    frame = EXP.measure(replace(FAST, steps=40)).series["modes"].copy()
    frame.loc[40, ["loss", "u0"]] = [math.inf, math.nan]
    from lmech.experiments import Result

    measurement = Result(series={"modes": frame}, arrays={"t_half": np.full(4, np.nan)}, diverged_at=40)
    verdicts = EXP.verdict(FAST, prediction, measurement)
    assert all(v.status == "violated" for v in verdicts)
    assert EXP.figures(FAST, prediction, measurement, tmp_path)[0].exists()


def test_smaller_init_delays_learning():
    # Stage-like learning: smaller u0 → later t½ for every mode (eq. 7: t½ grows like ln(1/u0)/(2s)).
    p_big, _, _ = _verdicts(replace(FAST, init_scale=1e-2, steps=10))
    p_small, _, _ = _verdicts(replace(FAST, init_scale=1e-5, steps=10))
    assert np.all(p_small.arrays["t_half"] > p_big.arrays["t_half"])


def test_random_init_runs_and_records_balancedness():
    # The random (non-decoupled) start is outside the exact theory; it must still run and be measured.
    _, measurement, verdicts = _verdicts(replace(FAST, init="random", steps=300))
    frame = measurement.series["modes"]
    assert len(frame) == 301 and np.isfinite(frame["balance_drift"]).all()
    assert set(verdicts) == {"t_half_err", "transition_rms_err"}


@pytest.mark.parametrize("override,name", [({"depth": 1}, "depth"), ({"hidden": 2}, "hidden"),
                                           ({"n_samples": 4}, "n_samples"), ({"init_scale": 0.3}, "init_scale"),
                                           ({"lr": 1.0}, "lr"), ({"init": "orthogonal"}, "init"),
                                           ({"singular_values": (3.0, -1.0)}, "singular_values")])
def test_bad_config_rejected_before_work(override, name):
    with pytest.raises(BadInput, match=name):
        apply_overrides(EXP.quick_config(), override)
