"""Batch sharpness against dense minibatch Hessians (Andreyev & Beneventano 2024, arXiv 2412.20553, Def. 1).

Reference: for each batch B, the dense Hessian H_B of the batch loss (``torch.autograd.functional.hessian``
on the flat parameter vector, float64) and its gradient g_B give g_B·H_B g_B / |g_B|^2 exactly; the
expectation over batches is the average over every b-subset of the data (enumerated). The instrument
must agree with both to float64 round-off, and its Monte Carlo estimate must agree with the exact
expectation within its own reported standard error.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from lmech.errors import BadInput
from lmech.instruments import BatchSharpnessProbe, Monitor, batch_sharpness
from lmech.instruments.batch_sharpness import batch_rayleigh_quotient


def small_problem(n: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return model, (lambda out, t: 0.5 * (out - t).pow(2).sum(1).mean()), x, y


def dense_quotient(model, loss_fn, x, y) -> float:
    """g·Hg/|g|^2 from the dense Hessian of the batch loss on the flat parameter vector."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta):
        parts, i = {}, 0
        for name, shape in zip(names, shapes):
            k = math.prod(shape)
            parts[name] = theta[i:i + k].reshape(shape)
            i += k
        return loss_fn(functional_call(model, parts, (x,)), y)

    h = torch.autograd.functional.hessian(loss, flat)
    g = torch.autograd.functional.jacobian(loss, flat)
    return float(g @ h @ g / (g @ g))


def test_one_batch_matches_the_dense_hessian():
    model, loss_fn, x, y = small_problem()
    for idx in ([0, 3], [1, 2, 5], list(range(8))):
        ghg, gg = batch_rayleigh_quotient(model, loss_fn, x[idx], y[idx])
        assert ghg / gg == pytest.approx(dense_quotient(model, loss_fn, x[idx], y[idx]), rel=1e-10)


def test_every_batch_enumerated_gives_the_exact_expectation():
    model, loss_fn, x, y = small_problem(n=7)
    subsets = torch.tensor(list(itertools.combinations(range(7), 3)))  # all 35 batches of 3
    exact = np.mean([dense_quotient(model, loss_fn, x[s], y[s]) for s in subsets.tolist()])
    got = batch_sharpness(model, loss_fn, x, y, batches=subsets)
    assert got.num_batches == 35 and got.batch_size == 3 and got.hvps == 35
    assert got.value == pytest.approx(exact, rel=1e-10)


def test_full_batch_is_the_full_quotient_with_no_sampling_error():
    model, loss_fn, x, y = small_problem()
    got = batch_sharpness(model, loss_fn, x, y, batch_size=8, num_batches=10)
    assert got.exact and got.std_error == 0.0 and got.num_batches == 1
    assert got.value == pytest.approx(dense_quotient(model, loss_fn, x, y), rel=1e-10)


def test_monte_carlo_estimate_and_its_standard_error():
    model, loss_fn, x, y = small_problem(n=7)
    subsets = list(itertools.combinations(range(7), 2))
    exact = np.mean([dense_quotient(model, loss_fn, x[list(s)], y[list(s)]) for s in subsets])
    gen = torch.Generator().manual_seed(1)
    # 30 independent estimates of 20 batches each: their scatter is what the reported standard error claims
    ests = [batch_sharpness(model, loss_fn, x, y, 2, num_batches=20, generator=gen) for _ in range(30)]
    values = np.array([e.value for e in ests])
    se = np.mean([e.std_error for e in ests])
    # the mean of 30 estimates: within 4 of its standard errors (se/sqrt(30)) of the exact expectation
    assert abs(values.mean() - exact) < 4 * se / math.sqrt(30)
    # the scatter of the estimates matches the reported error: the sample sd of 30 draws is within ~26% of
    # sigma with 95% probability (chi-square with 29 degrees of freedom); 40% leaves room for the se's own noise
    assert values.std(ddof=1) == pytest.approx(se, rel=0.4)


def test_rel_tol_draws_batches_until_the_error_is_small():
    model, loss_fn, x, y = small_problem(n=8)
    gen = torch.Generator().manual_seed(0)
    got = batch_sharpness(model, loss_fn, x, y, 2, num_batches=5, rel_tol=0.05, max_batches=400, generator=gen)
    assert got.num_batches > 5
    assert got.std_error <= 0.05 * abs(got.value) or got.num_batches == 400


def test_probe_in_a_monitor_reports_threshold_and_ratio_without_perturbing_training():
    def train(with_monitor: bool):
        model, loss_fn, x, y = small_problem(n=8)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        monitor = Monitor(model, loss_fn, (x, y), probes=[BatchSharpnessProbe(2, num_batches=6)], every=2)
        gen = torch.Generator().manual_seed(3)
        for step in range(5):
            if with_monitor:
                monitor.step(step, optimizer=opt)
            idx = torch.randperm(8, generator=gen)[:2]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        return model, monitor.frame()

    watched, frame = train(True)
    plain, _ = train(False)
    for a, b in zip(watched.parameters(), plain.parameters()):
        assert torch.equal(a, b)
    assert list(frame["step"]) == [0, 2, 4]
    assert (frame["batch_sharpness_threshold"] == 2 / 0.05).all()
    assert np.allclose(frame["batch_sharpness_ratio"], frame["batch_sharpness"] * 0.05 / 2)
    assert (frame["batch_sharpness_se"] > 0).all() and (frame["batch_sharpness_batches"] == 6).all()


def test_no_threshold_for_momentum_or_adam():
    model, *_ = small_problem()
    assert BatchSharpnessProbe.threshold(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), None) is None
    assert BatchSharpnessProbe.threshold(torch.optim.Adam(model.parameters(), lr=0.1), None) is None
    assert BatchSharpnessProbe.threshold(None, 0.5) == 4.0


@pytest.mark.parametrize("kwargs,name", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 9}, "batch_size"), ({"batch_size": None}, "batch_size"),
    ({"batch_size": 2, "num_batches": 0}, "num_batches"), ({"batch_size": 2, "rel_tol": 1.5}, "rel_tol"),
    ({"batches": torch.tensor([[0, 8]])}, "batches"), ({"batches": torch.zeros(2, 2)}, "batches"),
])
def test_bad_input_is_named(kwargs, name):
    model, loss_fn, x, y = small_problem()
    with pytest.raises(BadInput) as err:
        batch_sharpness(model, loss_fn, x, y, **kwargs)
    assert err.value.args and name in str(err.value)
