"""The central flow (Cohen et al. 2025, arXiv 2410.24206) against independent references.

* the semidefinite complementarity problem: every returned X is checked against the conditions
  themselves (X ⪰ 0, A + B[X] ⪰ 0, ⟨X, A + B[X]⟩ = 0), against closed forms (k = 1; B a multiple of
  the identity: X = Π_PSD(-A/b)), and against random feasible points (X minimizes the convex
  objective whose optimality conditions the SDCP is);
* the one-eigenvalue closed form σ² = 2⟨-∇L, ∇S⟩/‖∇S‖², with ∇S from finite differences of the
  dense top eigenvalue;
* small η: the central flow is gradient flow (RK45, :mod:`lmech.theory.gradient_flow`);
* at the edge: the flow holds the sharpness at 2/η while gradient flow from the same point exceeds it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmech.errors import BadInput
from lmech.instruments.curvature import HessianOperator
from lmech.instruments.hessian_gradient import sharpness_gradient
from lmech.models.mlp import mlp
from lmech.theory.central_flow import (
    central_flow,
    central_flow_velocity,
    sdcp_residuals,
    sigma_squared,
    solve_sdcp,
    svec_basis,
)
from lmech.theory.gradient_flow import gradient_flow


def half_mse(output, target):
    return 0.5 * (output - target).pow(2).sum(dim=1).mean()




def random_instance(rng, k, rank_b=None):
    """A: random symmetric; B: a random PSD operator on Sym(k) as a (k, k, k, k) tensor."""
    basis = svec_basis(k)
    m = len(basis)
    G = rng.normal(size=(m, rank_b or m))
    Bm = G @ G.T + (0.0 if rank_b else 1e-3 * np.eye(m))
    B = np.einsum("pij,pq,qkl->ijkl", basis, Bm, basis)
    A = rng.normal(size=(k, k))
    return 0.5 * (A + A.T) * rng.choice([0.1, 1.0, 10.0]), B, Bm, basis


def objective(A, B, X):
    return 0.5 * np.sum(X * np.einsum("ijkl,kl->ij", B, X)) + np.sum(A * X)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_sdcp_solution_satisfies_its_conditions_on_random_instances(k):
    rng = np.random.default_rng(k)
    barrier = 0
    for _ in range(40):
        A, B, _, _ = random_instance(rng, k)
        sol = solve_sdcp(A, B)
        res = sdcp_residuals(A, B, sol.X)
        assert res["psd"] <= 1e-12 and res["dual"] <= 1e-8 and res["complementarity"] <= 1e-8, res
        barrier += sol.newton_steps > 0
        # optimality of the convex reformulation: no random PSD matrix does better
        f = objective(A, B, sol.X)
        for _ in range(20):
            Z = rng.normal(size=(k, k))
            Y = Z @ Z.T * rng.uniform(0, 2) * np.linalg.norm(sol.X) / max(np.linalg.norm(Z @ Z.T), 1e-12)
            assert objective(A, B, Y) >= f - 1e-9 * max(1.0, abs(f))
            assert objective(A, B, sol.X + 1e-3 * Y) >= f - 1e-9 * max(1.0, abs(f))
    if k > 1:
        assert barrier > 0, "the instances never exercised the rank-deficient (barrier) path"


@pytest.mark.parametrize("k", [2, 3])
def test_sdcp_with_identity_operator_is_the_psd_projection(k):
    rng = np.random.default_rng(10 + k)
    basis = svec_basis(k)
    for _ in range(10):
        b = rng.uniform(0.1, 10)
        B = b * np.einsum("pij,pkl->ijkl", basis, basis)  # B[X] = b X on symmetric matrices
        A = rng.normal(size=(k, k))
        A = 0.5 * (A + A.T)
        w, v = np.linalg.eigh(-A / b)
        expected = (v * np.clip(w, 0, None)) @ v.T
        assert np.allclose(solve_sdcp(A, B).X, expected, atol=1e-9 * max(1.0, np.abs(expected).max()))


def test_sdcp_closed_forms_and_trivial_cases():
    assert solve_sdcp(np.array([[-2.0]]), np.full((1, 1, 1, 1), 4.0)).X[0, 0] == pytest.approx(0.5)
    assert solve_sdcp(np.array([[3.0]]), np.full((1, 1, 1, 1), 4.0)).X[0, 0] == 0.0
    A = np.diag([1.0, 2.0, 0.0])
    assert np.all(solve_sdcp(A, random_instance(np.random.default_rng(0), 3)[1]).X == 0)
    assert solve_sdcp(np.zeros((0, 0)), np.zeros((0, 0, 0, 0))).X.shape == (0, 0)


def test_sdcp_bad_input():
    with pytest.raises(BadInput, match="A"):
        solve_sdcp(np.array([[1.0, 2.0], [0.0, 1.0]]), np.zeros((2, 2, 2, 2)))
    with pytest.raises(BadInput, match="B"):
        solve_sdcp(np.eye(2), np.zeros((2, 2, 2)))
    with pytest.raises(BadInput, match="B"):
        solve_sdcp(np.array([[-1.0]]), np.zeros((1, 1, 1, 1)))


def test_one_critical_eigenvalue_reduces_to_sigma_squared():
    rng = np.random.default_rng(3)
    for _ in range(20):
        g, s = torch.from_numpy(rng.normal(size=50)), torch.from_numpy(rng.normal(size=50))
        lr, dt = rng.uniform(0.01, 1), rng.uniform(0.05, 1)
        # S exactly at 2/η: A = dt·η⟨∇S, ∇L⟩, B = ½·dt·η‖∇S‖²
        A = np.array([[dt * lr * float(s @ g)]])
        B = np.full((1, 1, 1, 1), 0.5 * dt * lr * float(s @ s))
        assert solve_sdcp(A, B).X[0, 0] == pytest.approx(sigma_squared(g, s), rel=1e-12, abs=1e-15)
        assert sigma_squared(g, s) == pytest.approx(max(0.0, -2 * float(g @ s) / float(s @ s)))
    with pytest.raises(BadInput):
        sigma_squared(torch.ones(3), torch.zeros(3))


def tiny_problem(seed=0, width=6):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 2, generator=gen, dtype=torch.float64)
    y = torch.sin(2 * x[:, :1]) * x[:, 1:]
    model = mlp(2, width, 1, "tanh", weight_std=1.0, bias_std=0.0, parametrization="sp", seed=seed,
                dtype=torch.float64)
    return model, x, y


def dense_top(model, x, y):
    H = HessianOperator(model, half_mse, x, y).to_dense()
    evals, evecs = torch.linalg.eigh(H)
    return float(evals[-1]), evecs[:, -1]


def test_velocity_at_the_edge_matches_the_closed_form():
    """At a point with S exactly 2/η, the flow's velocity is -η[∇L + ½σ²∇S] with σ² from the closed
    form (∇S from :func:`sharpness_gradient`, itself checked against finite differences of the dense
    top eigenvalue in tests/instruments/test_hessian_gradient.py), for every substep length dt."""
    model, x, y = tiny_problem(seed=1)
    S, u = dense_top(model, x, y)
    lr = 2.0 / S
    grad_s = sharpness_gradient(model, half_mse, x, y, u)
    for dt in (0.1, 0.25, 1.0):
        v = central_flow_velocity(model, half_mse, x, y, lr, u[:, None], dt=dt)
        s2 = sigma_squared(v.gradient, grad_s)
        assert v.sigma[0] == pytest.approx(s2, rel=1e-8, abs=1e-14)
        expected = -lr * (v.gradient + 0.5 * s2 * grad_s)
        assert torch.allclose(v.velocity, expected, rtol=0, atol=1e-8 * float(expected.abs().max()))
        if s2 > 0:  # the velocity is tangent to {S = 2/η}
            assert abs(float(grad_s @ v.velocity)) <= 1e-8 * float(grad_s.norm() * v.velocity.norm())
    # no critical direction: gradient flow
    v0 = central_flow_velocity(model, half_mse, x, y, lr, None)
    assert torch.equal(v0.velocity, -lr * v0.gradient) and v0.sdcp is None


def test_small_learning_rate_central_flow_is_gradient_flow():
    model, x, y = tiny_problem(seed=2)
    S, _ = dense_top(model, x, y)
    lr = 0.1 / S  # 2/η is 20x the sharpness: no critical eigenvalue
    steps = 30
    gf = gradient_flow(model, half_mse, x, y, lr * np.arange(steps + 1), keep_params=True, rtol=1e-10, atol=1e-12)
    travelled = np.linalg.norm(gf.params[-1] - gf.params[0])
    for method, order in (("euler", 1), ("heun", 2)):
        errors = []
        for substeps in (2, 4):
            cf = central_flow(model, half_mse, x, y, lr, steps, substeps=substeps, method=method, top_k=1)
            assert np.all(cf.critical == 0) and np.all(cf.sigma == 0)
            assert np.array_equal(cf.predicted_losses, cf.losses)
            errors.append(np.max(np.linalg.norm(cf.params - gf.params, axis=1)))
        # the substeps converge to gradient flow at their order: halving dt divides the error by 2^order
        assert errors[1] / errors[0] == pytest.approx(0.5**order, rel=0.15), (method, errors)
        if method == "heun":
            assert errors[1] <= 1e-4 * travelled
            assert np.allclose(cf.losses, gf.losses, rtol=1e-4)


def test_central_flow_holds_the_sharpness_at_the_edge():
    model, x, y = tiny_problem(seed=0, width=8)
    S, _ = dense_top(model, x, y)
    lr = 2.0 / (1.15 * S)  # 2/η just above the initial sharpness: progressive sharpening reaches it
    steps = 150
    cf = central_flow(model, half_mse, x, y, lr, steps, top_k=2)
    gf = central_flow(model, half_mse, x, y, lr, steps, top_k=1, flow="gradient")
    gf_peak = gf.eigenvalues[:, 0].max() * lr / 2
    assert gf_peak > 1.05, "the problem must sharpen past 2/η under gradient flow for this test to mean anything"
    onset = int(np.argmax(cf.critical > 0))
    assert cf.critical.max() > 0 and onset < steps - 20
    after = cf.eigenvalues[onset + 5:, 0] * lr / 2
    assert np.all(np.abs(after - 1.0) <= 5e-3)
    assert np.all(cf.sigma >= 0) and cf.sigma[onset + 5:, 0].max() > 0
    assert np.allclose(cf.predicted_losses, cf.losses + cf.sigma.sum(axis=1) / lr)
    assert cf.max_sdcp_residual <= 1e-8


def test_eigenpairs_are_refreshed_every_eig_every_substeps():
    """eig_every counts substeps across units of time (a refresh every 3 steps at one substep per step)."""
    model, x, y = tiny_problem(seed=3)
    S, _ = dense_top(model, x, y)
    sol = central_flow(model, half_mse, x, y, 1.0 / S, 8, substeps=1, eig_every=3, top_k=1, flow="gradient")
    lam = sol.eigenvalues[:, 0]
    assert np.all(lam[0:3] == lam[0]) and np.all(lam[3:6] == lam[3]) and np.all(lam[6:9] == lam[6])
    assert lam[0] != lam[3] != lam[6]
    assert lam[0] == pytest.approx(S, rel=1e-3)


def test_central_flow_bad_input():
    model, x, y = tiny_problem()
    with pytest.raises(BadInput, match="lr"):
        central_flow(model, half_mse, x, y, -1.0, 10)
    with pytest.raises(BadInput, match="top_k"):
        central_flow(model, half_mse, x, y, 0.1, 10, top_k=9)
    with pytest.raises(BadInput, match="critical_fraction"):
        central_flow(model, half_mse, x, y, 0.1, 10, critical_fraction=1.5)
    with pytest.raises(BadInput, match="steps"):
        central_flow(model, half_mse, x, y, 0.1, 0)


def block_along(model, x, y, U, direction, s):
    """UᵀH(w + s·direction)U from the dense Hessian; the model's parameters are restored."""
    params = list(model.parameters())
    w0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(w0 + s * direction, params)
    block = (U.T @ HessianOperator(model, half_mse, x, y).to_dense() @ U).numpy()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(w0, params)
    return block


