"""The lazy-rich law (Geiger et al. 2020, arXiv 1906.08034; Chizat et al. 2019, arXiv 1812.07956):
against α alone the measurements do not collapse, and the lazy corner tends to kernel regression with
the network's own initial eNTK as α → ∞."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from lmech.config import apply_overrides
from lmech.errors import BadInput
from lmech.experiments import get


def test_quick_lawbook_entry_holds(quick_run):
    _, measurement, verdicts, figures = quick_run("lazy-rich")
    assert measurement.diverged_at is None and figures
    failed = {v.key: (v.agreement, v.tolerance) for v in verdicts if not v.holds}
    assert not failed, failed


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



@pytest.mark.parametrize("override,field", [
    ({"widths": (256,)}, "widths"),
    ({"alpha_sqrt_h": (1.0, -1.0, 2.0)}, "alpha_sqrt_h"),
    ({"loss_tol": 0.0}, "loss_tol"),
])
def test_bad_config_rejected_before_work(override, field):
    with pytest.raises(BadInput) as err:
        apply_overrides(get("lazy-rich").quick_config(), override)
    assert field in str(err.value)
