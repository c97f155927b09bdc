"""edge-of-stochastic-stability: the stacked SGD runs against torch.optim.SGD, the stacked batch sharpness
against the instrument, the judging of one run, bad input, and the law-book entry's numbers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lmech.data.digits import digits
from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments.edge_of_stochastic_stability import (
    EdgeOfStochasticStabilityConfig,
    StackedSGD,
    _model,
    half_mse,
    judge_run,
)
from lmech.instruments.batch_sharpness import batch_sharpness

NAME = "edge-of-stochastic-stability"


def small_config(**kw) -> EdgeOfStochasticStabilityConfig:
    return EdgeOfStochasticStabilityConfig(n_samples=40, width=8, lrs=(0.3, 0.5), batch_sizes=(4, 7), steps=20,
                                           dtype="float64", **kw)


def test_stacked_runs_are_torch_sgd_runs():
    cfg = small_config()
    x, y = digits(cfg.n_samples)
    model = _model(cfg)
    runs = cfg.runs
    sgd = StackedSGD.start(model, [lr for lr, _ in runs], [b for _, b in runs], cfg.seed)
    for step in range(6):
        sgd.step(x, y, step)
    for r, (lr, b) in enumerate(runs):
        ref = _model(cfg)
        opt = torch.optim.SGD(ref.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + 17 + r)  # the run's own batch stream
        for _ in range(6):
            idx = torch.randperm(cfg.n_samples, generator=gen)[:b]
            opt.zero_grad()
            half_mse(ref(x[idx]), y[idx]).backward()
            opt.step()
        for p, w in zip(ref.parameters(), sgd.weights):
            torch.testing.assert_close(p.detach(), w[r].detach(), rtol=1e-12, atol=1e-12)  # float64 round-off


def test_stacked_batch_sharpness_is_the_instrument():
    cfg = small_config()
    x, y = digits(cfg.n_samples)
    model = _model(cfg)
    runs = cfg.runs
    sgd = StackedSGD.start(model, [lr for lr, _ in runs], [b for _, b in runs], cfg.seed)
    for step in range(3):
        sgd.step(x, y, step)
    gens = [torch.Generator().manual_seed(5 + i) for i in range(len(runs))]
    values, errors = sgd.batch_sharpness(x, y, [1, 2], 6, gens)
    for a, r in enumerate([1, 2]):
        est = batch_sharpness(sgd.load(model, r), half_mse, x, y, runs[r][1], num_batches=6,
                              generator=torch.Generator().manual_seed(5 + r))
        assert values[a] == pytest.approx(est.value, rel=1e-10)
        assert errors[a] == pytest.approx(est.std_error, rel=1e-8)


def _rows(ratios, lams=None):
    n = len(ratios)
    lams = [0.5] * n if lams is None else lams
    return pd.DataFrame({"step": np.arange(n) * 10, "bs_ratio": ratios, "lambda_ratio": lams})


def test_judge_run_preconditions():
    up = judge_run("r", _rows([0.5, 0.95, 1.0, 0.98, 1.02, 0.99, 1.0]), 0.9)
    assert up.sharpening == "holds" and up.unjudged is None and up.onset_step == 10
    assert up.bs_median == pytest.approx(0.995) and up.lambda_max == 0.5
    above = judge_run("r", _rows([0.95, 1.0, 1.0, 1.0, 1.0, 1.0]), 0.9)
    assert above.sharpening == "inconclusive" and above.unjudged
    rising = judge_run("r", _rows(list(np.linspace(0.3, 0.85, 12))), 0.9)
    assert rising.sharpening == "inconclusive" and "still" in rising.note and rising.unjudged
    stalled = judge_run("r", _rows([0.3, 0.6] + [0.7] * 10), 0.9)
    assert stalled.sharpening == "violated"
    late = judge_run("r", _rows([0.3, 0.5, 0.7, 0.8, 0.95, 1.0]), 0.9)
    assert late.sharpening == "holds" and "post-onset" in late.unjudged


@pytest.mark.parametrize("field,value", [("batch_sizes", (16, 600)), ("lrs", (0.5, 0.5)), ("lrs", ()),
                                         ("batch_sizes", ())])
def test_bad_config_is_refused_before_any_work(field, value):
    from lmech.config import validate

    with pytest.raises(BadInput) as err:
        validate(dataclasses.replace(EdgeOfStochasticStabilityConfig(n_samples=500), **{field: value}))
    assert field in str(err.value)


def test_quick_entry_numbers(quick_run):
    """The law-book entry: every run reaches the onset, λ_max lower at the smaller batch (reported)."""
    exp = get(NAME)
    cfg = exp.quick_config()
    _, measurement, verdicts, figures = quick_run(NAME)
    by = {v.key: v for v in verdicts}
    assert by["batch_edge_ratio"].status == "holds"
    s = measurement.summary
    small, big = min(cfg.batch_sizes), max(cfg.batch_sizes)
    assert s[f"lambda_median_b{small}"] < s[f"lambda_median_b{big}"]
    assert 0 < s["bs_relative_se_median"] < 0.1
    assert all(math.isfinite(v) for k, v in s.items() if k.startswith("onset_step"))