def test_two_critical_directions_against_the_dense_hessian():
    """Several critical directions, against finite differences of the dense Hessian: along the flow's velocity v
    the critical block moves as d/ds UᵀH(w + sv)U (central differences of dense Hessians, U held), and the
    linearized block after a substep, UᵀHU + dt·d/ds UᵀHU, satisfies the SDCP's conditions with the flow's X:
    2/η − block ⪰ 0 and ⟨X, 2/η − block⟩ = 0 (X ⪰ 0 by construction). Exercised with Σ of rank 2 (both
    directions oscillate) and of rank 1 with two critical eigenvalues (the barrier path of the solver)."""
    for seed, c, rank in ((5, 0.8, 2), (1, 0.97, 1)):
        model, x, y = tiny_problem(seed=seed, width=8)
        H = HessianOperator(model, half_mse, x, y).to_dense()
        evals, evecs = torch.linalg.eigh(H)
        U = evecs[:, -2:].flip(1)
        lr = 2.0 / (c * float(evals[-2]))  # both top eigenvalues above 2/η: two critical directions
        dt = 0.25
        v = central_flow_velocity(model, half_mse, x, y, lr, U, dt=dt)
        sigma = np.linalg.eigvalsh(v.X)
        assert np.sum(sigma > 1e-6 * sigma.max()) == rank, sigma
        h = 1e-4 / float(v.velocity.norm())
        moved = (block_along(model, x, y, U, v.velocity, h) - block_along(model, x, y, U, v.velocity, -h)) / (2 * h)
        gap = 2.0 / lr * np.eye(2) - ((U.T @ H @ U).numpy() + dt * moved)
        gap = 0.5 * (gap + gap.T)
        scale = float(evals[-1])
        # central differences: relative error ~h² ≈ 1e-8 of the block's motion; 1e-6 of the sharpness
        assert np.linalg.eigvalsh(gap).min() >= -1e-6 * scale, gap
        assert abs(float(np.sum(v.X * gap))) <= 1e-6 * scale * np.linalg.norm(v.X), gap
        if rank == 2:  # both directions sit at the edge after the substep
            assert np.abs(gap).max() <= 1e-6 * scale, gap
