"""Linearized (kernel) dynamics against independent references.

The reference is a linear model in parameter space, f(x) = f0(x) + φ(x)·(θ - θ0) with random
features φ (p > n), trained by explicitly iterating GD on the loss (s/2)(‖f(X)-Y‖² + δ‖θ-θ0‖²), by
scipy's ODE solver for gradient flow, and by the normal equations at t = ∞; the ensemble statistics
are checked against the exact affine map of the explicit GD iteration and a Monte-Carlo over GP draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from lmech.errors import BadInput
from lmech.theory.linearized import ensemble_predictions, linearized_predictions, max_stable_lr

N, M, P = 8, 5, 20


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    phi_train, phi_test = rng.normal(size=(N, P)), rng.normal(size=(M, P))
    y = rng.normal(size=(N, 2))
    f0_train, f0_test = rng.normal(size=(N, 2)), rng.normal(size=(M, 2))
    return dict(phi=phi_train, phi_x=phi_test, y=y, f0=f0_train, f0x=f0_test,
                k=phi_train @ phi_train.T, kx=phi_test @ phi_train.T)


def _gd_in_parameter_space(pb, lr, steps, ridge, reduction):
    """Iterate θ ← θ - η ∇L explicitly; return f(X), f(x) after each step count in `steps`."""
    s = 1 / N if reduction == "mean" else 1.0
    w = np.zeros((P, 2))  # θ - θ0
    out, k = {}, 0
    for target in sorted(steps):
        while k < target:
            resid = pb["f0"] + pb["phi"] @ w - pb["y"]
            w = w - lr * s * (pb["phi"].T @ resid + ridge * w)
            k += 1
        out[target] = (pb["f0"] + pb["phi"] @ w, pb["f0x"] + pb["phi_x"] @ w)
    return out


@pytest.mark.parametrize("reduction, ridge", [("mean", 0.0), ("sum", 0.0), ("mean", 0.7)])
def test_gd_closed_form_matches_explicit_parameter_iteration(problem, reduction, ridge):
    lr = 0.5 * max_stable_lr(problem["k"], reduction, ridge)
    steps = [0, 1, 7, 60]
    ref = _gd_in_parameter_space(problem, lr, steps, ridge, reduction)
    got = linearized_predictions(problem["k"], problem["y"], steps, lr, k_test_train=problem["kx"],
                                 f0_train=problem["f0"], f0_test=problem["f0x"], ridge=ridge, dynamics="gd",
                                 reduction=reduction)
    for i, k in enumerate(steps):
        # Both are float64 evaluations of the same linear map (60 products vs one eigendecomposition):
        # agreement to 1e-10 relative to the O(1) targets.
        np.testing.assert_allclose(got.train[i].numpy(), ref[k][0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(got.test[i].numpy(), ref[k][1], rtol=0, atol=1e-10)


def test_gradient_flow_matches_ode_integration(problem):
    # dθ/dt = -η s (φᵀ(f(X) - Y) + δ θ), integrated by scipy's DOP853 at rtol 1e-11: 1e-8 agreement.
    lr, ridge, s = 0.3, 0.2, 1 / N
    times = [0.0, 0.5, 3.0, 20.0]

    def rhs(_t, w_flat):
        w = w_flat.reshape(P, 2)
        resid = problem["f0"] + problem["phi"] @ w - problem["y"]
        return (-lr * s * (problem["phi"].T @ resid + ridge * w)).ravel()

    sol = integrate.solve_ivp(rhs, (0, times[-1]), np.zeros(2 * P), method="DOP853", t_eval=times,
                              rtol=1e-11, atol=1e-13)
    got = linearized_predictions(problem["k"], problem["y"], times, lr, k_test_train=problem["kx"],
                                 f0_train=problem["f0"], f0_test=problem["f0x"], ridge=ridge)
    for i in range(len(times)):
        w = sol.y[:, i].reshape(P, 2)
        np.testing.assert_allclose(got.train[i].numpy(), problem["f0"] + problem["phi"] @ w, atol=1e-8)
        np.testing.assert_allclose(got.test[i].numpy(), problem["f0x"] + problem["phi_x"] @ w, atol=1e-8)


@pytest.mark.parametrize("dynamics", ["flow", "gd"])
def test_infinite_time_is_ridge_regression(problem, dynamics):
    # Parameter-space ridge solution: w* = (φᵀφ + δ I)⁻¹ φᵀ (Y - f0(X)), a P×P solve (independent of
    # the n×n kernel eigendecomposition); agreement to 1e-10.
    ridge = 0.3
    w = np.linalg.solve(problem["phi"].T @ problem["phi"] + ridge * np.eye(P),
                        problem["phi"].T @ (problem["y"] - problem["f0"]))
    lr = 0.9 * max_stable_lr(problem["k"], "mean", ridge)
    got = linearized_predictions(problem["k"], problem["y"], math.inf, lr, k_test_train=problem["kx"],
                                 f0_train=problem["f0"], f0_test=problem["f0x"], ridge=ridge, dynamics=dynamics)
    np.testing.assert_allclose(got.train.numpy(), problem["f0"] + problem["phi"] @ w, atol=1e-10)
    np.testing.assert_allclose(got.test.numpy(), problem["f0x"] + problem["phi_x"] @ w, atol=1e-10)


def test_ridgeless_limit_of_a_rank_deficient_kernel_is_the_minimum_norm_interpolant():
    # Features of rank 3 < n = 6: K is singular. Gradient flow from θ0 converges to the minimum-norm
    # least-squares solution w = pinv(φ) r; its predictions come from numpy's pinv (SVD), 1e-9.
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(6, 3)) @ rng.normal(size=(3, 10))
    phi_x = rng.normal(size=(4, 10))
    y = rng.normal(size=6)
    w = np.linalg.pinv(phi) @ y
    got = linearized_predictions(phi @ phi.T, y, math.inf, 0.1, k_test_train=phi_x @ phi.T)
    np.testing.assert_allclose(got.train.numpy(), phi @ w, atol=1e-9)
    np.testing.assert_allclose(got.test.numpy(), phi_x @ w, atol=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_max_stable_lr_separates_convergence_from_divergence(problem, reduction):
    # Iterating the parameter-space GD: just below η_max the residual shrinks, just above it explodes.
    lr_max = max_stable_lr(problem["k"], reduction)
    below = _gd_in_parameter_space(problem, 0.98 * lr_max, [3000], 0.0, reduction)[3000][0]
    above = _gd_in_parameter_space(problem, 1.02 * lr_max, [3000], 0.0, reduction)[3000][0]
    start = np.abs(problem["f0"] - problem["y"]).max()
    assert np.abs(below - problem["y"]).max() < start
    assert np.abs(above - problem["y"]).max() > 1e6 * start


def _joint_kernels(seed=2, n=N, m=M):
    """A PSD NNGP and NTK on n train + m test points (random-feature Gram matrices)."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n + m, 30)), rng.normal(size=(n + m, 30))
    nngp, ntk = a @ a.T / 30, b @ b.T / 30 + a @ a.T / 30
    return nngp, ntk, rng.normal(size=n)


