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
from lmech.instruments.noise import (
    exact_hessian_noise_scale,
    exact_noise_scale,
    gradient_noise_scale,
    hessian_noise_scale,
    noise_scale_from_norms,
    noise_scale_from_quadratic_forms,
)


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


# -- B_noise = tr(H Sigma) / (G^T H G) ---------------------------------------------------------------
def _dense_reference(model, loss_fn, x, y):
    """tr(H Sigma)/(G^T H G) and tr(Sigma)/|G|^2 from torch.autograd.functional: the dense Hessian of the
    loss on all the data and per-example gradients, one jacobian per example (independent of the instrument)."""
    from torch.autograd.functional import hessian, jacobian

    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def loss_at(v, xx, yy):
        values = [t.reshape(s) for t, s in zip(torch.split(v, sizes), shapes)]
        return loss_fn(torch.func.functional_call(model, dict(zip(names, values)), (xx,)), yy)

    v0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    h = hessian(lambda v: loss_at(v, x, y), v0)
    g = torch.stack([jacobian(lambda v, i=i: loss_at(v, x[i : i + 1], y[i : i + 1]), v0) for i in range(len(x))])
    mean = g.mean(0)
    sigma = (g - mean).T @ (g - mean) / len(x)
    return float(torch.trace(h @ sigma) / (mean @ h @ mean)), float(torch.trace(sigma) / (mean @ mean))


@pytest.mark.parametrize("width", [3, 40])  # P = 17 <= N = 30 (dense H) and P = 242 > N (H on the gradients)
def test_exact_hessian_noise_scale_matches_dense_reference(width):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 2)).double()
    b_noise, b_simple = _dense_reference(model, nn.MSELoss(), x, y)
    got = exact_hessian_noise_scale(model, nn.MSELoss(), x, y)
    # both exact: float64 round-off only
    assert got.b_noise == pytest.approx(b_noise, rel=1e-9)
    assert got.b_simple == pytest.approx(b_simple, rel=1e-9)
    assert got.simple.b_simple == pytest.approx(exact_noise_scale(model, nn.MSELoss(), x, y).b_simple, rel=1e-12)


def test_b_noise_equals_b_simple_for_an_isotropic_hessian():
    # whitened inputs (X^T X / N = I exactly): H = I for the loss 1/2 (w.x - y)^2, so B_noise = B_simple
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(64, 4, generator=gen, dtype=torch.float64))
    x, y = q * 8.0, torch.randn(64, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    got = exact_hessian_noise_scale(model, lambda o, t: 0.5 * (o - t).square().mean(), x, y)
    assert got.b_noise == pytest.approx(got.b_simple, rel=1e-10)


def test_b_noise_matches_the_gaussian_closed_form():
    # population closed form (Isserlis) for Gaussian inputs of covariance diag(lam): B_noise = 1 + 2L tr(L^2) /
    # (d^T L^3 d); the instrument on N = 40000 samples differs by sampling error only (4th moments: ~2-3% here,
    # tolerance 8%)
    from lmech.experiments.critical_batch import gaussian_noise_scales

    lam = np.array([1.0, 0.5, 0.2, 0.1])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40_000, 4, generator=gen, dtype=torch.float64) * torch.as_tensor(np.sqrt(lam))
    teacher = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0, 1.5, 0.0]], dtype=torch.float64))  # B_noise 15.6, B_simple 8.6
    got = exact_hessian_noise_scale(model, lambda o, t: 0.5 * (o - t).square().mean(), x, (x @ teacher)[:, None])
    b_noise, b_simple = gaussian_noise_scales(lam, model.weight.detach().numpy()[0] - teacher.numpy())
    assert got.b_noise == pytest.approx(b_noise, rel=0.08)
    assert got.b_simple == pytest.approx(b_simple, rel=0.08)
    assert abs(got.b_noise - got.b_simple) > 0.2 * got.b_noise  # anisotropic: the two differ


def test_two_batch_quadratic_forms_exact_on_exact_expectations():
    # E[G_B^T H G_B] over ALL ordered batches drawn with replacement, enumerated: the estimator returns G^T H G
    # and tr(H Sigma) exactly
    model, loss_fn, x, y = regression(n=5)
    exact = exact_hessian_noise_scale(model, loss_fn, x, y)
    w = model.weight.detach().reshape(-1)
    g = 2 * (x @ w - y.reshape(-1))[:, None] * x
    h = 2 * x.T @ x / len(x)  # Hessian of the mean (w.x - y)^2

    def expected_quad(b: int) -> float:
        forms = [float(g[list(i)].mean(0) @ h @ g[list(i)].mean(0)) for i in itertools.product(range(5), repeat=b)]
        return float(np.mean(forms))

    est = noise_scale_from_quadratic_forms(expected_quad(1), expected_quad(3), 1, 3)
    assert est.g_h_g == pytest.approx(exact.g_h_g, rel=1e-10)
    assert est.trace_h_sigma == pytest.approx(exact.trace_h_sigma, rel=1e-10)
    assert est.b_noise == pytest.approx(exact.b_noise, rel=1e-10)


def test_sampled_hessian_noise_scale_unbiased_within_standard_errors():
    model, loss_fn, x, y = regression(n=40, seed=1)
    exact = exact_hessian_noise_scale(model, loss_fn, x, y)
    est = hessian_noise_scale(model, loss_fn, x, y, 2, 8, num_batches=800, generator=torch.Generator().manual_seed(0))
    # each average unbiased: within 4 standard errors (the seed is fixed: deterministic)
    assert abs(est.g_h_g - exact.g_h_g) <= 4 * est.g_h_g_se
    assert abs(est.trace_h_sigma - exact.trace_h_sigma) <= 4 * est.trace_h_sigma_se
    assert abs(est.simple.trace_sigma - exact.simple.trace_sigma) <= 4 * est.simple.trace_sigma_se


def test_hessian_noise_scale_bad_inputs():
    model, loss_fn, x, y = regression()
    with pytest.raises(BadInput, match="b_big"):
        hessian_noise_scale(model, loss_fn, x, y, 8, 4)
    with pytest.raises(BadInput, match="num_batches"):
        hessian_noise_scale(model, loss_fn, x, y, 2, 8, num_batches=0)
    with pytest.raises(BadInput, match="targets"):
        exact_hessian_noise_scale(model, loss_fn, x, y[:5])
    with pytest.raises(BadInput, match="quad_big"):
        noise_scale_from_quadratic_forms([1.0, 2.0], [1.0], 1, 2)
