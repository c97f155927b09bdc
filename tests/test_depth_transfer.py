"""Depth transfer (Dey et al. 2025, CompleteP, arXiv 2505.01618): the law-book entry, the depth rules the
networks are built with (closed forms of Table 1), and the verdicts' preconditions on synthetic curves.
The counterexample of every criterion runs in tests/test_contract.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lmech.config import validate
from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments.base import Result
from lmech.experiments.depth_transfer import network


def test_quick_entry_holds_and_the_parametrizations_agree_at_the_base_depth(quick_run):
    _, measurement, verdicts, figures = quick_run("depth-transfer")
    assert figures and {v.key: v.status for v in verdicts} == {"completep_shift": "holds", "alpha0_shift": "holds"}
    curves = measurement.series["curves"]
    base = curves[curves.depth == 2]
    # at L = L_base every depth rule is the identity: α = 0 and α = 1 train the same network
    np.testing.assert_array_equal(base[base.parametrization == "mup"]["loss"].to_numpy(),
                                  base[base.parametrization == "completep"]["loss"].to_numpy())
    assert (measurement.series["optima"]["edge"] == "").all()


def _smoke(**changes):
    return validate(dataclasses.replace(get("depth-transfer").smoke_config(), **changes))


@pytest.mark.parametrize("parametrization,alpha", [("mup", 0.0), ("depth-mup", 0.5), ("completep", 1.0)])
def test_the_branch_multiplier_is_depth_ratio_to_minus_alpha(parametrization, alpha):
    config = _smoke(base_depth=2)
    net = network(config, parametrization, 16)
    assert net.branch_multiplier == pytest.approx((16 / 2) ** -alpha)
    # CompleteP Table 1: a hidden weight's Adam rate × (L/L_base)^(α−1) (μP, α = 0: no depth rule at all)
    table = net.param_table
    expected = (16 / 2) ** (alpha - 1) if alpha else 1.0
    assert table["blocks.3.fc1.weight"].lr("adam") / table["input.weight"].lr("adam") == pytest.approx(expected)


def _synthetic(optimum: dict[tuple[str, int], float], grid=range(-10, -2)) -> pd.DataFrame:
    rows = [{"parametrization": par, "depth": depth, "log2_lr": float(x), "lr": 2.0**x,
             "loss": float(np.exp(0.2 * (x - vertex) ** 2)), "final_loss": np.nan, "diverged_at": -1,
             "first_loss": 2.3}
            for (par, depth), vertex in optimum.items() for x in grid]
    return pd.DataFrame(rows)


def _judge(curves: pd.DataFrame, depths=(2, 4, 16)):
    exp = get("depth-transfer")
    config = _smoke(depths=depths)
    return {v.key: v for v in exp.verdict(config, exp.predict(config), Result(series={"curves": curves}, summary={}))}


def test_verdicts_on_exact_parabolas():
    curves = _synthetic({("mup", 2): -6.0, ("mup", 4): -6.6, ("mup", 16): -7.7,
                         ("completep", 2): -6.0, ("completep", 4): -5.5, ("completep", 16): -6.3})
    v = _judge(curves)
    assert v["completep_shift"].measured == pytest.approx(0.8) and v["completep_shift"].status == "holds"
    assert v["alpha0_shift"].measured == pytest.approx(1.7) and v["alpha0_shift"].status == "holds"
    moved = curves.assign(parametrization=curves["parametrization"].map({"mup": "completep", "completep": "mup"}))
    v = _judge(moved)
    assert v["completep_shift"].status == "violated" and v["alpha0_shift"].status == "violated"


def test_verdicts_are_inconclusive_at_the_grid_edge_or_a_narrow_span():
    v = _judge(_synthetic({("mup", 2): -6.0, ("mup", 16): -11.0, ("completep", 2): -6.0, ("completep", 16): -6.0}),
               depths=(2, 16))
    assert v["alpha0_shift"].status == "inconclusive" and "smallest" in v["alpha0_shift"].inconclusive
    assert v["completep_shift"].status == "holds"
    v = _judge(_synthetic({("mup", 2): -6.0, ("mup", 8): -7.0, ("completep", 2): -6.0, ("completep", 8): -6.0}),
               depths=(2, 8))
    assert all(x.status == "inconclusive" and "span 4×" in x.inconclusive for x in v.values())


@pytest.mark.parametrize("changes,field", [
    ({"depths": (4, 2)}, "depths"),
    ({"log2_lrs": (-9.0, -7.0, -5.0)}, "log2_lrs"),
    ({"parametrizations": ("mup", "mup")}, "parametrizations"),
    ({"batch_size": 300}, "batch_size"),
])
def test_bad_configs_are_refused_before_any_work(changes, field):
    with pytest.raises(BadInput, match=field):
        _smoke(**changes)


def test_a_vertex_clipped_to_its_fitting_window_is_inconclusive_like_an_edge_optimum():
    curves = _synthetic({("mup", 2): -6.0, ("mup", 16): -7.7, ("completep", 2): -6.0, ("completep", 16): -6.3})
    assert _judge(curves, depths=(2, 16))["completep_shift"].status == "holds"
    # CompleteP's deepest curve with two valleys (best at −5): the parabola on −7…−3 has its vertex far beyond
    # −3; clipped there, it would read as a shift of 3 (violated) although the grid brackets no such optimum
    bumpy = (curves.parametrization == "completep") & (curves.depth == 16)
    curves.loc[bumpy, "loss"] = np.exp([3.0, 2.5, 1.8, 0.6, 1.8, 0.0, 0.3, 0.5])
    v = _judge(curves, depths=(2, 16))
    assert v["completep_shift"].status == "inconclusive" and "outside the points" in v["completep_shift"].inconclusive
    assert v["alpha0_shift"].status == "holds"