def test_ensemble_matches_exact_affine_map_of_explicit_gd():
    # Explicit GD on the joint (train, test) outputs: f_X ← f_X - ηs Θ(X,X)(f_X - Y),
    # f_x ← f_x - ηs Θ(x,X)(f_X - Y). The final outputs are an affine map M f0 + c of f0 ~ N(0, K):
    # c = run from f0 = 0 and M = run on the identity's columns minus c. Then mean = c, cov = M K Mᵀ.
    nngp, ntk, y = _joint_kernels()
    lr, steps, s = 0.8 * max_stable_lr(ntk[:N, :N]), 40, 1 / N

    def run(f0):  # f0: (N+M, k) columns
        f = f0.copy()
        for _ in range(steps):
            resid = f[:N] - y[:, None]
            f = f - lr * s * ntk[:, :N] @ resid
        return f

    c = run(np.zeros((N + M, 1)))[:, 0]
    mmap = run(np.eye(N + M)) - c[:, None]
    cov = mmap @ nngp @ mmap.T
    got = ensemble_predictions(nngp[:N, :N], ntk[:N, :N], y, steps, lr, nngp_test_train=nngp[N:, :N],
                               ntk_test_train=ntk[N:, :N], nngp_test=nngp[N:, N:], dynamics="gd")
    np.testing.assert_allclose(got.mean_train.numpy(), c[:N], atol=1e-10)
    np.testing.assert_allclose(got.mean_test.numpy(), c[N:], atol=1e-10)
    np.testing.assert_allclose(got.cov_train.numpy(), cov[:N, :N], atol=1e-10)
    np.testing.assert_allclose(got.cov_test.numpy(), cov[N:, N:], atol=1e-10)


