"""The lazy-rich law (Geiger et al. 2020, arXiv 1906.08034; Chizat et al. 2019, arXiv 1812.07956): the widths
collapse in α√h, not α; the fitted width exponent is ½; the lazy tail S·(α√h)²·h is one coefficient for every
width; the lazy corner is kernel GD with the initial eNTK, a rich network is not; a diverged run is recorded.
The counterexamples of every criterion run in tests/test_contract.py."""

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
    assert w.details["factor_vs_alpha"] > 1.5 * w.agreement
    k = by_key["collapse_kernel"]
    assert k.details["factor_vs_alpha"] > k.agreement + 1.0
    # Lazy regime: relative weight change ∝ 1/(α√h) (module docstring).
    grid = measurement.series["grid"]
    for _h, sel in grid.groupby("width"):
        lazy = sel[sel.alpha_sqrt_h >= 10].sort_values("alpha_sqrt_h")
        slope_w = np.polyfit(np.log(lazy["alpha_sqrt_h"]), np.log(lazy["weight_change"]), 1)[0]
        assert slope_w == pytest.approx(-1.0, abs=0.05)
    assert grid["converged"].all() and (grid["diverged_at"] < 0).all()


def test_lazy_tail_coefficients_scatter_between_initializations(quick_run):
    # S·(α√h)²·h at α√h = 100 is a property of the initialization: it scatters over the inits of one width
    # (measured 2-12), which is why the law judges the medians.
    _, measurement, verdicts, _ = quick_run("lazy-rich")
    tail = measurement.series["lazy_tail"]
    cfg = get("lazy-rich").quick_config()
    assert len(tail) == cfg.tail_inits * len(cfg.widths)
    per_width = tail.groupby("width")["coefficient"]
    assert (per_width.max() / per_width.min()).max() > 1.2
    medians = {v.key: v for v in verdicts}["lazy_tail"].measured
    assert medians == {int(h): pytest.approx(m) for h, m in per_width.median().items()}


def test_lazy_corner_tends_to_initial_entk_regression():
    # α → ∞ (α√h = 10⁴): training is the linearized GD with the initial eNTK; its test outputs are the kernel
    # GD limit's to 1e-4 (the distance falls like 1/(α√h): 1e-3 at α√h = 100), and far from a rich network's.
    from lmech.experiments.lazy_rich import _task, function_distance, lazy_limit, train_centred

    exp = get("lazy-rich")
    cfg = exp.quick_config()
    task = _task(cfg)
    limit = lazy_limit(cfg, task, 256).numpy()
    row, f_lazy = train_centred(cfg, task, 256, 1e4)
    assert row["converged"] and row["kernel_distance"] < 1e-9 and row["weight_change"] < 1e-4  # ∝ 1/(α√h)
    assert function_distance(f_lazy, limit) < 1e-4
    _, f_rich = train_centred(cfg, task, 256, 0.1)
    assert function_distance(f_rich, limit) > 0.1


def test_width_exponent_recovers_the_collapse_variable():
    # Synthetic curves m_h(α) = g(α·h^p) with a sigmoid-to-power-law g: the fit returns p to 0.025 (linear
    # interpolation of the curved part between samples a factor 3 apart biases it: measured 0.022 at p = 0,
    # 0.006 at p = 0.3, 0 at p = 0.5 and 0.8).
    from lmech.experiments.lazy_rich import width_exponent

    def g(z):
        return 3.0 / (1.0 + z)

    betas = np.array([0.1, 0.3, 1.0, 3.0, 10.0, 100.0])
    for p in (0.0, 0.3, 0.5, 0.8):
        alphas = {h: betas / math.sqrt(h) for h in (256, 1024, 4096)}
        ms = {h: g(alphas[h] * h**p) for h in alphas}
        assert width_exponent(alphas, ms) == pytest.approx(p, abs=0.025)
    assert math.isnan(width_exponent({1: betas, 2: betas}, {1: -betas, 2: betas}))


def test_lazy_rich_helpers():
    from lmech.experiments.lazy_rich import collapse_factor, crossover, function_distance

    x = {1: np.array([0.1, 1.0, 10.0]), 2: np.array([0.1, 1.0, 10.0])}
    same = {1: np.array([1.0, 0.1, 0.01]), 2: np.array([1.0, 0.1, 0.01])}
    assert collapse_factor(x, same) == 1.0
    shifted = {1: same[1], 2: 2 * same[2]}
    assert collapse_factor(x, shifted) == pytest.approx(2.0)
    assert crossover(np.array([0.1, 1.0, 10.0]), np.array([10.0, 1.0, 0.1])) == pytest.approx(1.0)
    assert math.isnan(crossover(np.array([0.1, 1.0]), np.array([0.5, 0.1])))
    assert function_distance([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert function_distance([0.0, 0.0], [3.0, 4.0]) == pytest.approx(1.0)
    assert math.isnan(function_distance([np.nan, 0.0], [3.0, 4.0]))


def test_a_non_finite_loss_is_recorded_as_diverged(tmp_path, monkeypatch):
    # A run whose loss becomes non-finite (fault injected: an infinite step for width 64, so the parameters are
    # inf/NaN after step 0) is recorded as diverged at step 1: the measurement's diverged_at is set, its rows are
    # NaN, the other width's runs are results, the verdicts judge NaN as violated and the figures draw what exists.
    import torch

    from lmech.experiments import lazy_rich

    exp = get("lazy-rich")
    cfg = dataclasses.replace(exp.quick_config(), widths=(64, 128), alpha_sqrt_h=(0.3, 1.0, 3.0), tail_inits=1)
    real_lr = lazy_rich._lr

    def infinite_for_64(config, net, x):
        return math.inf if net.layers[0].weight.shape[0] == 64 else real_lr(config, net, x)

    monkeypatch.setattr(lazy_rich, "_lr", infinite_for_64)
    monkeypatch.setattr(lazy_rich, "lazy_limit", lambda config, task, width: torch.ones(config.n_test))
    prediction, measurement = exp.predict(cfg), exp.measure(cfg)
    grid = measurement.series["grid"]
    assert measurement.diverged_at == 1
    assert (grid[grid.width == 64]["diverged_at"] == 1).all() and (grid[grid.width == 128]["diverged_at"] < 0).all()
    assert grid[grid.width == 64]["kernel_distance"].isna().all()
    assert np.isfinite(grid[grid.width == 128]["test_mse"]).all()
    verdicts = {v.key: v for v in exp.verdict(cfg, prediction, measurement)}
    assert verdicts["collapse_weights"].status == "violated"
    assert exp.figures(cfg, prediction, measurement, tmp_path)[0].stat().st_size > 5000


@pytest.mark.parametrize("override,field", [
    ({"widths": (256,)}, "widths"),
    ({"alpha_sqrt_h": (1.0, -1.0, 2.0)}, "alpha_sqrt_h"),
    ({"loss_tol": 0.0}, "loss_tol"),
    ({"lazy_min": 0.5}, "lazy_min"),
    ({"tail_inits": 0}, "tail_inits"),
])
def test_bad_config_rejected_before_work(override, field):
    with pytest.raises(BadInput) as err:
        apply_overrides(get("lazy-rich").quick_config(), override)
    assert field in str(err.value)
