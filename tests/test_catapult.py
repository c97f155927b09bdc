"""The catapult law: the uv model's closed form against autograd GD, the phase rule, the bisection, λ0's
normalization against a dense Gauss–Newton matrix, and the sweep path against the in-process one."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments.catapult import (
    CatapultConfig,
    _curvature_outcome,
    _gn_top,
    _init_seed,
    boundaries,
    brackets,
    classify,
    train_point,
)
from lmech.models.mlp import mlp
from lmech.theory.catapult import lazy_catapult_boundary, uv_max_lr, uv_phase, uv_step, uv_trajectory


# -- theory -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0.0, 0.7])
@pytest.mark.parametrize("factor", [1.5, 3.0])
def test_uv_closed_form_is_gradient_descent_on_u_and_v(factor, target):
    """Reference: torch autograd GD on (u, v) of f = vᵀu/√n, ½(f − y)². The closed form is exact at any width, so
    the two agree to float64 round-off (1e-10 relative over 40 steps, through a catapult at ηλ0 = 3)."""
    n = 64
    gen = torch.Generator().manual_seed(3)
    u = torch.randn(n, generator=gen, dtype=torch.float64)
    v = torch.randn(n, generator=gen, dtype=torch.float64)
    f, lam = float(u @ v) / math.sqrt(n), float(u @ u + v @ v) / n
    lr = factor / lam
    for _ in range(40):
        uu, vv = u.clone().requires_grad_(), v.clone().requires_grad_()
        loss = 0.5 * (uu @ vv / math.sqrt(n) - target) ** 2
        gu, gv = torch.autograd.grad(loss, (uu, vv))
        u, v = u - lr * gu, v - lr * gv
        f, lam = uv_step(f, lam, lr, n, target)
        assert f == pytest.approx(float(u @ v) / math.sqrt(n), rel=1e-10, abs=1e-12)
        assert lam == pytest.approx(float(u @ u + v @ v) / n, rel=1e-10)


def test_uv_phases_and_boundaries():
    assert lazy_catapult_boundary(0.5) == 4.0 and uv_max_lr(0.5) == 8.0
    assert [uv_phase(c) for c in (1.9, 2.1, 3.9, 4.1)] == ["lazy", "catapult", "catapult", "diverged"]
    with pytest.raises(BadInput, match="lam0"):
        lazy_catapult_boundary(0.0)
    with pytest.raises(BadInput, match="width"):
        uv_trajectory(0.1, 2.0, 1.0, 0, 5)
    # the map's three phases at large width (Sec. 2.1): λ barely moves, falls below 2/η, or blows up
    n, f0, lam0 = 10**6, 1.0, 2.0
    for factor, phase in ((1.8, "lazy"), (3.0, "catapult"), (4.4, "diverged")):
        f, lam = uv_trajectory(f0, lam0, factor / lam0, n, 400)
        if phase == "diverged":
            assert not np.isfinite(f[-1]) or abs(f[-1]) > 1e100
        else:
            assert abs(f[-1]) < 1e-6 and lam[-1] * factor / lam0 < 2.0
            assert (abs(lam[-1] / lam0 - 1) < 1e-4) == (phase == "lazy")


def test_the_laws_uv_run_follows_the_closed_form():
    """The measured uv run (NumPy GD on u and v) against the (f, λ) map from the same initialization."""
    cfg = CatapultConfig(model="uv", widths=(256,), lr_factors=(3.0,), refine=0, steps=60, uv_target=0.3)
    frames = train_point(cfg, 256, 3.0)
    rng = np.random.default_rng(_init_seed(cfg.seed, 256))
    u, v = rng.standard_normal(256), rng.standard_normal(256)
    lam0 = float(u @ u + v @ v) / 256
    f, lam = uv_trajectory(float(u @ v) / 16, lam0, 3.0 / lam0, 256, 60, target=0.3)
    loss = frames["loss"]["loss"].to_numpy()
    np.testing.assert_allclose(loss, 0.5 * (f[: len(loss)] - 0.3) ** 2, rtol=1e-8, atol=1e-300)
    np.testing.assert_allclose(frames["curvature"]["lambda"].to_numpy(), lam[: len(loss)], rtol=1e-10)
    row = frames["points"].iloc[0]
    assert row.phase == "catapult" and row.curvature_ratio < 1.0 and row.lambda0 == pytest.approx(lam0)


# -- the phase rule and the brackets ----------------------------------------------------------------
def test_classify():
    assert classify([1.0, 0.5, 0.2, 0.1], 0.1) == ("lazy", 1.0)
    assert classify([1.0, 0.5, 0.54, 0.1], 0.1)[0] == "lazy"  # an 8% rise is under the threshold
    phase, rise = classify([1.0, 0.5, 5.0, 0.01], 0.1)
    assert phase == "catapult" and rise == pytest.approx(10.0)
    assert classify([1.0, 3.0, 2.0], 0.1)[0] == "unsettled"
    assert classify([1.0, 3.0, math.inf], 0.1)[0] == "diverged"
    # below 1e-8 of the initial loss, round-off rises are not counted
    assert classify([1.0, 1e-9, 5e-9, 1e-12], 0.1)[0] == "lazy"


def _points(phases: dict[float, str], width: int = 8) -> pd.DataFrame:
    return pd.DataFrame({"width": width, "lr_factor": list(phases), "phase": list(phases.values())})


def test_brackets_and_boundaries():
    pts = _points({1.0: "lazy", 1.9: "lazy", 2.2: "catapult", 3.5: "catapult", 4.5: "diverged", 9.0: "diverged"})
    assert brackets(pts) == {"lazy": (1.9, 2.2), "max": (3.5, 4.5)}
    b = boundaries(pts).iloc[0]
    assert b.lazy_boundary == pytest.approx(math.sqrt(1.9 * 2.2)) and b.max_boundary == pytest.approx(math.sqrt(3.5 * 4.5))
    # an unsettled point inside the max bracket: the catapult/divergence boundary is not located
    assert brackets(_points({1.0: "lazy", 3.0: "catapult", 3.5: "unsettled", 5.0: "diverged"}))["max"] is None
    # no lazy point: no lazy bracket
    assert brackets(_points({3.0: "catapult", 5.0: "diverged"}))["lazy"] is None


def test_a_catapult_still_settling_onto_2_over_eta_is_inconclusive_never_a_pass():
    def runs(*pairs):  # (ratio at mid-run, ratio at the end)
        return pd.DataFrame({"width": 8, "lr_factor": range(len(pairs)), "curvature_ratio_mid": [p[0] for p in pairs],
                             "curvature_ratio": [p[1] for p in pairs]})

    assert _curvature_outcome(runs((0.9, 0.8), (0.5, 0.5))) == (0.8, None)
    worst, reason = _curvature_outcome(runs((0.9, 0.8), (1.06, 1.013)))  # falling 0.047 > excess 0.013
    assert worst == pytest.approx(1.013) and "still settling" in reason
    assert _curvature_outcome(runs((1.02, 1.013), (0.5, 0.5)))[1] is None  # barely falling: violated
    assert _curvature_outcome(runs((1.06, 1.013), (1.1, 1.2)))[1] is None  # one rising: violated
    assert _curvature_outcome(runs())[1] == "no run was classified catapult"


# -- λ0's normalization ----------------------------------------------------------------------------------
def test_lambda0_is_the_top_eigenvalue_of_the_dense_gauss_newton_matrix():
    """Reference: J (n × P, by torch.func.jacrev) and the dense Gauss–Newton matrix JᵀJ/n of ½·mean (f − y)²."""
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    net = mlp(3, 5, 1, "relu", math.sqrt(2), 0.1, "ntk", seed=2, dtype=torch.float64)
    params = {k: p.detach() for k, p in net.named_parameters()}
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(net, p, (x,)).squeeze(1))(params)
    J = torch.cat([j.reshape(6, -1) for j in jac.values()], dim=1)
    dense = torch.linalg.eigvalsh(J.T @ J / 6)[-1]
    lam0, _ = _gn_top(net, x)
    assert lam0 == pytest.approx(float(dense), rel=1e-10)


def test_bad_input_before_any_work():
    from lmech.config import validate

    with pytest.raises(BadInput, match="widths"):
        validate(CatapultConfig(widths=(1024, 256)))
    with pytest.raises(BadInput, match="lr_factors"):
        validate(CatapultConfig(lr_factors=(2.0, 1.0)))
    with pytest.raises(BadInput, match="lr_factors"):
        validate(CatapultConfig(lr_factors=(-1.0, 1.0)))


# -- the law ----------------------------------------------------------------------------------------------
def test_a_point_above_eta_max_is_recorded_as_diverged():
    exp = get("catapult")
    cfg = CatapultConfig(model="uv", widths=(256,), lr_factors=(6.0,), refine=0, steps=100)
    m = exp.measure(cfg)
    assert m.diverged_at is not None and m.series["points"].iloc[0].phase == "diverged"
    statuses = {v.key: v.status for v in exp.verdict(cfg, exp.predict(cfg), m)}
    assert statuses["lazy_boundary"] == "inconclusive" and statuses["catapult_curvature"] == "inconclusive"


def test_quick_mlp_entry_reports_eta_max_and_records_diverged_points(quick_run):
    _, m, verdicts, _ = quick_run("catapult", "mlp")
    pts = m.series["points"]
    assert m.diverged_at is None  # the sweep is not diverged: some of its points are
    div = pts[pts.phase == "diverged"]
    assert len(div) and (div.diverged_at >= 0).all()
    b = m.series["boundaries"]
    assert np.isfinite(b["max_boundary"]).all() and (b["max_boundary"] > b["lazy_boundary"]).all()
    by_key = {v.key: v for v in verdicts}
    assert by_key["lazy_boundary"].details["eta_max_paper_relu"] == 12.0
    # the boundaries were bisected, not set by hand: refinement rounds exist and stay inside the grid's brackets
    assert pts["round"].max() >= 1


def test_the_local_executor_gives_the_inline_points_and_resumes(tmp_path, no_recompute):
    exp = get("catapult")
    small = CatapultConfig(model="uv", widths=(64, 128), lr_factors=(1.4, 2.8, 5.6), refine=2, steps=120)
    inline = exp.measure(small)
    config = dataclasses.replace(small, executor="local", workers=1, store=str(tmp_path / "lab"))
    swept = exp.measure(config)
    for name in ("points", "loss", "curvature"):
        a = inline.series[name].sort_values(["width", "lr_factor"] + (["step"] if name != "points" else []))
        b = swept.series[name].sort_values(["width", "lr_factor"] + (["step"] if name != "points" else []))
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)

    no_recompute()  # a second measurement finds every point in the store: nothing is computed again
    again = exp.measure(config)
    pd.testing.assert_frame_equal(again.series["points"], swept.series["points"])
