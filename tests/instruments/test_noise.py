"""Gradient noise scale against closed forms on linear regression.

For f(x) = w.x and the squared loss (w.x - y)^2 the per-example gradient is g_n = 2 (w.x_n - y_n) x_n,
so |G|^2 and tr(Sigma) of the empirical distribution have closed forms (McCandlish et al. 2018,
Sec. 2.2: B_simple = tr(Sigma) / |G|^2).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from lmech.errors import BadInput
from lmech.instruments.noise import exact_noise_scale, gradient_noise_scale, noise_scale_from_norms


def regression(n: int = 12, d: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=gen, dtype=torch.float64))
    return model, nn.MSELoss(), x, y


def closed_form(model, x, y):
    w = model.weight.detach().reshape(-1)
    g = 2 * (x @ w - y.reshape(-1))[:, None] * x  # per-example gradients, (n, d)
    G = g.mean(0)
    return float(G @ G), float(((g - G) ** 2).sum(1).mean())


def test_exact_noise_scale_matches_closed_form():
    model, loss_fn, x, y = regression()
    grad_sq, trace_sigma = closed_form(model, x, y)
    got = exact_noise_scale(model, loss_fn, x, y)
    # both are exact: differences are float64 round-off
    assert got.grad_sq == pytest.approx(grad_sq, rel=1e-12)
    assert got.trace_sigma == pytest.approx(trace_sigma, rel=1e-12)
    assert got.b_simple == pytest.approx(trace_sigma / grad_sq, rel=1e-12)


def test_two_batch_estimator_is_exact_on_exact_expectations():
    # E|G_B|^2 over ALL ordered batches drawn with replacement (enumerated, not the formula
    # |G|^2 + tr(Sigma)/B): fed to the estimator, it must return |G|^2 and tr(Sigma) exactly.
    model, _, x, y = regression(n=5)
    grad_sq, trace_sigma = closed_form(model, x, y)
    w = model.weight.detach().reshape(-1)
    g = 2 * (x @ w - y.reshape(-1))[:, None] * x

    def expected_sq_norm(b: int) -> float:
        norms = [float(g[list(idx)].mean(0).square().sum()) for idx in itertools.product(range(5), repeat=b)]
        return float(np.mean(norms))

    est = noise_scale_from_norms(expected_sq_norm(1), expected_sq_norm(3), 1, 3)
    assert est.grad_sq == pytest.approx(grad_sq, rel=1e-10)
    assert est.trace_sigma == pytest.approx(trace_sigma, rel=1e-10)
    assert est.b_simple == pytest.approx(trace_sigma / grad_sq, rel=1e-10)


def test_sampled_estimator_unbiased_within_standard_errors():
    model, loss_fn, x, y = regression(n=40, seed=1)
    grad_sq, trace_sigma = closed_form(model, x, y)
    est = gradient_noise_scale(model, loss_fn, x, y, 2, 8, num_batches=800, generator=torch.Generator().manual_seed(0))
    assert est.num_batches == 800
    # each average is unbiased: within 4 of its own standard errors (probability of failing for a
    # random seed ~6e-5; the seed is fixed, so the test is deterministic)
    assert abs(est.grad_sq - grad_sq) <= 4 * est.grad_sq_se
    assert abs(est.trace_sigma - trace_sigma) <= 4 * est.trace_sigma_se
    # the ratio: first-order error propagation of the two standard errors
    exact = trace_sigma / grad_sq
    rel_se = (est.grad_sq_se / grad_sq) ** 2 + (est.trace_sigma_se / trace_sigma) ** 2
    assert abs(est.b_simple - exact) <= 4 * exact * rel_se**0.5


def test_bad_inputs():
    model, loss_fn, x, y = regression()
    with pytest.raises(BadInput, match="b_big"):
        gradient_noise_scale(model, loss_fn, x, y, 8, 8)
    with pytest.raises(BadInput, match="b_small"):
        gradient_noise_scale(model, loss_fn, x, y, 0, 8)
    with pytest.raises(BadInput, match="num_batches"):
        gradient_noise_scale(model, loss_fn, x, y, 2, 8, num_batches=0)
    with pytest.raises(BadInput, match="targets"):
        gradient_noise_scale(model, loss_fn, x, y[:5], 2, 8)
    with pytest.raises(BadInput, match="model"):
        exact_noise_scale(model.requires_grad_(False), loss_fn, x, y)
    with pytest.raises(BadInput, match="sq_norm_big"):
        noise_scale_from_norms([1.0, 2.0], [1.0], 1, 2)
