"""Gradients of Hessian quadratic forms (third derivatives) against finite differences of dense Hessians.

The reference differentiates :math:`u_i^\\top H(\\theta) u_j` numerically: dense Hessians (one
Hessian-vector product per column) at :math:`\\theta \\pm \\epsilon e` along random directions
:math:`e`, central differences, compared with :math:`\\langle \\nabla(u_i^\\top H u_j), e\\rangle`.
Every smooth activation the law book may use is checked, so a wrong double-backward formula (as
PyTorch's fused LayerNorm has) cannot go unnoticed.
"""

from __future__ import annotations

import pytest
import torch

from lmech.errors import BadInput
from lmech.instruments._params import flatten
from lmech.instruments.curvature import HessianOperator
from lmech.instruments.hessian_gradient import hessian_form_gradients, sharpness_gradient
from lmech.instruments.sharpness import SharpnessTracker
from lmech.models.mlp import mlp


def half_mse(output, target):
    return 0.5 * (output - target).pow(2).sum(dim=1).mean()


def problem(activation="tanh", depth=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = mlp(3, 6, depth, activation, weight_std=1.0, bias_std=0.3, parametrization="sp", out_features=2,
                seed=seed, dtype=torch.float64)
    x = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    return model, x, y, gen


def forms_at(model, x, y, theta, U):
    """Uᵀ H(θ) U from Hessian-vector products (one per column of U)."""
    torch.nn.utils.vector_to_parameters(theta, model.parameters())
    return U.T @ (HessianOperator(model, half_mse, x, y) @ U)


def top_eigenvalue_at(model, x, y, theta):
    torch.nn.utils.vector_to_parameters(theta, model.parameters())
    return float(torch.linalg.eigvalsh(HessianOperator(model, half_mse, x, y).to_dense())[-1])


@pytest.mark.parametrize("activation", ["tanh", "gelu", "silu", "softplus", "sigmoid", "erf", "sin"])
def test_form_gradients_match_finite_differences(activation):
    model, x, y, gen = problem(activation)
    theta = flatten([p.detach() for p in model.parameters()]).clone()
    P = theta.numel()
    U = torch.linalg.qr(torch.randn(P, 3, generator=gen, dtype=torch.float64))[0]
    result = hessian_form_gradients(model, half_mse, x, y, U)
    eps = 1e-4  # central differences: truncation O(eps²) ≈ 1e-8 relative, round-off ≈ 1e-16/eps² · |H|
    for _ in range(2):
        e = torch.randn(P, generator=gen, dtype=torch.float64)
        fd = (forms_at(model, x, y, theta + eps * e, U) - forms_at(model, x, y, theta - eps * e, U)) / (2 * eps)
        analytic = result.form_gradients @ e
        assert torch.allclose(analytic, fd, rtol=0, atol=1e-6 * float(fd.abs().max()))
    torch.nn.utils.vector_to_parameters(theta, model.parameters())
    # the other outputs against their own references
    HU = HessianOperator(model, half_mse, x, y) @ U
    assert torch.allclose(result.hvps, HU, atol=1e-12)
    assert torch.allclose(result.forms, U.T @ HU, atol=1e-12)
    assert torch.allclose(result.form_gradients, result.form_gradients.transpose(0, 1))
    with torch.enable_grad():
        grad = torch.autograd.grad(half_mse(model(x), y), list(model.parameters()))
    assert torch.allclose(result.gradient, flatten(grad), atol=1e-14)


def test_quadratic_loss_has_zero_third_derivative():
    # a linear model with a square loss: H is constant, its gradient is zero
    model = mlp(3, 4, 0, "identity", weight_std=1.0, bias_std=0.3, parametrization="sp", out_features=2,
                dtype=torch.float64)
    _, x, y, gen = problem()
    U = torch.randn(sum(p.numel() for p in model.parameters()), 2, generator=gen, dtype=torch.float64)
    result = hessian_form_gradients(model, half_mse, x, y, U)
    assert float(result.form_gradients.abs().max()) == 0.0


def test_sharpness_gradient_is_the_derivative_of_the_top_eigenvalue():
    # S(θ) = λ1(H(θ)) from dense eigendecompositions, differentiated numerically
    model, x, y, gen = problem("tanh", depth=1)
    theta = flatten([p.detach() for p in model.parameters()]).clone()
    H = HessianOperator(model, half_mse, x, y).to_dense()
    evals, evecs = torch.linalg.eigh(H)
    assert float(evals[-1] - evals[-2]) > 1e-3 * float(evals[-1])  # a simple top eigenvalue
    grad_s = sharpness_gradient(model, half_mse, x, y, 3.0 * evecs[:, -1])  # normalized inside
    eps = 1e-5
    for _ in range(2):
        e = torch.randn(theta.numel(), generator=gen, dtype=torch.float64)
        fd = (top_eigenvalue_at(model, x, y, theta + eps * e) - top_eigenvalue_at(model, x, y, theta - eps * e)) / (2 * eps)
        assert float(grad_s @ e) == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_tracker_vectors_are_the_ritz_vectors():
    model, x, y, _ = problem()
    tracker = SharpnessTracker(2, tol=1e-8, max_iter=200)
    assert tracker.vectors is None
    record = tracker.measure(model, half_mse, x, y, lr=0.1)
    H = HessianOperator(model, half_mse, x, y).to_dense()
    U = tracker.vectors
    assert U.shape == (H.shape[0], 2)
    for i in range(2):
        assert torch.allclose(H @ U[:, i], record[f"lambda_{i + 1}"] * U[:, i], atol=1e-6 * record["lambda_1"])


def test_bad_input():
    model, x, y, _ = problem()
    P = sum(p.numel() for p in model.parameters())
    with pytest.raises(BadInput, match="vectors"):
        hessian_form_gradients(model, half_mse, x, y, torch.ones(P + 1))
    with pytest.raises(BadInput, match="vectors"):
        hessian_form_gradients(model, half_mse, x, y, torch.full((P, 1), float("nan")))
    with pytest.raises(BadInput, match="eigenvector"):
        sharpness_gradient(model, half_mse, x, y, torch.ones(P, 2))
    with pytest.raises(BadInput, match="targets"):
        hessian_form_gradients(model, half_mse, x, y[:3], torch.ones(P))
