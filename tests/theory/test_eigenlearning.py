"""Eigenlearning (lmech.theory.eigenlearning) against independent references.

References: the conservation law itself, actual kernel ridge regression on sampled data (a circulant
kernel on the circle, where the eigensystem is exact; Gaussian design, where the theory is
asymptotically exact), closed-form Funk–Hecke eigenvalues of exp(x·y) on S², the addition theorem,
and the exact eigenvalues of the circle against the empirical (Nyström) eigensystem of a sample.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from lmech.errors import BadInput
from lmech.theory.eigenlearning import (
    circle_eigenvalues,
    effective_regularization,
    eigencoefficients,
    eigenlearning,
    empirical_eigensystem,
    gegenbauer,
    gegenbauer_sequence,
    learnabilities,
    learning_curve,
    sphere_eigenvalues,
    sphere_learnabilities,
    sphere_multiplicity,
)
from lmech.theory.kernels import dot_product_kernels

POWER_LAW = np.arange(1, 20001, dtype=np.float64) ** -1.5


@pytest.mark.parametrize("n, ridge", [(50, 0.0), (50, 1e-3), (50, 10.0), (19999, 0.0), (3.5, 0.0)])
def test_conservation_law_holds_to_1e_10(n, ridge):
    # Σ_i L_i + δ/κ = n (Simon et al. 2023): the equation κ solves, checked to 1e-10 absolute,
    # including the hard ridgeless case n = modes - 1 (κ tiny) and a non-integer n.
    kappa = effective_regularization(POWER_LAW, n, ridge)
    total = float(np.sum(learnabilities(POWER_LAW, kappa))) + ridge / kappa
    assert kappa > 0 and abs(total - n) <= 1e-10 * max(1.0, n / 100)


def test_multiplicities_equal_repeated_eigenvalues():
    lam, mult = np.array([1.0, 0.3, 0.05]), np.array([1, 3, 5])
    power = np.array([0.5, 0.2, 0.1])
    a = eigenlearning(lam, power, 4, 1e-2, 0.1, multiplicities=mult)
    expanded_power = np.repeat(power / mult, mult)
    b = eigenlearning(np.repeat(lam, mult), expanded_power, 4, 1e-2, 0.1)
    assert a.kappa == pytest.approx(b.kappa, rel=1e-13)
    assert a.test_mse == pytest.approx(b.test_mse, rel=1e-13)


def test_predicted_test_mse_matches_ridge_regression_with_gaussian_design():
    # Gaussian design x ~ N(0, diag(λ)) with the linear kernel x·x': eigenlearning is asymptotically
    # exact there. 300 trials give a standard error ~1%; measured agreement 0.5-2%: tolerance 5%.
    rng = np.random.default_rng(0)
    p, n, ridge, noise = 300, 40, 1e-2, 0.05
    lam = np.arange(1, p + 1) ** -1.5
    v = np.arange(1, p + 1) ** -0.8
    v /= np.linalg.norm(v)
    pred = eigenlearning(lam, v**2, n, ridge, noise)
    test, train = [], []
    for _ in range(300):
        z = rng.normal(size=(n, p))
        x = z * np.sqrt(lam)
        y = z @ v + math.sqrt(noise) * rng.normal(size=n)
        alpha = np.linalg.solve(x @ x.T + ridge * np.eye(n), y)
        v_hat = np.sqrt(lam) * (x.T @ alpha)  # the fit's coefficients on the orthonormal z_i
        test.append(np.sum((v - v_hat) ** 2) + noise)
        train.append(np.mean((y - x @ x.T @ alpha) ** 2))
    assert np.mean(test) == pytest.approx(pred.test_mse, rel=0.05)
    assert np.mean(train) == pytest.approx(pred.train_mse, rel=0.05)


def _circulant(lam: np.ndarray) -> np.ndarray:
    """Kernel matrix on M grid points of the circle whose circle eigenvalues are `lam`."""
    m = lam.size
    row = np.real(np.fft.ifft(lam)) * m
    return row[(np.arange(m)[:, None] - np.arange(m)[None, :]) % m], row


@pytest.mark.parametrize("n", [64, 128])
def test_predicted_test_mse_matches_kernel_regression_on_the_circle(n):
    # Uniform measure on M = 512 grid points of the circle, circulant kernel with λ_k = (1+|k|)^-3 and
    # a target with coefficients (1+|k|)^-1: the eigensystem is exact (Fourier modes). n samples
    # without replacement, ridge 1e-3, label noise 0.05, test MSE over the whole grid + noise.
    # 150 trials: standard error of the mean ~2% (per-trial CV ~ 25%); eigenlearning's own finite-n
    # error measured < 1% here (0.994 ratio at n = 64 and 128): tolerance 10% ≈ 5 standard errors.
    m, ridge, noise, trials = 512, 1e-3, 0.05, 150
    freq = np.minimum(np.arange(m), m - np.arange(m))
    lam = (1.0 + freq) ** -3.0
    kernel, row = _circulant(lam)
    np.testing.assert_allclose(circle_eigenvalues(row), lam, rtol=0, atol=1e-13)
    theta = 2 * np.pi * np.arange(m) / m
    f = sum((1.0 + k) ** -1.0 * np.cos(k * theta + k) for k in range(m // 2))
    power = np.abs(np.fft.fft(f) / m) ** 2
    pred = eigenlearning(lam, power, n, ridge, noise)
    rng = np.random.default_rng(1)
    mse = []
    for _ in range(trials):
        idx = rng.choice(m, size=n, replace=False)
        y = f[idx] + math.sqrt(noise) * rng.normal(size=n)
        f_hat = kernel[:, idx] @ np.linalg.solve(kernel[np.ix_(idx, idx)] + ridge * np.eye(n), y)
        mse.append(np.mean((f - f_hat) ** 2) + noise)
    assert np.mean(mse) == pytest.approx(pred.test_mse, rel=0.10)


def test_learning_curve_decreases_and_matches_pointwise_predictions():
    curve = learning_curve(POWER_LAW, POWER_LAW, [10, 100, 1000], ridge=1e-4, noise_var=0.0)
    assert np.all(np.diff(curve["test_mse"]) < 0)
    assert curve["test_mse"][1] == eigenlearning(POWER_LAW, POWER_LAW, 100, 1e-4).test_mse


# ------------------------------------------------------------------------------------ sphere

def test_sphere_eigenvalues_of_exponential_kernel_match_bessel_closed_form():
    # On S² (d = 3): e^{t} = Σ_ℓ (2ℓ+1) i_ℓ(1) P_ℓ(t) (modified spherical Bessel functions, the
    # Rayleigh-type expansion), so λ_ℓ = i_ℓ(1) with N(3, ℓ) = 2ℓ+1. The quadrature is exact for this
    # entire function; λ_ℓ ≪ 1 comes from cancelling O(k(1)) terms, so round-off is ~1e-15 absolute:
    # tolerance 1e-12 relative or 1e-14 absolute.
    lam, mult = sphere_eigenvalues(np.exp, 3, 12, points=64)
    np.testing.assert_allclose(mult, 2 * np.arange(13) + 1)
    np.testing.assert_allclose(lam, special.spherical_in(np.arange(13), 1.0), rtol=1e-12, atol=1e-14)


def test_sphere_multiplicities_match_harmonic_counts():
    # N(d, ℓ) = C(ℓ+d-1, d-1) - C(ℓ+d-3, d-1) (homogeneous polynomials minus |x|²·lower ones).
    for d in (2, 3, 5, 10):
        for ell in range(0, 8):
            ref = special.comb(ell + d - 1, d - 1, exact=True) - (
                special.comb(ell + d - 3, d - 1, exact=True) if ell >= 2 else 0)
            assert sphere_multiplicity(d, ell) == pytest.approx(ref, rel=1e-14)


@pytest.mark.parametrize("d", [2, 5])
def test_funk_hecke_eigenvalues_reconstruct_the_mlp_kernel(d):
    # Addition theorem: k(t) = Σ_ℓ λ_ℓ N(d,ℓ) P_ℓ(t). The erf NNGP (analytic in t) at depth 2, on
    # cosines of random pairs of points of S^{d-1}; degrees up to 40 leave a tail < 1e-10 (its
    # coefficients decay geometrically: measured). Tolerance 1e-9 relative to k(1).
    def profile(t):
        return dot_product_kernels(t, 2, "erf", 1.5, 0.1)[0].numpy()

    lam, mult = sphere_eigenvalues(profile, d, 40, points=256)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 50, d))
    t = np.sum(x * y, 1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    series = sum(lam[ell] * mult[ell] * gegenbauer(ell, d, t) for ell in range(41))
    np.testing.assert_allclose(series, profile(t), rtol=0, atol=1e-9 * profile(np.ones(1))[0])


def test_gegenbauer_polynomials_are_orthogonal_on_the_sphere():
    # ∫ P_ℓ P_m (1-t²)^{(d-3)/2} dt ∝ δ_ℓm, with norm |S^{d-1}|/(|S^{d-2}| N(d, ℓ)): checked through
    # sphere_eigenvalues of k = P_3 itself, whose only eigenvalue is λ_3 = 1/N(d, 3).
    d = 6
    lam, mult = sphere_eigenvalues(lambda t: gegenbauer(3, d, t), d, 6, points=32)
    expected = np.zeros(7)
    expected[3] = 1 / mult[3]
    np.testing.assert_allclose(lam, expected, atol=1e-14)


# ------------------------------------------------------------------------------ empirical vs exact

def test_empirical_eigensystem_of_a_sample_matches_the_exact_circle_spectrum():
    # Continuum circle, kernel k(θ-θ') = ReLU NTK (depth 2) of unit-variance inputs: exact eigenvalues
    # from the DFT of the kernel on 8192 grid points (a Riemann sum of the Fourier integral; the
    # profile has a kink at θ = 0 only, so its error is O(M^-2) ≈ 1e-8). Empirical: M = 1000 uniform
    # samples. Nyström eigenvalue errors are O(λ/√M) ≈ 3%: tolerance 10% on the 7 largest.
    grid = 8192
    angles = 2 * np.pi * np.arange(grid) / grid
    exact = np.sort(circle_eigenvalues(dot_product_kernels(np.cos(angles), 2, "relu", 1.0, 0.0)[1].numpy()))[::-1]
    rng = np.random.default_rng(3)
    theta = rng.uniform(0, 2 * np.pi, size=1000)
    k = dot_product_kernels(np.cos(theta[:, None] - theta[None, :]), 2, "relu", 1.0, 0.0)[1].numpy()
    lam, vec = empirical_eigensystem(k)
    np.testing.assert_allclose(lam[:7], exact[:7], rtol=0.10)
    # eigenfunctions are normalized in the sample's mean square; the top one (constant) has |v0| = 1.
    np.testing.assert_allclose(np.mean(vec[:, :5] ** 2, 0), 1.0, rtol=1e-12)
    assert abs(eigencoefficients(vec[:, :1], np.ones(1000))[0]) == pytest.approx(1.0, abs=0.02)


# --------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("call, name", [
    (lambda: effective_regularization([1.0, 0.5], 2, 0.0), "n"),
    (lambda: effective_regularization([1.0, -0.5], 1, 0.1), "eigenvalues"),
    (lambda: effective_regularization([1.0, 0.5], 1, -0.1), "ridge"),
    (lambda: effective_regularization([1.0, 0.5], 0, 0.1), "n"),
    (lambda: eigenlearning([1.0, 0.5], [1.0], 1, 0.1), "target_power"),
    (lambda: eigenlearning([1.0, 0.5], [1.0, 0.1], 1, 0.1, noise_var=-1), "noise_var"),
    (lambda: sphere_eigenvalues(np.exp, 1, 3), "d"),
    (lambda: sphere_eigenvalues(np.exp, 3, 10, points=5), "points"),
    (lambda: empirical_eigensystem(np.ones((3, 4))), "kernel_matrix"),
])
def test_bad_input_is_rejected_with_its_name(call, name):
    with pytest.raises(BadInput) as err:
        call()
    assert err.value.name == name


# ------------------------------------------------------------------------------ measured learnabilities

@pytest.mark.parametrize("d", [2, 3, 5, 12])
def test_gegenbauer_sequence_matches_scipy(d):
    # The three-term recurrence against scipy's Gegenbauer/Chebyshev evaluation, normalized to P_ℓ(1) = 1.
    t = np.random.default_rng(d).uniform(-1, 1, size=200)
    seq = gegenbauer_sequence(30, d, t)
    assert len(seq) == 31
    for ell in (0, 1, 2, 7, 30):
        np.testing.assert_allclose(seq[ell], gegenbauer(ell, d, t), rtol=0, atol=1e-12)


def _sphere_sample(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_measured_learnabilities_obey_the_sample_conservation_law():
    # A kernel with finitely many degrees, k(t) = Σ_{ℓ≤8} 2^-ℓ N_ℓ P_ℓ(t) on S², has eigenvalues exactly 2^-ℓ; then
    # Σ_ℓ N_ℓ L̂_ℓ = tr(A K) = n − δ tr(A) exactly (module docstring), for any sample and ridge.
    d, n, ridge, top = 3, 30, 1e-2, 8
    lam = 2.0 ** -np.arange(top + 1)
    mult = np.array([sphere_multiplicity(d, ell) for ell in range(top + 1)])
    x = _sphere_sample(n, d, 0)
    cos = np.clip(x @ x.T, -1, 1)
    k = sum(lam[ell] * mult[ell] * gegenbauer(ell, d, cos) for ell in range(top + 1))
    a = np.linalg.inv(k + ridge * np.eye(n))
    learn = sphere_learnabilities(a, cos, lam, d, top)
    assert np.all((learn > 0) & (learn < 1))
    assert float(np.sum(mult * learn)) + ridge * np.trace(a) == pytest.approx(n, rel=1e-10)


def test_measured_learnability_equals_the_regression_of_random_harmonics():
    # Independent reference: regress the zonal harmonic Z_u = √N P_ℓ(x·u) of a random pole u (a random unit vector
    # of the degree-ℓ eigenspace), measure ⟨f̂[Z_u], Z_u⟩ by Monte Carlo over 20000 test points, average over 300
    # poles. E_u of it is the basis average λ_ℓ tr(A P_ℓ(C)). ReLU NTK on S², n = 12, ridge 1e-3. Tolerance:
    # 4 standard errors of the average over poles (the test-point error is below 1% of it).
    d, n, ridge = 3, 12, 1e-3
    x, xt = _sphere_sample(n, d, 1), _sphere_sample(20000, d, 2)
    poles = _sphere_sample(300, d, 3)

    def profile(t):
        return dot_product_kernels(t, 2, "relu", 1.4, 0.1)[1].numpy()

    lam, mult = sphere_eigenvalues(profile, d, 60, points=512)
    cos = np.clip(x @ x.T, -1, 1)
    a = np.linalg.inv(profile(cos) + ridge * np.eye(n))
    k_test = profile(np.clip(xt @ x.T, -1, 1))
    exact = sphere_learnabilities(a, cos, lam, d, 3)
    for ell in (1, 2, 3):
        z_train = math.sqrt(mult[ell]) * gegenbauer(ell, d, np.clip(x @ poles.T, -1, 1))
        z_test = math.sqrt(mult[ell]) * gegenbauer(ell, d, np.clip(xt @ poles.T, -1, 1))
        fitted = k_test @ (a @ z_train)
        per_pole = np.mean(fitted * z_test, axis=0)  # ⟨f̂[Z_u], Z_u⟩, ‖Z_u‖ = 1
        sem = per_pole.std() / math.sqrt(len(per_pole))
        assert abs(per_pole.mean() - exact[ell]) < 4 * sem + 0.01 * exact[ell], (ell, per_pole.mean(), exact[ell])
