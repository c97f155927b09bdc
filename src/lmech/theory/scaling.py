r"""Scaling-law exponents of linear models on power-law features, predicted before training.

Conventions (the papers differ; this is the dictionary used everywhere in lmech):

* **Features** ψ ∈ R^M, Gaussian, E ψψᵀ = Λ = diag(λ_k) with :math:`\lambda_k = k^{-b}`, k = 1 … M
  (b = ``spectrum_exponent``, M the cut-off).
* **Target** y = w*·ψ with task power :math:`\lambda_k (w^*_k)^2 = k^{-a}` (a = ``target_exponent``):
  :math:`w^*_k = k^{-(a-b)/2}`. Noise-free, so the excess loss is the loss.
* **Student** of N parameters: :math:`f(\psi) = w^\top A\psi/\sqrt N` with A ∈ R^{N×M} i.i.d. N(0, 1).
  Its features :math:`x = A\psi/\sqrt N` are Gaussian with the *projected covariance*
  :math:`K = A\Lambda A^\top/N` and :math:`\mathbb E[xy] = g = A\Lambda w^*/\sqrt N`.
* **Loss** :math:`L(w) = \tfrac12\mathbb E(f - y)^2` (Paquette et al.'s "MSE/2"). N = ∞ is the kernel
  limit: :math:`A^\top A/N \to I_M`, the student is the linear model on ψ itself.
* **Training**: full-batch GD with step η on P samples (``t`` steps), or one-pass SGD with step γ and
  batch B (fresh samples each step). Compute :math:`C = N\,t`.

Dictionary: Paquette, Paquette, Xiao & Pennington 2024 (arXiv 2405.15074) write :math:`\lambda_j = j^{-2\alpha}`,
target coefficients :math:`b_j = j^{-\beta}`, d parameters, v features, r steps, f = d·r flops, so
b = 2α, a = 2α + 2β, N = d, M = v, t = r, C = f (their W = Aᵀ/√N). Bordelon, Atanasov & Pehlevan 2024
(arXiv 2402.01092) and Lin et al. 2024 (arXiv 2406.08466) use the (a, b) of power laws in the same roles;
Maloney, Roberts & Sully 2022 (arXiv 2210.16859) have an isotropic teacher, i.e. a = b.

Exponents of the excess loss when one resource binds (the others infinite):

* **time** (GD, N = P = ∞): :math:`L(t) = \tfrac12\sum_k k^{-a}(1-\eta k^{-b})^{2t}
  \simeq \frac{\Gamma((a-1)/b)}{2b}(2\eta t)^{-(a-1)/b}`: exponent (a − 1)/b.
* **data** (ridgeless, N = t = ∞): kernel regression with κ(P) ∝ P^{−b}; the error
  :math:`\tfrac12\mathcal E_0\kappa^2\sum_k k^{-a}/(\lambda_k+\kappa)^2` has exponent **min(a − 1, 2b)**
  (Simon et al.'s eigenlearning, :mod:`lmech.theory.eigenlearning`).
* **model size** (P = t = ∞): the best student is the Λ-weighted projection of the target on the N random
  directions: with :math:`v = \Lambda^{1/2}w^*` (:math:`v_k^2 = k^{-a}`) and
  :math:`B = A\Lambda^{1/2}/\sqrt N`, :math:`L_N = \tfrac12\|(I - \Pi_B)v\|^2`, Π_B the orthogonal
  projector on the row space of B. A projector is idempotent, :math:`\|(I-\Pi)v\|^2 = v^\top(I-\Pi)v`, so
  only its *first* moment enters, and the deterministic equivalent
  :math:`\mathbb E(I - \Pi_B) \simeq \kappa(\Lambda+\kappa)^{-1}` with :math:`\sum_k\lambda_k/(\lambda_k+\kappa) = N`
  (the same κ as ridgeless regression on N samples) gives

  .. math:: L_N \simeq \tfrac12\sum_k k^{-a}\frac{\kappa}{k^{-b}+\kappa},\qquad
            \kappa \simeq \Big(\frac{\pi/b}{\sin(\pi/b)}\frac1N\Big)^b,

  i.e. :math:`\kappa\sum_{k<N}k^{b-a} + \sum_{k>N}k^{-a}`: exponent **min(a − 1, b)**. The data error
  instead measures the residual *through* Λ, :math:`(w-w^*)^\top\Lambda(w-w^*)`, a quadratic form in
  I − Π, whose deterministic equivalent carries κ² and saturates at 2b. Model size saturates at b, data
  at 2b (a summary stating both at 2b is wrong for super-easy tasks a − 1 > b; the law measures it).

Compute-optimal one-pass SGD (C = N·t). Paquette et al. decompose the expected loss as
:math:`L \asymp F_{pp}(t) + F_{ac}(N, t) + F_0(N) + K_{pp}(t)` with, in these units,
:math:`F_{pp} \propto t^{-(a-1)/b}` (the target's power-law part), :math:`F_{ac} \propto N^{-1}t^{-(1-1/b)}`
(target power spread by the random embedding over the bulk of K's spectrum; present when a − 1 > b),
:math:`F_0 \propto N^{-\min(a-1,b)}` (capacity) and :math:`K_{pp} \propto (\gamma/B)\,t^{-(2-1/b)}` (SGD
noise). Minimising over N at N·t = C (:func:`compute_optimal`):

========  ====================  =============  =================  =====================  ============
phase     condition (b > 1)     balance        N* ∝ C^·           L* ∝ C^−·              t*/N* ∝ C^·
========  ====================  =============  =================  =====================  ============
Ia        a − 1 < b             F_pp = F_0     1/(1 + b)          (a − 1)/(1 + b)        (b − 1)/(b + 1)
II        b < a − 1, a < 2b     F_pp = F_ac    (a − b)/a          (a − 1)/a              (2b − a)/a
III       a > 2b                K_pp = F_ac    1/2                1 − 1/(2b)             0
========  ====================  =============  =================  =====================  ============

In Paquette et al.'s notation these are d* ∝ f^{1/(2α+1)} (Phase Ia), f^{β/(α+β)} (Phase II) and f^{1/2}
(Phase III, their "universal" d* ∝ f^{1/2}); their phases Ib, Ic, IVa and IVb lie below the
high-dimensional line 2α < 1, i.e. b < 1, where the cut-off M always binds: outside this module's
domain (:func:`check_task` refuses b ≤ 1). On the phase boundaries (a − 1 = b, a = 2b, and for the data
exponent a − 1 = 2b) two terms share an exponent and logarithms appear: :func:`phase` flags them.

Exact finite-size predictions, given a realized projection (:func:`regression_eigensystem`): in the
eigenbasis of K (eigenvalues μ_i), the best student has coefficients θ_i and the target's remainder acts as
independent Gaussian noise of variance 2L_N (x and y are jointly Gaussian). Population GD is then
:math:`L(t) = L_N + \tfrac12\sum_i\mu_i\theta_i^2(1-\eta\mu_i)^{2t}` (:func:`population_gd`), and the
expected loss of one-pass SGD obeys a discrete Volterra equation (:func:`sgd_volterra`), exact for
Gaussian features; Paquette et al.'s continuous-time equation is its small-γ limit.

Expected over the projection, with none drawn (:func:`expected_sgd_risk`, :func:`expected_frontier`): the
deterministic equivalent of K's spectrum, m(z) = (1/N) tr(K − z)^{-1} from Silverstein's equation
:math:`z = -1/m + \tfrac1N\sum_k\lambda_k/(1+\lambda_km)` (Silverstein & Bai 1995), and of
:math:`g^\top(K-z)^{-1}g \simeq \sum_k v_k^2\lambda_km/(1+\lambda_km)` (:func:`stieltjes_de`); at z → 0,
m = 1/κ and the DE of L_N is :func:`best_in_class_loss`. The Volterra equation needs only the spectral
measures of K and g (its forcing ½Σ_i(e_iᵀg)²ρ_i^t/μ_i and kernel (γ²/B)Σ_iμ_i²ρ_i^τ), so the DE risk is
:func:`sgd_volterra` on quadrature nodes of those measures, each node a count of eigenvalues
(:func:`expected_spectrum`), as in Paquette et al. 2024. Its leading-order error is O(1/N) (the top eigenvalues'
bumps; tests against drawn projections at N = 48: within the draws' 1-4% s.e.).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from lmech.errors import BadInput

__all__ = [
    "ExpectedSpectrum",
    "Exponents",
    "Phase",
    "RegressionEigensystem",
    "best_in_class_loss",
    "check_task",
    "compute_optimal",
    "eigenvalue_fraction_de",
    "expected_best_in_class",
    "expected_frontier",
    "expected_sgd_risk",
    "expected_spectrum",
    "exponents",
    "frontier_of",
    "model_kappa",
    "phase",
    "population_gd",
    "power_law_task",
    "projected_covariance",
    "regression_eigensystem",
    "ridgeless_loss",
    "sgd_volterra",
    "stieltjes_de",
    "volterra_direct",
    "with_cutoff_tail",
]

#: how close (in a or b units) to a phase boundary a task is flagged as on it (logarithmic corrections)
BOUNDARY_MARGIN = 0.1


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise BadInput(name, value, "a finite number")
    return float(value)


def check_task(a, b) -> tuple[float, float]:
    """(a, b) as floats, or :class:`BadInput` naming the condition the theory needs.

    b > 1: the features' total variance Σ_k k^−b stays finite as M → ∞ (Paquette et al.'s 2α > 1, above the
    high-dimensional line); at b ≤ 1 the cut-off M binds at every size and no exponent is M-free.
    a > 1: the target's total power Σ_k k^−a is finite (a target of finite norm).
    """
    b = _number("spectrum_exponent", b)
    a = _number("target_exponent", a)
    if not b > 1:
        raise BadInput("spectrum_exponent", b, "b > 1: a spectrum k^-b of finite trace (Paquette et al.'s 2α > 1); "
                       "at b <= 1 the cut-off M binds at every size")
    if not a > 1:
        raise BadInput("target_exponent", a, "a > 1: a target whose power k^-a sums to a finite norm")
    return a, b


@dataclass(frozen=True)
class Phase:
    """The compute-optimal phase of a task (module docstring): ``name`` (Ia, II, III), its ``condition``,
    and ``boundary``, the reason the task is too close to a boundary for clean power laws (None if not)."""

    name: str
    condition: str
    boundary: str | None = None


def phase(a, b, margin: float = BOUNDARY_MARGIN) -> Phase:
    """The phase of (a, b) for compute-optimal one-pass SGD, flagging tasks within ``margin`` of a boundary."""
    a, b = check_task(a, b)
    if a - 1 < b:
        name, cond = "Ia", "a − 1 < b (hard task: the target is outside the RKHS)"
    elif a < 2 * b:
        name, cond = "II", "b < a − 1 and a < 2b"
    else:
        name, cond = "III", "a > 2b (SGD noise and the embedding term set the frontier)"
    near = []
    if abs(a - 1 - b) < margin:
        near.append(f"a − 1 = {a - 1:g} is within {margin:g} of b = {b:g} (Ia/II boundary)")
    if abs(a - 2 * b) < margin:
        near.append(f"a = {a:g} is within {margin:g} of 2b = {2 * b:g} (II/III boundary)")
    return Phase(name, cond, "; ".join(near) or None)


@dataclass(frozen=True)
class Exponents:
    """The predicted exponents of (a, b) (module docstring). Loss exponents are positive: L ∝ x^−exponent.

    ``time`` (GD, N = P = ∞), ``data`` (ridgeless, N = t = ∞), ``model`` (P = t = ∞), ``sgd_time`` (one-pass
    SGD at N = ∞: the GD exponent, or 2 − 1/b where SGD noise dominates, phase III), and the compute-optimal
    ``compute_loss`` (L* ∝ C^−x), ``compute_model`` (N* ∝ C^y), ``compute_steps`` (t* ∝ C^(1−y)) and
    ``compute_ratio`` (t*/N* ∝ C^(1−2y)). ``data_boundary`` flags a − 1 ≈ 2b.
    """

    a: float
    b: float
    phase: Phase
    time: float
    data: float
    model: float
    sgd_time: float
    compute_loss: float
    compute_model: float
    compute_steps: float
    compute_ratio: float
    data_boundary: str | None

    def as_dict(self) -> dict[str, float | str | None]:
        return {"a": self.a, "b": self.b, "phase": self.phase.name, "time": self.time, "data": self.data,
                "model": self.model, "sgd_time": self.sgd_time, "compute_loss": self.compute_loss,
                "compute_model": self.compute_model, "compute_steps": self.compute_steps,
                "compute_ratio": self.compute_ratio}


def compute_optimal(a, b) -> tuple[float, float]:
    """(x, y) with L*(C) ∝ C^−x and N*(C) ∝ C^y for one-pass SGD at compute C = N·t (module docstring table).

    Derivation: with r = C/N, each phase balances its increasing term in N against its decreasing one.
    Ia: (C/N)^−(a−1)/b = N^−(a−1) ⇒ N* = C^(1/(1+b)). II: (C/N)^−(a−1)/b = N^−1 (C/N)^−(1−1/b) ⇒
    N* = C^((a−b)/a), the capacity term N^−b being smaller there since (b − 1)(a − 1 − b) > 0. III:
    (C/N)^−(2−1/b) = N^−1 (C/N)^−(1−1/b) ⇒ N* = C^(1/2), capacity smaller since (b − 1)² > 0.
    """
    ph = phase(a, b)
    a, b = float(a), float(b)
    if ph.name == "Ia":
        return (a - 1) / (1 + b), 1 / (1 + b)
    if ph.name == "II":
        return (a - 1) / a, (a - b) / a
    return 1 - 1 / (2 * b), 0.5


def exponents(a, b) -> Exponents:
    """Every predicted exponent of the task (a, b) (module docstring)."""
    a, b = check_task(a, b)
    ph = phase(a, b)
    x, y = compute_optimal(a, b)
    near_data = (f"a − 1 = {a - 1:g} is within {BOUNDARY_MARGIN:g} of 2b = {2 * b:g} (the data exponent's "
                 "saturation boundary)") if abs(a - 1 - 2 * b) < BOUNDARY_MARGIN else None
    return Exponents(a=a, b=b, phase=ph, time=(a - 1) / b, data=min(a - 1, 2 * b), model=min(a - 1, b),
                     sgd_time=(2 - 1 / b) if ph.name == "III" else (a - 1) / b, compute_loss=x,
                     compute_model=y, compute_steps=1 - y, compute_ratio=1 - 2 * y, data_boundary=near_data)


# ------------------------------------------------------------------------------- the task's arrays

def power_law_task(a, b, modes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(λ, power, w*) of the first ``modes`` features: λ_k = k^−b, power λ_k w*_k² = k^−a, w*_k = k^−(a−b)/2."""
    a, b = check_task(a, b)
    if isinstance(modes, bool) or not isinstance(modes, numbers.Integral) or modes < 1:
        raise BadInput("modes", modes, "a positive number of features M")
    k = np.arange(1, int(modes) + 1, dtype=np.float64)
    return k**-b, k**-a, k ** (-(a - b) / 2)