def test_ensemble_matches_monte_carlo_over_gp_draws():
    # 20000 draws f0 ~ N(0, NNGP) trained by gradient flow with the closed form of a single network
    # (linearized_predictions). Mean: 5 standard errors sqrt(Σ_ii/R); covariance: 5 standard errors of
    # a sample covariance, sqrt((Σ_ii Σ_jj + Σ_ij²)/R) (Gaussian fourth moments).
    nngp, ntk, y = _joint_kernels(seed=3)
    rng = np.random.default_rng(4)
    draws = 20000
    f0 = np.linalg.cholesky(nngp + 1e-12 * np.eye(N + M)) @ rng.normal(size=(N + M, draws))
    t, lr = 5.0, 1.0
    single = linearized_predictions(ntk[:N, :N], np.broadcast_to(y[:, None], (N, draws)), t, lr,
                                    k_test_train=ntk[N:, :N], f0_train=f0[:N], f0_test=f0[N:])
    outs = np.concatenate([single.train.numpy(), single.test.numpy()])
    got = ensemble_predictions(nngp[:N, :N], ntk[:N, :N], y, t, lr, nngp_test_train=nngp[N:, :N],
                               ntk_test_train=ntk[N:, :N], nngp_test=nngp[N:, N:])
    mean = np.concatenate([got.mean_train.numpy(), got.mean_test.numpy()])
    cov_diag_blocks = [got.cov_train.numpy(), got.cov_test.numpy()]
    var = np.concatenate([np.diag(b) for b in cov_diag_blocks])
    assert np.all(np.abs(outs.mean(1) - mean) <= 5 * np.sqrt(var / draws))
    for block, rows in zip(cov_diag_blocks, (slice(0, N), slice(N, N + M))):
        sample = np.cov(outs[rows])
        se = np.sqrt((np.outer(np.diag(block), np.diag(block)) + block**2) / draws)
        assert np.all(np.abs(sample - block) <= 5 * se)


def test_scalar_and_vector_targets_and_time_shapes(problem):
    k, y = problem["k"], problem["y"][:, 0]
    one = linearized_predictions(k, y, 3.0, 0.1)
    many = linearized_predictions(k, y, [1.0, 3.0], 0.1)
    assert one.train.shape == (N,) and many.train.shape == (2, N) and one.test is None
    torch.testing.assert_close(many.train[1], one.train, rtol=0, atol=1e-14)
    t0 = linearized_predictions(k, y, 0.0, 0.1, f0_train=problem["f0"][:, 0])
    torch.testing.assert_close(t0.train, torch.as_tensor(problem["f0"][:, 0]), rtol=0, atol=1e-14)


@pytest.mark.parametrize("kwargs, name", [
    (dict(k_train=np.ones((3, 4))), "k_train"),
    (dict(k_train=np.array([[1.0, 0.5], [0.0, 1.0]])), "k_train"),
    (dict(y_train=np.ones(3)), "y_train"),
    (dict(lr=-1.0), "lr"),
    (dict(t=-1.0), "t"),
    (dict(t=1.5, dynamics="gd"), "t"),
    (dict(dynamics="adam"), "dynamics"),
    (dict(reduction="max"), "reduction"),
    (dict(ridge=-0.1), "ridge"),
    (dict(k_test_train=np.ones((3, 3))), "k_test_train"),
])
def test_bad_input_is_rejected_with_its_name(kwargs, name):
    args = dict(k_train=np.eye(2), y_train=np.ones(2), t=1.0, lr=0.1)
    args.update(kwargs)
    with pytest.raises(BadInput) as err:
        linearized_predictions(**args)
    assert err.value.name == name
