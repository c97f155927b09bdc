"""scaling-frontier's Chinchilla verdicts: the fitter with E held (against an exact Chinchilla surface, a closed
form), the clock-tilt counterexample's exact effect on a noise-free surface, the phase precondition, and the
law-book run's judged α and β (shared with the contract test through ``quick_run``; margins in the law's
module docstring)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments import scaling_frontier as F
from lmech.experiments.base import Result
from lmech.laws.scaling import chinchilla_grid, fit_scaling

NAME = "scaling-frontier"


@pytest.fixture(autouse=True)
def one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _surface(alpha=1.5, beta=0.5, A=0.6, B=0.6, E=0.0, groups=4, noise=0.0, seed=0):
    """Group curves of L = E + A/N^α + B/t^β on the law's (N, t) points, each group with its own ±noise."""
    rng = np.random.default_rng(seed)
    sizes, steps = (8, 11, 16, 23, 32, 45, 64), np.unique(np.round(np.geomspace(100, 8000, 40)).astype(int))
    n, t = (v.ravel() for v in np.meshgrid(sizes, steps, indexing="ij"))
    rows = [pd.DataFrame({"group": g, "model_size": n, "step": t,
                          "loss": (E + A * n**-alpha + B * t**-beta) * np.exp(noise * rng.standard_normal(n.size))})
            for g in range(groups)]
    return pd.concat(rows, ignore_index=True)


def test_held_E_stays_and_the_exponents_are_exact():
    """On a noise-free Chinchilla surface with E = 0.01 held at its value, the fit returns α and β to 1e-4 and
    never moves E (its gradient and Hessian row are zeroed), in the bootstrap replicates too."""
    df = _surface(E=0.01)
    fit = fit_scaling(df.model_size, df.step, df.loss, bootstrap=4, groups=df.group, fixed_E=0.01,
                      starts=chinchilla_grid()[::50])
    assert fit.params["alpha"] == pytest.approx(1.5, abs=1e-4) and fit.params["beta"] == pytest.approx(0.5, abs=1e-4)
    assert fit.params["E"] == pytest.approx(0.01, rel=1e-14) and np.all(fit.samples()["E"] == fit.params["E"])
    with pytest.raises(BadInput, match="fixed_E"):
        fit_scaling(df.model_size, df.step, df.loss, fixed_E=0.0)


def test_law_fit_covers_the_truth_and_the_tilt_moves_it_exactly():
    """The law's fit (E held at ≈ 0) on four groups with 2% log-noise: the true α, β inside its intervals; the
    counterexample's clocks N^1.5, t^1.25 turn them into α/1.5 and β/1.25 (the surface is then exactly
    A/N'^(α/1.5) + B/t'^(β/1.25)), outside."""
    cfg = F.ScalingFrontierConfig(bootstrap=20, groups=4)
    groups = _surface(noise=0.02)
    measurement = Result(series={"groups": groups, "chinchilla": F._chinchilla_table(F.chinchilla_fit(cfg, groups))})
    report = F.chinchilla_report(cfg, measurement)
    assert report["alpha"]["position"] <= 1 and report["beta"]["position"] <= 1
    tilted = F.chinchilla_report(cfg, F._tilted_clocks(cfg, None, measurement))
    assert tilted["alpha"]["fitted"] == pytest.approx(report["alpha"]["fitted"] / F.TILT_N, rel=0.02)
    assert tilted["beta"]["fitted"] == pytest.approx(report["beta"]["fitted"] / F.TILT_T, rel=0.02)
    assert tilted["alpha"]["position"] > 1 and tilted["beta"]["position"] > 1


@pytest.mark.parametrize("a,b,phrase", [(4.6, 3.0, "phase II"), (3.0, 2.0, "boundary")])
def test_outside_phase_Ia_the_fit_is_not_judged(a, b, phrase):
    cfg = dataclasses.replace(F.ScalingFrontierConfig(), target_exponent=a, spectrum_exponent=b)
    assert phrase in F.chinchilla_precondition(cfg, Result(series={}))


def test_lawbook_judges_the_chinchilla_exponents(quick_run):
    """α and β judged against a − 1 and (a − 1)/b by their position in the bootstrap intervals, E held at 0."""
    prediction, measurement, verdicts, _ = quick_run(NAME, "phase Ia")
    cfg = dict(get(NAME).lawbook())["phase Ia"]
    by_key = {v.key: v for v in verdicts}
    for key, predicted in (("chinchilla_alpha", cfg.a - 1), ("chinchilla_beta", (cfg.a - 1) / cfg.b)):
        v = by_key[key]
        assert v.predicted == pytest.approx(predicted) and v.status == "holds"
        low, high = v.details["interval"]
        assert low <= predicted <= high and low < v.measured < high
    table = measurement.series["chinchilla"].set_index("param")
    assert table.loc["E", "fitted"] < 1e-9 * measurement.series["groups"].loss.min()