def _positive_1d(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise BadInput(name, getattr(arr, "shape", None), "a non-empty 1-D array of finite values >= 0")
    return arr


def model_kappa(eigenvalues, n: float) -> float:
    r"""κ > 0 with :math:`\sum_k\lambda_k/(\lambda_k+\kappa) = n`: the deterministic equivalent of
    :math:`\mathbb E(I - \Pi)\simeq\kappa(\Lambda+\kappa)^{-1}` for the projector on n Gaussian directions of
    covariance Λ (the ridgeless κ of Simon et al. 2023; :func:`lmech.theory.eigenlearning.effective_regularization`)."""
    from lmech.theory.eigenlearning import effective_regularization

    return effective_regularization(_positive_1d("eigenvalues", eigenvalues), n, 0.0)


def best_in_class_loss(eigenvalues, power, n: float) -> float:
    r"""Deterministic equivalent of the model-size-limited loss :math:`\tfrac12\sum_k p_k\,\kappa/(\lambda_k+\kappa)`
    (module docstring; P = t = ∞), κ from :func:`model_kappa` with n = N random features."""
    lam = _positive_1d("eigenvalues", eigenvalues)
    p = _positive_1d("power", power)
    if p.shape != lam.shape:
        raise BadInput("power", p.shape, f"one value per eigenvalue ({lam.shape})")
    kappa = model_kappa(lam, n)
    return 0.5 * float(np.sum(p * kappa / (lam + kappa)))


def ridgeless_loss(eigenvalues, power, n: float) -> float:
    """Deterministic equivalent of the data-limited loss (N = t = ∞, ridgeless): half the eigenlearning test
    MSE :math:`\\mathcal E_0\\kappa^2\\sum_k p_k/(\\lambda_k+\\kappa)^2` of n samples (Simon et al. 2023)."""
    from lmech.theory.eigenlearning import eigenlearning

    lam = _positive_1d("eigenvalues", eigenvalues)
    return 0.5 * eigenlearning(lam, _positive_1d("power", power), n).test_mse


# ----------------------------------------------------------------- exact finite-size predictions

def projected_covariance(projection, eigenvalues, w_star) -> tuple[np.ndarray, np.ndarray, float]:
    r"""(K, g, E y²) of the student's features x = Aψ/√N: :math:`K = A\Lambda A^\top/N`,
    :math:`g = \mathbb E[xy] = A\Lambda w^*/\sqrt N`, :math:`\mathbb E y^2 = \sum_k\lambda_k w_k^{*2}`.
    ``projection`` is A (N, M); float64 throughout."""
    A = np.asarray(projection, dtype=np.float64)
    lam = _positive_1d("eigenvalues", eigenvalues)
    w = np.asarray(w_star, dtype=np.float64)
    if A.ndim != 2 or A.shape[1] != lam.size or w.shape != lam.shape:
        raise BadInput("projection", A.shape, f"a 2-D array (N, M) with M = {lam.size} columns and w* of shape (M,)")
    n = A.shape[0]
    return (A * lam) @ A.T / n, A @ (lam * w) / math.sqrt(n), float(np.sum(lam * w * w))


@dataclass(frozen=True)
class RegressionEigensystem:
    """A Gaussian linear regression y = θ·x + ε in the eigenbasis of Cov x: eigenvalues ``mu`` (ascending),
    the best coefficients ``theta`` (θ_i = v_iᵀg/μ_i), the orthonormal ``basis`` V, and ``floor`` = L_N, the
    loss ½ E ε² of the best linear predictor (ε is independent of x: jointly Gaussian, uncorrelated)."""

    mu: np.ndarray
    theta: np.ndarray
    basis: np.ndarray
    floor: float

    @property
    def power(self) -> np.ndarray:
        """μ_i θ_i²: the learnable target power in each eigendirection."""
        return self.mu * self.theta**2


def regression_eigensystem(covariance, cross, target_var: float) -> RegressionEigensystem:
    r"""Eigendecomposition of the regression with Cov x = K (``covariance``), E[xy] = g (``cross``) and
    E y² = ``target_var``: :math:`K = V\,\mathrm{diag}(\mu)V^\top`, θ = diag(μ)^−1 Vᵀg and
    :math:`L_N = \tfrac12(\mathbb E y^2 - \sum_i (v_i^\top g)^2/\mu_i)` (exact; module docstring)."""
    K = np.asarray(covariance, dtype=np.float64)
    g = np.asarray(cross, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or g.shape != (K.shape[0],):
        raise BadInput("covariance", K.shape, "a square matrix (n, n) and a cross-covariance of shape (n,)")
    mu, V = np.linalg.eigh((K + K.T) / 2)
    if mu[0] <= 0:
        raise BadInput("covariance", float(mu[0]), "a positive-definite covariance (N <= M random features)")
    proj = V.T @ g
    floor = 0.5 * (float(target_var) - float(np.sum(proj**2 / mu)))
    return RegressionEigensystem(mu=mu, theta=proj / mu, basis=V, floor=max(floor, 0.0))


def _steps(steps) -> np.ndarray:
    t = np.asarray(steps)
    if t.ndim != 1 or t.size == 0 or not np.issubdtype(t.dtype, np.integer) or np.any(t < 0) or np.any(np.diff(t) <= 0):
        raise BadInput("steps", getattr(t, "shape", None), "a 1-D increasing array of step counts >= 0")
    return t.astype(np.int64)


def population_gd(mu, power, lr: float, steps, floor=0.0) -> np.ndarray:
    r"""Exact loss of gradient descent on the population loss from w = 0:
    :math:`L(t) = L_N + \tfrac12\sum_i p_i(1-\eta\mu_i)^{2t}` with :math:`p_i = \mu_i\theta_i^2` (``power``),
    at each of ``steps``. Batched: ``mu``/``power`` of shape (..., n), ``floor`` broadcast to (...);
    returns (..., len(steps))."""
    mu, p = np.asarray(mu, dtype=np.float64), np.asarray(power, dtype=np.float64)
    t = _steps(steps)
    if mu.shape != p.shape:
        raise BadInput("power", p.shape, f"the shape of mu {mu.shape}")
    factor = (1.0 - lr * mu)[..., None] ** (2 * t)
    return np.asarray(floor, dtype=np.float64)[..., None] + 0.5 * np.sum(p[..., None] * factor, axis=-2)


def sgd_volterra(mu, power, lr: float, batch: int, steps, floor=0.0, block: float = 0.0, counts=None) -> np.ndarray:
    r"""Expected loss of one-pass SGD from w = 0 with step γ = ``lr`` and batch B, solved exactly.

    Derivation (Gaussian x with Cov x = diag(μ) in its eigenbasis, y = θ·x + ε, ε ~ N(0, 2L_N)
    independent): with e = w − θ and :math:`c_i = \mathbb E e_i^2`, the Gaussian fourth moment
    :math:`\mathbb E[xx^\top C xx^\top] = 2KCK + \mathrm{tr}(KC)K` gives
    :math:`c_i(t+1) = \rho_i c_i(t) + \tfrac{\gamma^2}{B}\mu_i\,2L(t)`,
    :math:`\rho_i = 1 - 2\gamma\mu_i + \gamma^2\mu_i^2(1 + 1/B)`, :math:`L = L_N + \tfrac12\sum_i\mu_i c_i`, i.e.
    the discrete Volterra equation (Paquette et al. 2024, arXiv 2405.15074, whose continuous-time version
    is its γ → 0 limit)

    .. math:: L(t) = F(t) + \sum_{s<t}\mathcal K(t-1-s)\,L(s),\quad
              F(t) = L_N + \tfrac12\sum_i p_i\rho_i^t,\quad \mathcal K(\tau) = \tfrac{\gamma^2}{B}\sum_i\mu_i^2\rho_i^\tau,

    with :math:`p_i = \mu_i\theta_i^2` (``power``). The kernel is a sum of exponentials, so the convolution is
    carried by one running sum per mode, :math:`S_i(t+1) = \rho_i S_i(t) + L(t)`: O(n) per step, exact.
    It is stable (L bounded) when the kernel's mass :math:`\sum_\tau\mathcal K(\tau) =
    \sum_i\gamma\mu_i/(B(2 - \gamma\mu_i(1 + 1/B))) < 1`; a step γ = c/tr K with c ≤ ½ keeps it
    ≤ c/(2B(1 − c)) ≤ ½ (each γμ_i ≤ c). Batched like :func:`population_gd`, ``lr`` a number or one per problem (shape (...));
    returns (..., len(steps)).

    ``block`` > 0 trades exactness for speed on long horizons: from step t ≥ 1/block on, it advances
    D = ⌊block·t⌋ steps at once, taking L linear over the block (a predictor–corrector on the same
    recursion: :math:`S_i \leftarrow \rho_i^D S_i + \sum_{s<D}\rho_i^{D-1-s}L(t+s)`, the sums in closed form), so
    a horizon T costs O(log T / block) steps; block = 0.005 stays within 1e-3 of the exact loss over 10⁵ steps
    (tests).

    ``counts`` (shape of ``mu``; default 1 per mode) weights each mode in the kernel only,
    :math:`\mathcal K(\tau) = \tfrac{\gamma^2}{B}\sum_j n_j\mu_j^2\rho_j^\tau`: quadrature nodes μ_j of a spectral
    density carrying n_j eigenvalues each and the power p_j of all of them (:func:`expected_sgd_risk`).
    """
    mu, p = np.asarray(mu, dtype=np.float64), np.asarray(power, dtype=np.float64)
    t_out = _steps(steps)
    if mu.shape != p.shape:
        raise BadInput("power", p.shape, f"the shape of mu {mu.shape}")
    if counts is not None:
        counts = np.asarray(counts, dtype=np.float64)
        if counts.shape != mu.shape or not np.all(np.isfinite(counts)) or np.any(counts < 0):
            raise BadInput("counts", counts.shape, f"finite multiplicities >= 0 of the shape of mu {mu.shape}")
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise BadInput("batch", batch, "a batch size >= 1")
    floor = np.broadcast_to(np.asarray(floor, dtype=np.float64), mu.shape[:-1])
    lr = np.broadcast_to(np.asarray(lr, dtype=np.float64), mu.shape[:-1])[..., None]
    if not np.all(np.isfinite(lr)) or np.any(lr <= 0):
        raise BadInput("lr", lr.ravel()[:4].tolist(), "step sizes > 0 (one, or one per problem)")
    rho = 1.0 - 2 * lr * mu + lr**2 * mu**2 * (1 + 1 / batch)
    q = lr**2 / batch * mu**2 * (1.0 if counts is None else counts)
    if not (math.isfinite(block) and 0 <= block < 1):
        raise BadInput("block", block, "a relative block size in [0, 1)")
    decay = p.copy()  # p_i ρ_i^t
    running = np.zeros_like(mu)  # S_i(t)
    out = np.empty(mu.shape[:-1] + (t_out.size,))

    def loss_of(decay_, running_):
        return floor + 0.5 * decay_.sum(-1) + (q * running_).sum(-1)

    t, j, end = 0, 0, int(t_out[-1])
    loss = loss_of(decay, running)
    while True:
        if t == t_out[j]:
            out[..., j] = loss
            j += 1
            if t == end:
                return out
        span = max(1, int(block * t)) if block > 0 else 1
        span = min(span, int(t_out[j]) - t)
        if span == 1:
            decay *= rho
            running = rho * running + loss[..., None]
        else:
            rho_d = rho**span
            one_minus = 1.0 - rho
            exact = np.abs(one_minus) > 1e-12
            safe = np.where(exact, one_minus, 1.0)
            geo = np.where(exact, (1.0 - rho_d) / safe, span)  # Σ_{s<D} ρ^(D−1−s)
            ramp = np.where(exact, (span - geo) / safe, span * (span - 1) / 2.0)  # Σ_{s<D} s ρ^(D−1−s)
            predicted = loss_of(decay * rho_d, rho_d * running + loss[..., None] * geo)
            slope = (predicted - loss) / span
            decay = decay * rho_d
            running = rho_d * running + loss[..., None] * geo + slope[..., None] * ramp
        t += span
        loss = loss_of(decay, running)


def volterra_direct(mu, power, lr: float, batch: int, horizon: int, floor: float = 0.0) -> np.ndarray:
    """The same Volterra equation evaluated literally, :math:`L(t) = F(t) + \\sum_{s<t}\\mathcal K(t-1-s)L(s)`,
    with the forcing and kernel tabulated (O(horizon²)): an independent reference for :func:`sgd_volterra`
    on one problem (1-D ``mu``); returns L(0 … horizon)."""
    mu, p = np.asarray(mu, dtype=np.float64), np.asarray(power, dtype=np.float64)
    rho = 1.0 - 2 * lr * mu + lr**2 * mu**2 * (1 + 1 / batch)
    tau = np.arange(horizon + 1)
    powers = rho[None, :] ** tau[:, None]
    forcing = floor + 0.5 * powers @ p
    kernel = lr**2 / batch * powers @ (mu**2)
    loss = np.empty(horizon + 1)
    for t in range(horizon + 1):
        loss[t] = forcing[t] + float(kernel[:t][::-1] @ loss[:t])
    return loss


def with_cutoff_tail(mu, theta, floor, a, b, features: int, extra: int = 16):
    r"""The regression eigensystem of a drawn model (``mu``, ``theta``, ``floor``: shapes (..., n), (..., n), (...),
    features x = A_Nψ/√N of M = ``features`` modes) with the modes M < k ≤ ``extra``·M added, each replaced by its
    mean over the projection: returns (μ', p', L_N') for :func:`sgd_volterra`, the cut-off's first-order effect.

    The added columns contribute :math:`T = \tfrac1N\sum_{M<k\le 16M}\lambda_k a_ka_k^\top` to K, with mean
    :math:`\sigma_N I`, :math:`\sigma_N = \tfrac1N\sum_{M<k\le16M}k^{-b}` (its fluctuations shrink as
    √(N/n_eff), n_eff = (Σλ_k)²/Σλ_k² ≈ M(2b − 1)/(b − 1)² effective draws), and the target power
    :math:`\tau = \sum_{M<k\le16M}k^{-a}`, which the mean term cannot learn (its cross-covariance with x has mean
    zero). With K' = K + σI the eigenvectors stay, μ'_i = μ_i + σ, the learnable power (v_iᵀg)²/μ'_i =
    μ_i²θ_i²/(μ_i + σ) and :math:`L'_N = L_N + \tfrac12\tau + \tfrac12\sum_i\mu_i\theta_i^2\,\sigma/(\mu_i+\sigma)`
    (the total ½E y² grows by ½τ). A frontier that moves under this change is one the cut-off M binds
    (the scaling-frontier law's check, mirroring scaling-exponents' comparison of its DE at M and 16M).
    """
    a, b = check_task(a, b)
    mu, theta = np.asarray(mu, dtype=np.float64), np.asarray(theta, dtype=np.float64)
    if mu.shape != theta.shape or mu.ndim < 1:
        raise BadInput("theta", theta.shape, f"the shape of mu {mu.shape}")
    for name, v in (("features", features), ("extra", extra)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise BadInput(name, v, "a positive integer")
    k = np.arange(int(features) + 1, int(features) * int(extra) + 1, dtype=np.float64)
    sigma = float(np.sum(k**-b)) / mu.shape[-1]
    tau = float(np.sum(k**-a))
    shifted = mu + sigma
    learnable = mu * theta**2
    floor = np.asarray(floor, dtype=np.float64) + 0.5 * tau + 0.5 * np.sum(learnable * sigma / shifted, axis=-1)
    return shifted, mu * learnable / shifted, floor


# ------------------------------------------------------- deterministic equivalent (no projections)
#
# K = AΛAᵀ/N is the Gram matrix of N samples x_i = Λ^{1/2}a_i (a_i the rows of A), over N. Its Stieltjes
# transform m(z) = (1/N) tr(K − z)^{-1} solves, at leading order in N, Silverstein's equation (Silverstein &
# Bai 1995, J. Multivariate Anal. 54; Couillet & Liao, "Random Matrix Methods for Machine Learning", 2022,
# ch. 2), an explicit inverse
#     z = −1/m + (1/N) Σ_k λ_k/(1 + λ_k m),      Im m > 0 for Im z > 0,
# and the resolvent of the M×M sample covariance S = Λ^{1/2}AᵀAΛ^{1/2}/N is ≃ −(1/z)(I + mΛ)^{-1}. With
# g = AΛw*/√N = Xv/√N (v = Λ^{1/2}w*, v_k² = k^-a) and Xᵀ(K − z)^{-1}X/N = I + z(S − z)^{-1}:
#     gᵀ(K − z)^{-1}g ≃ h(z) = Σ_k v_k² λ_k m/(1 + λ_k m).
# Paquette, Paquette, Xiao & Pennington 2024 (arXiv 2405.15074) write the expected risk of
# one-pass SGD through the same two functions. The modes are summed explicitly while |λ_k m| may exceed
# TAIL_RATIO; beyond, by the geometric series in λ_k m with the power sums Σ_{K<k≤M} k^-s of the Hurwitz ζ
# (M = ∞ allowed: the cut-off's whole tail, analytically).

#: modes with λ_k |m| below this are summed by their power series (TAIL_TERMS terms: error ≲ 0.02^9)
TAIL_RATIO = 0.02
TAIL_TERMS = 8
#: the quadrature's relative distance above the real axis (z = x(1 + iη)): far below any feature's width
DE_ETA = 1e-9
#: a node is inside K's DE support where Im m > DE_SUPPORT·|m|
DE_SUPPORT = 1e-6


class _Modes:
    """λ_k = k^-b and v_k² = k^-a for k ≤ M (M = None: ∞), with the power sums of the modes beyond a head."""

    def __init__(self, a: float, b: float, features):
        self.a, self.b = a, b
        self.features = None if features is None else int(features)

    def head(self, count: int):
        count = count if self.features is None else min(count, self.features)
        k = np.arange(1, count + 1, dtype=np.float64)
        return k**-self.b, k**-self.a

    def sums(self, first: int, s: float) -> float:
        """Σ_{first<k≤M} k^-s."""
        from scipy.special import zeta

        if self.features is not None and first >= self.features:
            return 0.0
        out = float(zeta(s, first + 1))
        return out - (float(zeta(s, self.features + 1)) if self.features is not None else 0.0)

    def tail(self, first: int):
        """T_j = Σ_{k>first} λ_k^{j+1} and U_j = Σ_{k>first} v_k²λ_k^{j+1}, j < TAIL_TERMS."""
        j = np.arange(TAIL_TERMS)
        return (np.array([self.sums(first, self.b * (i + 1)) for i in j]),
                np.array([self.sums(first, self.a + self.b * (i + 1)) for i in j]))

    def count_for(self, scale: float) -> int:
        """The head size K with λ_{K+1}·scale ≤ TAIL_RATIO (scale bounds |m|)."""
        k = int(math.ceil((scale / TAIL_RATIO) ** (1 / self.b)))
        return k if self.features is None else min(k, self.features)

    @property
    def trace(self) -> float:
        return self.sums(0, self.b)

    @property
    def total(self) -> float:
        return self.sums(0, self.a)


def _series(m, coef, shift: int):
    """Σ_j (−1)^j m^(j+shift) c_j and its derivative in m (Horner in −m)."""
    val = np.zeros_like(m)
    der = np.zeros_like(m)
    for j in range(len(coef) - 1, -1, -1):
        val = val * (-m) + coef[j]
    for j in range(len(coef) - 1, 0, -1):
        der = der * (-m) + j * coef[j]
    der = -der
    if shift == 0:
        return val, der
    return val * m**shift, shift * m ** (shift - 1) * val + m**shift * der


def _solve_m(z, n: float, modes: _Modes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """m(z) for complex z (Im z > 0) by Newton's method along a homotopy in Im z from |z| down (one solve per
    point, no continuation along the axis: the unique root with Im m > 0, kept by damping). The points are
    grouped by the head size K their |m| needs (|m| ≲ 10/|z|, checked after the solve). Returns (m, h(z), the
    head size of each point)."""
    z = np.asarray(z, dtype=np.complex128)
    m = np.empty_like(z)
    h = np.empty_like(z)
    heads = np.empty(z.shape, dtype=np.int64)
    want = np.array([modes.count_for(10.0 / abs(v)) for v in z])
    group = np.ceil(np.log(want) / math.log(1.25)).astype(np.int64)  # head sizes within 25%
    for key in np.unique(group):
        idx = np.flatnonzero(group == key)
        scale = 10.0 / float(np.min(np.abs(z[idx])))
        while True:
            K = modes.count_for(scale)
            lam, v2 = modes.head(K)
            T, U = modes.tail(K)
            mm = _newton_homotopy(z[idx], n, lam, T)
            bound = float(np.max(np.abs(mm)))
            if bound <= scale * (1 + 1e-12) or (modes.features is not None and K >= modes.features):
                break
            scale = 2 * bound
        h_tail, _ = _series(mm, U, 1)
        lm = lam * mm[:, None]
        h[idx] = (v2 * lm / (1 + lm)).sum(1) + h_tail
        m[idx] = mm
        heads[idx] = K
    return m, h, heads


def _newton_homotopy(z, n, lam, T, chunk: int = 500_000):
    out = np.empty_like(z)
    rows = max(1, chunk // max(1, lam.size))
    for lo in range(0, z.size, rows):
        out[lo:lo + rows] = _newton_block(z[lo:lo + rows], n, lam, T)
    return out


def _newton_block(z, n, lam, T):
    def f_and_df(m):
        u = lam / (1 + lam * m[:, None])
        ts, dts = _series(m, T, 0)
        return -1 / m + (u.sum(1) + ts) / n, 1 / m**2 + (dts - (u * u).sum(1)) / n

    target = z.imag
    eps = np.maximum(np.abs(z), target)
    zz = z.real + 1j * eps
    m = -1 / zz
    for _ in range(200):  # fixed point m = 1/(s(m) − z): a contraction of the upper half-plane at Im z ~ |z|
        fv, _ = f_and_df(m)
        m_new = 1 / (fv + 1 / m - zz)
        if np.max(np.abs(m_new - m) / np.abs(m)) < 1e-13:
            m = m_new
            break
        m = m_new
    while True:
        for _ in range(60):
            fv, dfv = f_and_df(m)
            step = (fv - zz) / dfv
            new = m - step
            bad = ~(new.imag > 0)
            tries = 0
            while np.any(bad) and tries < 40:
                step = np.where(bad, step / 2, step)
                new = m - step
                bad = ~(new.imag > 0)
                tries += 1
            m = np.where(bad, m, new)
            if np.max(np.abs(step) / np.abs(m)) < 1e-12:
                break
        if np.all(eps <= target):
            return m
        eps = np.maximum(eps / 8, target)
        zz = z.real + 1j * eps


def stieltjes_de(z, a, b, features, n) -> tuple[np.ndarray, np.ndarray]:
    r"""Deterministic equivalents of :math:`m(z) = \tfrac1N\mathrm{tr}(K - z)^{-1}` and of
    :math:`g^\top(K - z)^{-1}g` for the projected covariance K = AΛAᵀ/N and cross-covariance g = AΛw*/√N of
    :func:`projected_covariance` (A ∈ R^{N×M} Gaussian, λ_k = k^-b, v_k² = λ_k w*_k² = k^-a), at complex z with
    Im z > 0: m solves Silverstein's equation :math:`z = -1/m + \tfrac1N\sum_k\lambda_k/(1+\lambda_km)` (Silverstein
    & Bai 1995; Couillet & Liao 2022, ch. 2) and :math:`g^\top(K-z)^{-1}g \simeq \sum_k v_k^2\lambda_km/(1+\lambda_km)`
    (Paquette et al. 2024, arXiv 2405.15074). ``features`` = M (None: M = ∞, the tail summed analytically)."""
    a, b = check_task(a, b)
    modes = _Modes(a, b, _features(features))
    n = _size(n, modes)
    z = np.atleast_1d(np.asarray(z, dtype=np.complex128))
    if not np.all(z.imag > 0):
        raise BadInput("z", z[~(z.imag > 0)][:3].tolist(), "points of the upper half-plane (Im z > 0)")
    m, h, _ = _solve_m(z, n, modes)
    return m, h


def _features(features):
    if features is None:
        return None
    if isinstance(features, bool) or not isinstance(features, numbers.Integral) or features < 2:
        raise BadInput("features", features, "a cut-off M >= 2 (or None: M = ∞)")
    return int(features)


def _size(n, modes: _Modes) -> float:
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or not math.isfinite(n) or n < 1:
        raise BadInput("n", n, "a model size N >= 1")
    if modes.features is not None and not n < modes.features:
        raise BadInput("n", n, f"N < M = {modes.features} (K of full rank N)")
    return float(n)


def _kappa_de(n: float, modes: _Modes) -> tuple[float, float]:
    """(κ, h(0)): κ = 1/m(0) with Σ_k λ_k/(λ_k + κ) = N (:func:`model_kappa`, summed to M or ∞) and the DE of
    gᵀK^{-1}g = Σ_k v_k²λ_k/(λ_k + κ)."""
    from scipy import optimize

    def parts(kappa):
        K = modes.count_for(1 / kappa)
        lam, v2 = modes.head(K)
        T, U = modes.tail(K)
        m = np.array([1 / kappa])
        ts, _ = _series(m, T, 1)
        us, _ = _series(m, U, 1)
        return float(np.sum(lam / (lam + kappa)) + ts[0]), float(np.sum(v2 * lam / (lam + kappa)) + us[0])

    hi = math.log(modes.trace / n)
    lo = hi
    while parts(math.exp(lo))[0] <= n:
        lo -= math.log(10.0)
    log_k = optimize.brentq(lambda x: parts(math.exp(x))[0] - n, lo, hi, xtol=1e-14, rtol=1e-14)
    kappa = math.exp(log_k)
    return kappa, parts(kappa)[1]


def expected_best_in_class(a, b, features, n) -> float:
    r"""DE of the model-size-limited loss :math:`L_N = \tfrac12\sum_k v_k^2\kappa/(\lambda_k+\kappa)` summed to M
    (or ∞): Silverstein's equation at z → 0, m(0) = 1/κ (:func:`best_in_class_loss` on M explicit modes)."""
    a, b = check_task(a, b)
    modes = _Modes(a, b, _features(features))
    n = _size(n, modes)
    _, learnable = _kappa_de(n, modes)
    return 0.5 * (modes.total - learnable)


def eigenvalue_fraction_de(x, a, b, features, n) -> np.ndarray:
    r"""DE of the share of K's eigenvalues below x > 0: from :math:`\tfrac1N\log\det(K - z) \simeq
    \tfrac1N\sum_k\log(1+\lambda_km) - \log m - zm - 1` (stationary in m exactly at Silverstein's equation, so
    its z-derivative is −m), :math:`F(x) = -\tfrac1\pi\mathrm{Im}[\ldots]_{z = x + i0}`, i.e.
    :math:`F(x) = \tfrac1\pi[\arg m + x\,\mathrm{Im}\,m - \tfrac1N\sum_k\arg(1+\lambda_km)]`: a closed form, no
    integral of the density (Silverstein & Choi 1995's support analysis)."""
    a, b = check_task(a, b)
    modes = _Modes(a, b, _features(features))
    n = _size(n, modes)
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if not np.all(x > 0):
        raise BadInput("x", x[:4].tolist(), "points x > 0")
    z = x * (1 + 1j * DE_ETA)
    m, _, heads = _solve_m(z, n, modes)
    return _fraction(m, x, heads, n, modes)


def _fraction(m, x, heads, n: float, modes: _Modes) -> np.ndarray:
    logs = np.empty_like(m)
    for K in np.unique(heads):
        idx = np.flatnonzero(heads == K)
        lam, _ = modes.head(int(K))
        coef = modes.tail(int(K))[0] / (np.arange(TAIL_TERMS) + 1)  # tail of Σ_k log(1 + λ_k m): Σ_j (−1)^j m^{j+1} T_j/(j+1)
        logs[idx] = np.log1p(lam * m[idx, None]).sum(1) + _series(m[idx], coef, 1)[0]
    return (np.angle(m) + x * m.imag - logs.imag / n) / math.pi


@dataclass(frozen=True)
class ExpectedSpectrum:
    """Quadrature of K's DE spectrum (:func:`expected_spectrum`): ``nodes`` μ_j (ascending), ``power`` p_j (the
    ν_g-weight over μ_j), ``counts`` n_j (eigenvalues per node), ``floor`` (L_N plus half the learnable power
    of the eigenvalues below the grid), ``best_in_class`` L_N, ``mass_below`` (the DE count of eigenvalues
    below the grid, closed form) and ``total`` ½Σ_k v_k²."""

    nodes: np.ndarray
    power: np.ndarray
    counts: np.ndarray
    floor: float
    best_in_class: float
    mass_below: float
    total: float


def _power_below(low: float, high: float, n: float, modes: _Modes, learnable: float) -> float:
    r"""DE of :math:`\sum_{\mu_i<x}(e_i^\top g)^2/\mu_i` at x = ``low``, by a contour, not by the density: with
    G(w) = gᵀ(K − w)^{-1}g, :math:`1/(\mu(\mu-w)) = (1/(\mu-w) - 1/\mu)/w` and
    :math:`\mathrm{sign}(\mu-x) = \tfrac1\pi\int\mathrm{Re}\,(\mu-x-iy)^{-1}dy`,

    .. math:: \sum_{\mu_i>x}\frac{(e_i^\top g)^2}{\mu_i} = \tfrac12G(0) + \tfrac1\pi\int_0^\infty
              \mathrm{Re}\,\frac{G(x+iy) - G(0)}{x+iy}\,dy,

    an integrand smooth in log y (trapezoid, 20 nodes per e-fold over y from 1e-8x to Y = 1e10 times the top of
    the spectrum ``high``, plus the integrand's 1/y² tail beyond Y in closed form). Subtracting the grid's own sum from G(0) instead would leave its quadrature error
    (~1e-3 of the top eigenvalues' power) in a floor that is ~1e-8 of it."""
    s = np.arange(math.log(1e-8), math.log(1e10 * max(high / low, 1.0)), 0.05)
    y = low * np.exp(s)
    w = low + 1j * y
    _, g, _ = _solve_m(w, n, modes)
    integrand = ((g - learnable) / w).real * y
    # beyond the last y = Y, G(w) ≃ −gᵀg/w with E gᵀg = Σ_k v_k²λ_k exactly: the integrand is (gᵀg − G(0)x)/y²,
    # whose integral (gᵀg − G(0)x)/Y is added (left out, it is ~1e-10·gᵀg/top: above the floors of large N)
    gg = modes.sums(0, modes.a + modes.b)
    above = 0.5 * learnable + (float(np.trapezoid(integrand, s)) + (gg - learnable * low) / y[-1]) / math.pi
    return max(learnable - above, 0.0)


def expected_spectrum(a, b, features, n, low: float, spacing: float | None = None) -> ExpectedSpectrum:
    r"""The DE spectral measures of K on a log grid from ``low`` to above the spectrum, for :func:`sgd_volterra`.

    :math:`\rho_K(d\mu) \simeq \tfrac N\pi\mathrm{Im}\,m(\mu+i0)\,d\mu` and
    :math:`\nu_g(d\mu) = \sum_i(e_i^\top g)^2\delta_{\mu_i} \simeq \tfrac1\pi\mathrm{Im}\,h(\mu+i0)\,d\mu`
    (:func:`stieltjes_de`) on cells of relative width ``spacing`` in μ (default 0.01; halving it moves the risk by
    ≲ 2e-5 at N = 128-1024, tests). The top eigenvalues of K are bumps of relative width ~4/√N around λ_k,
    k ≲ b√N/4, with gaps between, which the cells need not resolve: a cell's
    eigenvalue count n_j is exact, the difference of the closed-form CDF (:func:`eigenvalue_fraction_de`) at its
    ends; its ν_g-weight is n_j times the ratio of the two densities at its node (smooth across a bump's square-root
    edges, where the midpoint rule is not). Node j carries n_j eigenvalues and the power p_j = ν_g-weight/μ_j of
    :math:`F(t) = L_N + \tfrac12\sum_i (e_i^\top g)^2\rho_i^t/\mu_i`. The power of the eigenvalues below
    ``low`` enters ``floor`` by a contour integral (:func:`_power_below`), not by subtraction.
    """
    a, b = check_task(a, b)
    modes = _Modes(a, b, _features(features))
    n = _size(n, modes)
    if not (isinstance(low, numbers.Real) and math.isfinite(low) and low > 0):
        raise BadInput("low", low, "a positive lower end of the grid")
    step = 0.01 if spacing is None else float(spacing)
    if not 0 < step <= 0.1:
        raise BadInput("spacing", spacing, "a relative step in (0, 0.1]")
    lam1 = 1.0
    high = 1.5 * (math.sqrt(lam1) + math.sqrt(modes.trace / n)) ** 2 * (1 + 3 / math.sqrt(n))
    count = int(math.ceil(math.log(high / low) / step))
    edges = low * np.exp(step * np.arange(count + 1))
    nodes = np.sqrt(edges[1:] * edges[:-1])
    points = np.concatenate([nodes, edges])
    m_all, h_all, heads = _solve_m(points * (1 + 1j * DE_ETA), n, modes)
    cdf = _fraction(m_all[count:], edges, heads[count:], n, modes)
    counts = n * np.maximum(np.diff(cdf), 0.0)
    # ν_g's density over ρ_K's, (Im h)/(N Im m), is smooth across the bumps (both vanish as square roots at their
    # edges): the cell's ν-weight is its exact eigenvalue count times that ratio at the node (or at an end of
    # the cell inside the support). Outside the support Im m is of order η|m|, the quadrature's distance
    # above the axis, not mass: a point is inside where Im m > DE_SUPPORT·|m|.
    inside = m_all.imag > DE_SUPPORT * np.abs(m_all)
    ratio = np.where(inside, h_all.imag / (n * np.where(inside, m_all.imag, 1.0)), np.nan)
    mid, ends = ratio[:count], ratio[count:]
    pair = np.stack([ends[:-1], ends[1:]])
    seen = np.isfinite(pair).sum(0)
    fallback = np.where(seen > 0, np.nansum(pair, axis=0) / np.maximum(seen, 1), np.nan)
    ratio = np.where(np.isfinite(mid), mid, fallback)
    keep = np.isfinite(ratio) & (counts > 0)
    power = counts * np.where(keep, ratio, 0.0) / nodes
    kappa, learnable = _kappa_de(n, modes)
    best = 0.5 * (modes.total - learnable)
    below = float(eigenvalue_fraction_de(low, a, b, features, n)[0]) * n if low < high else n
    floor = best + 0.5 * _power_below(low, high, n, modes, learnable)
    return ExpectedSpectrum(nodes[keep], power[keep], counts[keep], floor, best, below,
                            0.5 * modes.total)


def expected_sgd_risk(a, b, features, n, sgd_lr: float, batch: int, steps, block: float = 0.002,
                      cut: float = 1e-4, spacing: float | None = None) -> np.ndarray:
    r"""DE of the expected one-pass SGD risk over the projection, no projection drawn (Paquette et al. 2024,
    arXiv 2405.15074): :func:`sgd_volterra` on the nodes of :func:`expected_spectrum` with their powers and
    kernel multiplicities, step γ = ``sgd_lr``/E tr K = ``sgd_lr``/Σ_k λ_k, batch B, at ``steps``. The
    eigenvalues with γμ·t_max < ``cut`` are not resolved: their power stays in the floor (its decay by
    ≤ ``cut``·t/t_max neglected)."""
    a, b = check_task(a, b)
    t = _steps(steps)
    modes = _Modes(a, b, _features(features))
    lr = float(sgd_lr) / modes.trace
    low = cut / (lr * max(int(t[-1]), 1))
    spec_ = expected_spectrum(a, b, features, n, low, spacing)
    return sgd_volterra(spec_.nodes, spec_.power, lr, batch, t, spec_.floor, block=block, counts=spec_.counts)


def frontier_of(sizes, budgets, loss) -> dict[str, np.ndarray]:
    """The compute-optimal frontier of iso-compute losses ``loss`` (len(budgets), len(sizes); NaN where a size does
    not reach a budget): per budget the minimum over N by a parabola in log N through the smallest value and its
    neighbours, as :func:`lmech.experiments.scaling_frontier.read_frontier` reads a measured grid. Returns arrays
    ``compute``, ``loss`` (L*), ``model_size`` (N*) and ``bracketed`` (False: the minimum sits at an end)."""
    sizes, budgets = np.asarray(sizes, dtype=np.float64), np.asarray(budgets, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    out = {"compute": budgets, "loss": np.full(budgets.size, np.nan), "model_size": np.full(budgets.size, np.nan),
           "bracketed": np.zeros(budgets.size, dtype=bool)}
    for i in range(budgets.size):
        ok = np.isfinite(loss[i]) & (loss[i] > 0)
        if ok.sum() < 3:
            continue
        ln, ll = np.log(sizes[ok]), np.log(loss[i, ok])
        j = int(np.argmin(ll))
        x, y = ln[j], ll[j]
        if 0 < j < ln.size - 1:
            out["bracketed"][i] = True
            p = np.polyfit(ln[j - 1:j + 2], ll[j - 1:j + 2], 2)
            if p[0] > 0:
                x = float(np.clip(-p[1] / (2 * p[0]), ln[j - 1], ln[j + 1]))
                y = float(np.polyval(p, x))
        out["loss"][i], out["model_size"][i] = math.exp(y), math.exp(x)
    return out


def expected_frontier(a, b, features, sizes, sgd_lr: float, batch: int, budgets, **risk) -> dict[str, np.ndarray]:
    r"""The compute-optimal frontier of the DE risk (:func:`expected_sgd_risk`; no projection drawn): for each model
    size N, the risk at t = C/(N·B) for every budget C it reaches with t ≥ 1 (log-linear interpolation between
    integer steps), read by :func:`frontier_of`. Its local slope −d log L*/d log C is the theory's finite-C
    exponent, to compare with the asymptotic x of :func:`compute_optimal` (Paquette et al. 2024, arXiv 2405.15074,
    whose phases are these slopes' limits)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    budgets = np.asarray(budgets, dtype=np.float64)
    loss = np.full((budgets.size, sizes.size), np.nan)
    for j, n in enumerate(sizes):
        t = budgets / (float(n) * batch)
        reach = t >= 1
        if not reach.any():
            continue
        grid = np.unique(np.concatenate([[0], np.floor(t[reach]), np.ceil(t[reach])]).astype(np.int64))
        curve = expected_sgd_risk(a, b, features, int(n), sgd_lr, batch, grid, **risk)
        loss[reach, j] = np.exp(np.interp(np.log(t[reach]), np.log(np.maximum(grid, 1e-300)), np.log(curve)))
    return frontier_of(sizes, budgets, loss)
