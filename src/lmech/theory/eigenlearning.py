r"""The eigenlearning framework: learning curves of kernel ridge regression from the kernel's eigensystem.

Simon, Dickens, Karkada & DeWeese 2023, "The eigenlearning framework: a conservation law perspective on
kernel regression and wide neural networks" (TMLR; arXiv 2110.03922). Kernel ridge regression
:math:`\hat f(x) = K(x, X)(K(X,X) + \delta I_n)^{-1} y` on n i.i.d. samples of a distribution μ, with
noisy labels :math:`y = f(x) + \epsilon`, :math:`\mathrm{Var}\,\epsilon = \sigma^2`. The kernel's Mercer
eigensystem w.r.t. μ, :math:`K(x,x') = \sum_i \lambda_i\phi_i(x)\phi_i(x')` with orthonormal
:math:`\phi_i`, and the target's eigencoefficients :math:`f = \sum_i v_i\phi_i` give:

* the effective regularization κ > 0, the unique root of
  :math:`\sum_i \frac{\lambda_i}{\lambda_i+\kappa} + \frac{\delta}{\kappa} = n`;
* the learnability of each mode, :math:`\mathcal L_i = \frac{\lambda_i}{\lambda_i+\kappa}` (so that
  :math:`\sum_i\mathcal L_i + \delta/\kappa = n`, the conservation law);
* the overfitting coefficient :math:`\mathcal E_0 = \frac{n}{n - \sum_i\mathcal L_i^2}`;
* the test MSE (on noisy test labels) :math:`\mathcal E = \mathcal E_0\big(\sum_i(1-\mathcal L_i)^2v_i^2
  + \sigma^2\big)` and the train MSE :math:`\mathcal E_{tr} = \frac{\delta^2}{n^2\kappa^2}\,\mathcal E`.

(The paper states these as its eigenlearning equations and its train-risk estimate; we cite them by
name because their numbering differs between the arXiv versions.)

A degenerate eigenspace enters with its multiplicity :math:`N_\ell` (``multiplicities``) and its total
target power :math:`\sum_{i\in\ell}v_i^2` (``target_power``), so that infinite families such as the
spherical harmonics of one degree are summed in closed form.

Eigensystems:

* dot-product kernels :math:`K(x,x') = k(x\cdot x')` on the unit sphere :math:`S^{d-1}` with the uniform
  measure (Funk–Hecke): :math:`\lambda_\ell = \frac{\Gamma(d/2)}{\sqrt\pi\,\Gamma(\frac{d-1}{2})}
  \int_{-1}^1 k(t)\,P_\ell(t)\,(1-t^2)^{\frac{d-3}{2}}dt` with :math:`P_\ell = C_\ell^{(d-2)/2}/
  C_\ell^{(d-2)/2}(1)` the normalized Gegenbauer polynomial (Chebyshev :math:`T_\ell` for d = 2) and
  multiplicity :math:`N(d,\ell) = \frac{2\ell+d-2}{\ell+d-2}\binom{\ell+d-2}{\ell}`; the addition theorem
  gives back :math:`k(t) = \sum_\ell \lambda_\ell N(d,\ell) P_\ell(t)` (e.g. Atkinson & Han 2012,
  "Spherical Harmonics and Approximations on the Unit Sphere", Thms. 2.9 and 2.22);
* circulant kernels on M equally spaced points of the circle with the uniform measure: the DFT of the
  kernel row, :math:`\lambda_k = \frac1M\sum_j k(2\pi j/M)e^{-2\pi ijk/M}`, with Fourier eigenfunctions;
* otherwise, empirically: the eigenpairs of the kernel matrix on M samples of μ, eigenvalues / M and
  eigenvectors × √M (the Nyström estimate of the Mercer eigensystem).

Measured learnabilities. Simon et al. define the learnability of a target f by a regressor f̂ trained on
n samples as :math:`\mathcal L(f) = \langle f, \hat f\rangle/\langle f, f\rangle` and predict, for an
eigenfunction, :math:`\mathbb E\,\mathcal L(\phi_i) = \mathcal L_i`. For a dot-product kernel on the sphere
the average over an orthonormal basis of the degree-ℓ harmonics has a closed form in the training set
alone (:func:`sphere_learnabilities`): the regressor of φ is :math:`\hat f = k(\cdot, X)A\phi(X)` with
:math:`A = (K + \delta I)^{-1}`, Funk–Hecke gives :math:`\langle k(\cdot, x_j), \phi\rangle = \lambda_\ell\phi(x_j)`,
and the addition theorem :math:`\sum_m Y_{\ell m}(a)Y_{\ell m}(b) = N_\ell P_\ell(a\cdot b)` sums the basis:
:math:`\frac1{N_\ell}\sum_m\mathcal L(Y_{\ell m}) = \lambda_\ell\,\mathrm{tr}\big(A\,P_\ell(\hat X\hat X^\top)\big)`.
Summed over all degrees with multiplicity it gives the sample's conservation law
:math:`\sum_\ell N_\ell\hat{\mathcal L}_\ell + \delta\,\mathrm{tr}A = n`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from lmech.errors import BadInput

__all__ = [
    "effective_regularization",
    "learnabilities",
    "EigenlearningPrediction",
    "eigenlearning",
    "learning_curve",
    "sphere_multiplicity",
    "sphere_eigenvalues",
    "gegenbauer",
    "gegenbauer_sequence",
    "sphere_learnabilities",
    "circle_eigenvalues",
    "empirical_eigensystem",
    "eigencoefficients",
]


def _array(name: str, value, ndim: int = 1) -> np.ndarray:
    try:
        arr = np.array(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise BadInput(name, type(value).__name__, "an array of numbers") from err
    if arr.ndim != ndim or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise BadInput(name, arr.shape, f"a non-empty finite {ndim}-D array")
    return arr


def _spectrum(eigenvalues, multiplicities) -> tuple[np.ndarray, np.ndarray]:
    lam = _array("eigenvalues", eigenvalues)
    if np.any(lam < -1e-12 * max(float(np.abs(lam).max()), 1e-300)):
        raise BadInput("eigenvalues", float(lam.min()), "eigenvalues >= 0 (a PSD kernel)")
    lam = np.clip(lam, 0.0, None)  # round-off negatives of a PSD kernel's spectrum
    mult = np.ones_like(lam) if multiplicities is None else _array("multiplicities", multiplicities)
    if mult.shape != lam.shape or np.any(mult < 0):
        raise BadInput("multiplicities", mult.shape, f"non-negative counts of shape {lam.shape}")
    return lam, mult


def _check_n(n) -> float:
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or not (math.isfinite(n) and n > 0):
        raise BadInput("n", n, "a number of training samples > 0")
    return float(n)


def _check_ridge(ridge) -> float:
    if isinstance(ridge, bool) or not isinstance(ridge, numbers.Real) or not (math.isfinite(ridge) and ridge >= 0):
        raise BadInput("ridge", ridge, "a finite ridge δ >= 0")
    return float(ridge)


def effective_regularization(eigenvalues, n: float, ridge: float = 0.0, multiplicities=None) -> float:
    r"""κ > 0 solving :math:`\sum_i N_i\frac{\lambda_i}{\lambda_i+\kappa} + \frac{\delta}{\kappa} = n`.

    Simon et al. 2023 (arXiv 2110.03922), the defining equation of κ. The left side decreases strictly
    in κ from (number of positive modes, or +∞ when δ > 0) to 0, so the root is unique; it is found by
    Brent's method on log κ between a bracket proven in the code (float64, relative precision ~1e-15).
    Ridgeless (δ = 0) needs n < the number of modes with λ > 0.
    """
    lam, mult = _spectrum(eigenvalues, multiplicities)
    n, ridge = _check_n(n), _check_ridge(ridge)
    positive = lam > 0
    modes = float(mult[positive].sum())
    if ridge == 0 and modes <= n:
        raise BadInput("n", n, f"fewer samples than positive eigenmodes ({modes:g}) when ridge = 0 "
                       "(ridgeless regression with n >= modes interpolates: κ = 0)")
    lam, mult = lam[positive], mult[positive]

    def excess(log_kappa: float) -> float:
        kappa = math.exp(log_kappa)
        return float(np.sum(mult * lam / (lam + kappa))) + ridge / kappa - n

    # Upper bracket: Σ Nλ/(λ+κ) + δ/κ < (Σ Nλ + δ)/κ = n at κ_hi = (Σ Nλ + δ)/n.
    hi = math.log((float(np.sum(mult * lam)) + ridge) / n)
    lo = hi
    while excess(lo) <= 0:  # terminates: the left side tends to modes > n or to +∞ as κ → 0
        lo -= math.log(10.0)
        if lo < -700:
            raise BadInput("eigenvalues", "spectrum", "eigenvalues for which κ > 1e-300 exists")
    return math.exp(optimize.brentq(excess, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))


def learnabilities(eigenvalues, kappa: float) -> np.ndarray:
    r"""Mode learnabilities :math:`\mathcal L_i = \lambda_i/(\lambda_i+\kappa)` (Simon et al. 2023)."""
    lam = _array("eigenvalues", eigenvalues)
    if not (isinstance(kappa, numbers.Real) and kappa > 0):
        raise BadInput("kappa", kappa, "κ > 0")
    return lam / (lam + kappa)


@dataclass(frozen=True)
class EigenlearningPrediction:
    """κ, the learnability of each eigenspace, 𝓔0, and the predicted test and train MSE."""

    kappa: float
    learnabilities: np.ndarray
    overfitting_coefficient: float
    test_mse: float
    train_mse: float


def eigenlearning(eigenvalues, target_power, n: float, ridge: float = 0.0, noise_var: float = 0.0,
                  multiplicities=None) -> EigenlearningPrediction:
    r"""Eigenlearning predictions for n samples (module docstring; Simon et al. 2023, arXiv 2110.03922).

    ``eigenvalues`` λ_i and ``target_power`` :math:`v_i^2` (for an eigenspace of multiplicity
    :math:`N_i`: the sum of its squared coefficients) of the same length; ``noise_var`` σ² of the
    labels. Test MSE :math:`\mathcal E_0(\sum_i(1-\mathcal L_i)^2v_i^2 + \sigma^2)`, train MSE
    :math:`\frac{\delta^2}{n^2\kappa^2}` times it.
    """
    lam, mult = _spectrum(eigenvalues, multiplicities)
    power = _array("target_power", target_power)
    if power.shape != lam.shape or np.any(power < 0):
        raise BadInput("target_power", power.shape, f"squared coefficients >= 0 of shape {lam.shape}")
    if isinstance(noise_var, bool) or not isinstance(noise_var, numbers.Real) or not (
            math.isfinite(noise_var) and noise_var >= 0):
        raise BadInput("noise_var", noise_var, "a label-noise variance >= 0")
    n, ridge = _check_n(n), _check_ridge(ridge)
    kappa = effective_regularization(lam, n, ridge, mult)
    learn = lam / (lam + kappa)
    e0 = n / (n - float(np.sum(mult * learn**2)))
    test = e0 * (float(np.sum((1 - learn) ** 2 * power)) + float(noise_var))
    return EigenlearningPrediction(kappa, learn, e0, test, ridge**2 / (n * kappa) ** 2 * test)


def learning_curve(eigenvalues, target_power, ns, ridge: float = 0.0, noise_var: float = 0.0,
                   multiplicities=None) -> dict[str, np.ndarray]:
    """Predicted test and train MSE and κ at each sample count in ``ns`` (see :func:`eigenlearning`)."""
    ns = _array("ns", ns)
    preds = [eigenlearning(eigenvalues, target_power, float(n), ridge, noise_var, multiplicities) for n in ns]
    return {"n": ns, "kappa": np.array([p.kappa for p in preds]),
            "test_mse": np.array([p.test_mse for p in preds]),
            "train_mse": np.array([p.train_mse for p in preds])}


# ------------------------------------------------------------------------------------------- sphere

def _check_dim(d) -> int:
    if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 2:
        raise BadInput("d", d, "an ambient dimension >= 2 (the sphere S^{d-1})")
    return int(d)


def _check_degree(degree) -> int:
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral) or degree < 0:
        raise BadInput("max_degree", degree, "an integer >= 0")
    return int(degree)


def sphere_multiplicity(d: int, degree: int) -> float:
    r"""Dimension :math:`N(d,\ell) = \frac{2\ell+d-2}{\ell+d-2}\binom{\ell+d-2}{\ell}` of the degree-ℓ
    spherical harmonics on :math:`S^{d-1}` (1 for ℓ = 0), as a float (it overflows int64 quickly)."""
    d, degree = _check_dim(d), _check_degree(degree)
    if degree == 0:
        return 1.0
    return (2 * degree + d - 2) / (degree + d - 2) * float(special.comb(degree + d - 2, degree, exact=True))


def gegenbauer(degree: int, d: int, t) -> np.ndarray:
    r"""The normalized Gegenbauer polynomial :math:`P_\ell(t)` of :math:`S^{d-1}`, with :math:`P_\ell(1)=1`."""
    d, degree = _check_dim(d), _check_degree(degree)
    t = np.asarray(t, dtype=np.float64)
    if d == 2:
        return special.eval_chebyt(degree, t)
    alpha = (d - 2) / 2
    return special.eval_gegenbauer(degree, alpha, t) / special.eval_gegenbauer(degree, alpha, 1.0)


def gegenbauer_sequence(max_degree: int, d: int, t) -> list[np.ndarray]:
    r"""[P_0(t), ..., P_L(t)], the normalized Gegenbauer polynomials of :math:`S^{d-1}` (P_ℓ(1) = 1), by the
    three-term recurrence :math:`(\ell + d - 2)P_{\ell+1} = (2\ell + d - 2)\,t\,P_\ell - \ell P_{\ell-1}`
    (DLMF 18.9.1 for :math:`C^{(\alpha)}_\ell`, α = (d − 2)/2, divided by :math:`C^{(\alpha)}_\ell(1) =
    (2\alpha)_\ell/\ell!`; Chebyshev's for d = 2, Legendre's for d = 3). Stable on [−1, 1]."""
    d, max_degree = _check_dim(d), _check_degree(max_degree)
    t = np.asarray(t, dtype=np.float64)
    out = [np.ones_like(t)]
    if max_degree >= 1:
        out.append(t.copy())
    for ell in range(1, max_degree):
        out.append(((2 * ell + d - 2) * t * out[ell] - ell * out[ell - 1]) / (ell + d - 2))
    return out


def sphere_learnabilities(gram_inverse, cosines, eigenvalues, d: int, max_degree: int) -> np.ndarray:
    r"""Measured learnability of each degree ℓ ≤ ``max_degree`` of a kernel regressor trained on the sphere:
    :math:`\hat{\mathcal L}_\ell = \lambda_\ell\,\mathrm{tr}\big(A\,P_\ell(C)\big)` (module docstring), the
    average over an orthonormal basis of the degree-ℓ harmonics of ⟨φ, f̂[φ]⟩/⟨φ, φ⟩ (Simon et al. 2023's
    learnability, measured exactly: no test points).

    ``gram_inverse`` A = (K + δI)⁻¹ of the n training points, ``cosines`` C their (n, n) matrix of cosines
    x̂_i·x̂_j, ``eigenvalues`` the kernel's Funk–Hecke λ_ℓ (at least ``max_degree`` + 1 of them).
    """
    a = _array("gram_inverse", gram_inverse, ndim=2)
    c = _array("cosines", cosines, ndim=2)
    if a.shape != c.shape or a.shape[0] != a.shape[1]:
        raise BadInput("cosines", c.shape, f"a square matrix of the shape of gram_inverse {a.shape}")
    lam = _array("eigenvalues", eigenvalues)
    if lam.size <= _check_degree(max_degree):
        raise BadInput("eigenvalues", lam.size, f"at least max_degree + 1 = {max_degree + 1} eigenvalues")
    polys = gegenbauer_sequence(max_degree, d, np.clip(c, -1.0, 1.0))
    sym = (a + a.T) / 2  # tr(A P) = Σ_jk A_jk P_jk for symmetric P
    return np.array([lam[ell] * float(np.sum(sym * p)) for ell, p in enumerate(polys)])


def sphere_eigenvalues(profile: Callable, d: int, max_degree: int, *,
                       points: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    r"""Funk–Hecke eigenvalues :math:`\lambda_\ell`, ℓ = 0..max_degree, of :math:`k(x\cdot x')` on
    :math:`S^{d-1}` (uniform probability measure), and their multiplicities :math:`N(d,\ell)`.

    ``profile`` maps an array of cosines t in [-1, 1] to k(t) (vectorized; e.g. a lambda around
    :func:`lmech.theory.kernels.dot_product_kernels`). The integral is Gauss–Jacobi with weight
    :math:`(1-t^2)^{(d-3)/2}` and ``points`` nodes (exact for polynomial k of degree < 2·points − ℓ;
    algebraically convergent for kernels with endpoint singularities, like the ReLU kernels at t = 1).
    """
    d, max_degree = _check_dim(d), _check_degree(max_degree)
    if isinstance(points, bool) or not isinstance(points, numbers.Integral) or points < max_degree + 1:
        raise BadInput("points", points, f"an integer > max_degree ({max_degree})")
    a = (d - 3) / 2
    t, w = special.roots_jacobi(int(points), a, a)
    k = np.asarray(profile(t.copy()), dtype=np.float64)
    if hasattr(k, "detach"):
        k = k.detach().cpu().numpy()
    k = np.asarray(k, dtype=np.float64).reshape(t.shape)
    # |S^{d-2}| / |S^{d-1}| = Γ(d/2) / (√π Γ((d-1)/2))
    norm = math.exp(special.gammaln(d / 2) - special.gammaln((d - 1) / 2)) / math.sqrt(math.pi)
    lam = np.array([norm * np.sum(w * k * p) for p in gegenbauer_sequence(max_degree, d, t)])
    mult = np.array([sphere_multiplicity(d, ell) for ell in range(max_degree + 1)])
    return lam, mult


# ------------------------------------------------------------------------- circle and empirical

def circle_eigenvalues(kernel_row) -> np.ndarray:
    r"""Eigenvalues of a circulant kernel on M equally spaced points of the circle (uniform measure).

    ``kernel_row[j]`` = k(θ_0, θ_j) with θ_j = 2πj/M. Returns
    :math:`\lambda_k = \frac1M\sum_j k_j e^{-2\pi ijk/M}` for frequencies k = 0..M-1 (the real part; a
    symmetric row, k_j = k_{M-j}, gives real eigenvalues), eigenfunctions :math:`e^{2\pi ijk/M}`.
    """
    row = _array("kernel_row", kernel_row)
    lam = np.fft.fft(row) / row.size
    return lam.real


def empirical_eigensystem(kernel_matrix) -> tuple[np.ndarray, np.ndarray]:
    r"""Eigenvalues / M (descending) and eigenvectors × √M of a kernel matrix on M samples of μ.

    The Nyström estimate of the Mercer eigensystem: eigenfunction values at the samples with unit mean
    square, :math:`\frac1M\sum_j\phi_i(x_j)^2 = 1`.
    """
    k = _array("kernel_matrix", kernel_matrix, ndim=2)
    if k.shape[0] != k.shape[1]:
        raise BadInput("kernel_matrix", k.shape, "a square (M, M) kernel matrix")
    m = k.shape[0]
    lam, vec = np.linalg.eigh((k + k.T) / 2)
    order = np.argsort(lam)[::-1]
    return lam[order] / m, vec[:, order] * math.sqrt(m)


def eigencoefficients(eigenfunctions, target_values) -> np.ndarray:
    r"""Target eigencoefficients :math:`v_i = \frac1M\sum_j f(x_j)\phi_i(x_j)` from eigenfunction values
    (M, k) at M samples and the target's values (M,)."""
    phi = _array("eigenfunctions", eigenfunctions, ndim=2)
    f = _array("target_values", target_values)
    if f.shape[0] != phi.shape[0]:
        raise BadInput("target_values", f.shape, f"({phi.shape[0]},): one value per sample")
    return phi.T @ f / phi.shape[0]
