r"""Central flows: the time-averaged trajectory of gradient descent at the edge of stability.

Cohen, Damian, Talwalkar, Kolter & Lee 2025 (ICLR, arXiv 2410.24206). Gradient descent with step size
:math:`\eta` at the edge of stability oscillates along the top Hessian eigenvectors while its sharpness
hovers at :math:`2/\eta`. Write the iterate as :math:`w_t = \bar w(t) + \delta_t`, with :math:`\bar w` the
time average and :math:`\delta_t` the oscillation, of covariance :math:`\Sigma(t) = \mathbb E[\delta\delta^\top]`
supported on the critical eigenvectors. A third-order Taylor expansion of the gradient gives the
time-averaged velocity (time counted in steps):

.. math:: \frac{dw}{dt} = -\eta\Big[\nabla L(w) + \tfrac12 \nabla\langle H(w), \Sigma\rangle\Big].

* **One critical eigenvalue** (:math:`S = \lambda_1 = 2/\eta`, eigenvector :math:`u`): :math:`\Sigma = \sigma^2
  uu^\top` and :math:`\sigma^2` is the unique value that keeps :math:`S` at :math:`2/\eta`,

  .. math:: \frac{dw}{dt} = -\eta\Big[\nabla L + \tfrac12\sigma^2\nabla S\Big],\qquad
            \sigma^2 = \frac{2\langle -\nabla L, \nabla S\rangle}{\|\nabla S\|^2}

  (when positive, i.e. when gradient flow would sharpen; else :math:`\sigma^2 = 0`): the flow is the
  projection of gradient flow onto the set :math:`\{S \le 2/\eta\}` (paper, Sec. 3.2).
* **Several critical eigenvalues** (those above a threshold just under :math:`2/\eta`; the authors use
  :math:`1.95/\eta`), with orthonormal basis :math:`U`: :math:`\Sigma = UXU^\top`, :math:`X \succeq 0`
  solving the semidefinite complementarity problem (paper, Sec. 3.3)

  .. math:: X \succeq 0,\quad \frac{2}{\eta}I - U^\top H U \succeq 0 \text{ held as } t \text{ advances},\quad
            \langle X, \tfrac{2}{\eta}I - U^\top H U\rangle = 0,

  i.e. with the time derivative of :math:`U^\top HU` linear in :math:`X`, :math:`\mathrm{SDCP}(A, B)`:
  :math:`X \succeq 0`, :math:`A + B[X] \succeq 0`, :math:`\langle X, A + B[X]\rangle = 0` (:func:`solve_sdcp`).
* **No critical eigenvalue**: gradient flow :math:`dw/dt = -\eta\nabla L`.

Predictions (paper, Sec. 3): the weights :math:`w(t)` (GD's time average); the time-averaged loss
:math:`\mathbb E[L(w+\delta)] \approx L(w) + \tfrac12\langle H, \Sigma\rangle = L(w) + \operatorname{tr}\Sigma/\eta`
(:math:`H = 2/\eta` on the critical space; :math:`L` is the loss GD descends, whatever its
normalization, and :math:`H` its Hessian); the oscillation variance along each critical direction (the
eigenvalues of :math:`\Sigma`); the sharpness, held at :math:`2/\eta`.

**Discretization** (:func:`central_flow`): substeps of :math:`dt` steps, Heun's predictor-corrector
(second order; the authors use explicit Euler with :math:`dt = 1/4`). At a point with critical eigenvectors :math:`U` (from a warm-started
:class:`~lmech.instruments.sharpness.SharpnessTracker`) the SDCP asks the critical block of the Hessian
*after* a substep along the velocity, linearized, to stay below :math:`2/\eta`:
:math:`A = \tfrac{2}{\eta}I - U^\top HU + dt\,\eta\,\mathcal D^\top\nabla L`,
:math:`B[X] = \tfrac12 dt\,\eta\,\mathcal D^\top\mathcal D[X]` with :math:`\mathcal D[X] = \nabla\langle H, UXU^\top\rangle`
(:func:`~lmech.instruments.hessian_gradient.hessian_form_gradients`). This is the continuous problem
above plus a restoring term that returns a sharpness which overshot :math:`2/\eta` to it within a substep
(as in the authors' code); for one critical eigenvalue exactly at :math:`2/\eta` it reduces to the
closed form :math:`\sigma^2` (:func:`sigma_squared`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._params import flatten, trainable_parameters
from lmech.instruments.curvature.checks import _check_positive_int
from lmech.instruments.hessian_gradient import hessian_form_gradients
from lmech.instruments.sharpness import SharpnessTracker

#: The most eigenvalues :func:`central_flow` tracks (and so the most critical directions it handles).
MAX_CRITICAL = 8

__all__ = [
    "SDCPSolution",
    "solve_sdcp",
    "sdcp_residuals",
    "sigma_squared",
    "svec_basis",
    "FlowVelocity",
    "central_flow_velocity",
    "CentralFlowSolution",
    "central_flow",
]


# ---------------------------------------------------------------------------------------------
# the semidefinite complementarity problem
# ---------------------------------------------------------------------------------------------


def svec_basis(k: int) -> np.ndarray:
    """An orthonormal basis of the symmetric k×k matrices (Frobenius product), ``(m, k, k)``, m = k(k+1)/2."""
    basis = []
    for i in range(k):
        for j in range(i, k):
            e = np.zeros((k, k))
            if i == j:
                e[i, i] = 1.0
            else:
                e[i, j] = e[j, i] = 1.0 / math.sqrt(2.0)
            basis.append(e)
    return np.array(basis)


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


def _apply(B: np.ndarray, X: np.ndarray) -> np.ndarray:
    """B[X]_{ij} = sum_{kl} B_{ijkl} X_{kl}."""
    return np.einsum("ijkl,kl->ij", B, X)


@dataclass
class SDCPSolution:
    """The solution ``X`` of SDCP(A, B), its residuals (:func:`sdcp_residuals`) and the Newton steps used."""

    X: np.ndarray
    residuals: dict[str, float]
    newton_steps: int


def sdcp_residuals(A: np.ndarray, B: np.ndarray, X: np.ndarray) -> dict[str, float]:
    r"""How far ``X`` is from solving SDCP(A, B), relative to the problem's scale.

    ``psd``: :math:`\max(0, -\lambda_{\min}(X))/s_X`; ``dual``: :math:`\max(0, -\lambda_{\min}(A + B[X]))/s_A`;
    ``complementarity``: :math:`|\langle X, A + B[X]\rangle| / (s_X s_A)`, with :math:`s_X = \max(\|X\|,
    \|A\|/\|B\|)` (the size of X itself, or the problem's natural size of X where the solution is 0 or tiny)
    and :math:`s_A = \|A\| + \|B[X]\|` (Frobenius norms; :math:`\|B\|` the operator's on symmetric matrices).
    All three are 0 at the solution.
    """
    A, B, X = np.asarray(A, float), np.asarray(B, float), np.asarray(X, float)
    BX = _apply(B, X)
    R = A + BX
    k = A.shape[0]
    norm_b = float(np.linalg.norm(B.reshape(k * k, k * k), 2)) if k else 0.0
    natural = float(np.linalg.norm(A)) / norm_b if norm_b > 0 else 0.0
    s_x = max(float(np.linalg.norm(X)), natural, 1e-300)
    s_a = max(float(np.linalg.norm(A)) + float(np.linalg.norm(BX)), 1e-300)
    lam_x = float(np.linalg.eigvalsh(_sym(X))[0]) if X.size else 0.0
    lam_r = float(np.linalg.eigvalsh(_sym(R))[0]) if R.size else 0.0
    return {"psd": max(0.0, -lam_x) / s_x, "dual": max(0.0, -lam_r) / s_a,
            "complementarity": abs(float(np.sum(X * R))) / (s_x * s_a)}


def _check_sdcp(A: object, B: object) -> tuple[np.ndarray, np.ndarray]:
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or not np.all(np.isfinite(A)):
        raise BadInput("A", getattr(A, "shape", A), "a finite symmetric k×k matrix")
    k = A.shape[0]
    B = np.asarray(B, dtype=np.float64)
    if B.shape != (k, k, k, k) or not np.all(np.isfinite(B)):
        raise BadInput("B", B.shape, f"a finite ({k}, {k}, {k}, {k}) tensor: B[X]_ij = sum_kl B_ijkl X_kl")
    if A.size and not np.allclose(A, A.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(A).max())):
        raise BadInput("A", "a non-symmetric matrix", "a symmetric matrix")
    return _sym(A), B


def solve_sdcp(A: np.ndarray, B: np.ndarray, *, tol: float = 1e-11, max_newton: int = 500) -> SDCPSolution:
    r"""Solve SDCP(A, B): :math:`X \succeq 0`, :math:`A + B[X] \succeq 0`, :math:`\langle X, A + B[X]\rangle = 0`.

    ``A`` is symmetric k×k; ``B`` a ``(k, k, k, k)`` tensor acting as :math:`B[X]_{ij} = \sum_{kl}
    B_{ijkl}X_{kl}`, symmetric and positive semidefinite on symmetric matrices (in the central flow
    :math:`B = \tfrac12 dt\,\eta\,\mathcal D^\top\mathcal D`). The SDCP is then the optimality condition
    of the convex problem :math:`\min_{X\succeq 0} \tfrac12\langle X, B[X]\rangle + \langle A, X\rangle`
    (the reformulation the authors solve with cvxpy; paper, App. on discretization).

    A small dedicated solver, for the k ≤ 3 critical directions of the central flow (m = k(k+1)/2 ≤ 6
    unknowns): :math:`X = 0` when :math:`A \succeq 0`; the closed form :math:`\max(0, -A/B)` when k = 1;
    the interior solution :math:`B[X] = -A` when it is positive semidefinite (then :math:`A + B[X] = 0`);
    otherwise a primal log-barrier path-following method (Boyd & Vandenberghe 2004, Sec. 11.3) with
    damped Newton steps on the symmetric-vectorized problem, the barrier weight μ divided by 10 per
    centering until :math:`k\mu` is below ``tol`` (relative to the problem's scale), then projected on
    the PSD cone. :func:`sdcp_residuals` of the result are returned (the caller decides what to accept).
    """
    A, B = _check_sdcp(A, B)
    k = A.shape[0]
    if k == 0:
        return SDCPSolution(np.zeros((0, 0)), {"psd": 0.0, "dual": 0.0, "complementarity": 0.0}, 0)
    if np.linalg.eigvalsh(A)[0] >= 0:
        X = np.zeros_like(A)
        return SDCPSolution(X, sdcp_residuals(A, B, X), 0)
    basis = svec_basis(k)
    b = np.einsum("pij,ijkl,qkl->pq", basis, B, basis)
    b = 0.5 * (b + b.T)
    a = np.einsum("pij,ij->p", basis, A)
    if k == 1:
        if b[0, 0] <= 0:
            raise BadInput("B", float(b[0, 0]), "a positive scalar when A < 0 (else the SDCP has no solution)")
        X = np.array([[max(0.0, -a[0] / b[0, 0])]])
        return SDCPSolution(X, sdcp_residuals(A, B, X), 0)
    # interior candidate: B[X] = -A with X ⪰ 0 solves the SDCP with A + B[X] = 0 (the common case)
    try:
        x_int = np.linalg.solve(b, -a)
    except np.linalg.LinAlgError:
        x_int = None
    if x_int is not None and np.all(np.isfinite(x_int)):
        X = np.einsum("p,pij->ij", x_int, basis)
        if np.linalg.eigvalsh(X)[0] >= 0:
            return SDCPSolution(X, sdcp_residuals(A, B, X), 0)
    # scale the problem to O(1): B -> B/|B|, then x -> x/c with c = |a|/|B|
    scale_b = float(np.linalg.norm(b, 2))
    if scale_b <= 0:
        raise BadInput("B", "zero", "a positive semidefinite operator that is not zero when A has a negative eigenvalue")
    bn = b / scale_b
    c = float(np.linalg.norm(a)) / scale_b
    an = a / (c * scale_b)
    z = np.einsum("pij,ij->p", basis, np.eye(k))  # start at X = I (scaled)
    mu, steps = 1.0, 0

    def mat(v: np.ndarray) -> np.ndarray:
        return np.tensordot(v, basis, axes=1)

    def barrier(v: np.ndarray) -> tuple[float, np.ndarray] | None:
        """(f(v), Z⁻¹) with f = ½vᵀBv + aᵀv − μ log det Z, or None outside the PSD cone (Cholesky fails)."""
        try:
            chol = np.linalg.cholesky(mat(v))
        except np.linalg.LinAlgError:
            return None
        inv_chol = np.linalg.inv(chol)
        return (0.5 * v @ bn @ v + an @ v - 2.0 * mu * float(np.sum(np.log(np.diag(chol)))),
                inv_chol.T @ inv_chol)

    while True:
        current = barrier(z)
        for _ in range(50):  # centering: damped Newton on f(z) = ½zᵀBz + aᵀz − μ log det Z
            f0, zi = current
            M = basis @ zi  # E_p Z⁻¹, (m, k, k)
            grad = bn @ z + an - mu * np.einsum("pii->p", M)  # ∂ log det Z / ∂z_p = tr(Z⁻¹E_p)
            hess = bn + mu * np.einsum("pij,qji->pq", M, M)  # tr(Z⁻¹E_p Z⁻¹E_q)
            dz = -np.linalg.solve(hess, grad)
            decrement = float(-grad @ dz)
            steps += 1
            if decrement < 1e-14:
                break
            step = 1.0
            while step > 1e-12:
                trial = barrier(z + step * dz)
                if trial is not None and trial[0] <= f0 - 0.25 * step * decrement:
                    break
                step *= 0.5
            if trial is None:
                break
            z, current = z + step * dz, trial
            if steps >= max_newton:
                break
        if k * mu < tol or steps >= max_newton:
            break
        mu *= 0.02
    if not np.all(np.isfinite(z)) or np.linalg.norm(z) > 1e12:
        raise BadInput("B", "an operator for which the problem is unbounded", "a positive definite operator")
    w, v = np.linalg.eigh(mat(z))
    X = c * (v * np.clip(w, 0.0, None)) @ v.T
    return SDCPSolution(X, sdcp_residuals(A, B, X), steps)


def sigma_squared(gradient: Tensor, sharpness_gradient: Tensor) -> float:
    r""":math:`\sigma^2 = \max\big(0, 2\langle -\nabla L, \nabla S\rangle / \|\nabla S\|^2\big)`.

    The oscillation variance along the top eigenvector that holds :math:`S` at :math:`2/\eta` under
    :math:`dw/dt = -\eta[\nabla L + \tfrac12\sigma^2\nabla S]` (Cohen et al. 2025, arXiv 2410.24206,
    Sec. 3.2): :math:`dS/dt = \langle\nabla S, dw/dt\rangle = 0`. Zero when gradient flow does not sharpen.
    """
    g, s = gradient.detach().double().reshape(-1), sharpness_gradient.detach().double().reshape(-1)
    if g.shape != s.shape:
        raise BadInput("sharpness_gradient", tuple(s.shape), f"the shape of the gradient {tuple(g.shape)}")
    norm2 = float(s @ s)
    if norm2 == 0.0:
        raise BadInput("sharpness_gradient", "zero", "a non-zero gradient of the sharpness")
    return max(0.0, -2.0 * float(g @ s) / norm2)


@dataclass
class FlowVelocity:
    r"""The central flow's velocity at one point.

    ``velocity``: :math:`dw/dt` (per unit of time = one GD step); ``X``: :math:`\Sigma` in the
    orthonormal critical basis ``basis`` (:math:`\Sigma = UXU^\top`); ``sigma`` and ``directions``: the
    eigenvalues of :math:`\Sigma` (descending) and its eigenvectors ``(P, k)``; ``sdcp``: the solver's
    answer (None without critical directions).
    """

    loss: float
    gradient: Tensor
    velocity: Tensor
    X: np.ndarray
    basis: Tensor
    sigma: np.ndarray
    directions: Tensor
    sdcp: SDCPSolution | None


def central_flow_velocity(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    lr: float,
    critical_vectors: Tensor | None,
    *,
    dt: float = 0.25,
    check: bool = True,
) -> FlowVelocity:
    r""":math:`dw/dt = -\eta[\nabla L + \tfrac12\nabla\langle H, \Sigma\rangle]` at the model's parameters.

    ``critical_vectors`` ``(P, k)`` span the critical space (orthonormalized here; k = 0 or None:
    gradient flow). :math:`\Sigma = UXU^\top` with X from :func:`solve_sdcp` on
    :math:`A = \tfrac{2}{\eta}I - U^\top HU + dt\,\eta\,\mathcal D^\top\nabla L`,
    :math:`B = \tfrac12 dt\,\eta\,\mathcal D^\top\mathcal D` (module docstring): the critical block of
    the Hessian after a step ``dt`` along the velocity, linearized, is :math:`\preceq 2/\eta`, with
    equality where :math:`\Sigma` is nonzero. For one critical eigenvalue exactly at :math:`2/\eta`,
    X is :func:`sigma_squared` for every ``dt``.
    """
    lr = _check_positive("lr", lr)
    dt = _check_positive("dt", dt)
    params = trainable_parameters(model)
    size = sum(p.numel() for p in params)
    k = 0 if critical_vectors is None else (critical_vectors.shape[1] if critical_vectors.ndim == 2 else 1)
    if k == 0:
        with torch.enable_grad():
            loss = loss_fn(model(inputs), targets)
            grad = flatten(torch.autograd.grad(loss, params))
        return FlowVelocity(float(loss.detach()), grad, -lr * grad, np.zeros((0, 0)), grad.new_zeros(size, 0),
                            np.zeros(0), grad.new_zeros(size, 0), None)
    U = critical_vectors.reshape(size, k).detach().to(params[0].dtype)
    U, _ = torch.linalg.qr(U)  # orthonormal basis of the critical space
    forms = hessian_form_gradients(model, loss_fn, inputs, targets, U, check=check)
    D = forms.form_gradients.reshape(k * k, size)  # rows: ∇(u_iᵀHu_j), (i, j) row-major
    dg = (D @ forms.gradient).reshape(k, k).cpu().numpy()
    gram = (D @ D.T).reshape(k, k, k, k).cpu().numpy()
    A = (2.0 / lr) * np.eye(k) - forms.forms.cpu().numpy() + dt * lr * dg
    sol = solve_sdcp(_sym(A), 0.5 * dt * lr * gram)
    X = torch.from_numpy(sol.X).to(D)
    velocity = -lr * (forms.gradient + 0.5 * (X.reshape(-1) @ D))
    s_val, s_vec = torch.linalg.eigh(X)
    order = torch.argsort(s_val, descending=True)
    return FlowVelocity(forms.loss, forms.gradient, velocity, sol.X, U, s_val[order].cpu().numpy(),
                        U @ s_vec[:, order], sol)


# ---------------------------------------------------------------------------------------------
# the flow
# ---------------------------------------------------------------------------------------------


@dataclass
class CentralFlowSolution:
    r"""The central flow sampled at integer steps ``times`` (``t`` in units of GD steps).

    ``losses``: :math:`L(w(t))`; ``predicted_losses``: :math:`L(w(t)) + \operatorname{tr}\Sigma/\eta`, the
    prediction of GD's time-averaged loss; ``sigma``: ``(T, k)`` eigenvalues of :math:`\Sigma`
    (descending, zero-padded to ``top_k``); ``eigenvalues``: ``(T, top_k)`` top Hessian eigenvalues at
    :math:`w(t)` (tracker; as last refreshed, every ``eig_every`` substeps); ``critical``: number of critical eigenvalues; ``params``: ``(T, P)`` weights
    (``keep_params``); ``directions``: ``(T, P, top_k)`` float32, the eigenvectors of :math:`\Sigma` in the
    order of ``sigma`` on the critical space, then the other tracked Hessian eigenvectors
    (``keep_directions``); ``saturated``: whether every tracked eigenvalue was
    critical at some time (a critical direction may then have been missed: raise ``top_k``).
    """

    lr: float
    times: np.ndarray
    losses: np.ndarray
    predicted_losses: np.ndarray
    sigma: np.ndarray
    eigenvalues: np.ndarray
    critical: np.ndarray
    params: np.ndarray | None = None
    directions: np.ndarray | None = None
    saturated: bool = False
    max_sdcp_residual: float = 0.0
    gradient_evaluations: int = 0
    hvps: int = 0
    seconds: float = 0.0
    diverged_at: int | None = None
    info: dict = field(default_factory=dict)


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BadInput(name, value, "a positive finite number")
    return float(value)


def central_flow(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    lr: float,
    steps: int,
    *,
    substeps: int = 2,
    method: str = "heun",
    flow: str = "central",
    top_k: int = 3,
    critical_fraction: float = 0.975,
    lanczos_tol: float = 1e-4,
    lanczos_max_iter: int = 100,
    eig_every: int | None = None,
    keep_params: bool = True,
    keep_directions: bool = True,
    seed: int = 0,
    callback: Callable[[int], None] | None = None,
) -> CentralFlowSolution:
    r"""Integrate the central flow of gradient descent with step ``lr`` for ``steps`` units of time.

    From the model's current parameters (the model is not modified; the flow runs on a float64 CPU
    copy), with ``substeps`` substeps per unit of time (:math:`dt = 1/\text{substeps}`) of Heun's
    predictor-corrector (``method="heun"``, second order, two velocity evaluations per substep) or of
    explicit Euler (``"euler"``, first order, as in the authors' code); each velocity evaluation is
    :func:`central_flow_velocity` with the current critical subspace. Eigenvalues above ``critical_fraction`` :math:`\times\,2/\eta`
    are critical (0.975: the authors' :math:`1.95/\eta`); the top ``top_k`` are tracked by a
    warm-started :class:`~lmech.instruments.sharpness.SharpnessTracker` (Lanczos to relative accuracy
    ``lanczos_tol``) every ``eig_every`` substeps (default: once per unit of time); between two
    measurements the critical subspace is held and the Hessian's block on it, :math:`U^\top HU`, is
    recomputed at every substep (a Rayleigh quotient: second-order accurate in the subspace's drift). State is recorded at every integer time 0..``steps``; ``callback(t)``
    is called after each. A non-finite loss stops the flow (``diverged_at``). ``flow="gradient"`` runs
    the same integrator with :math:`\Sigma = 0` throughout: gradient flow, the authors' "stable flow"
    (its sharpness still tracked), the reference the central flow is compared with.
    """
    lr = _check_positive("lr", lr)
    steps = _check_positive_int("steps", steps, 1)
    substeps = _check_positive_int("substeps", substeps, 1)
    if flow not in ("central", "gradient"):
        raise BadInput("flow", flow, "'central' or 'gradient' (the same integrator without Σ: gradient flow)")
    if method not in ("heun", "euler"):
        raise BadInput("method", method, "'heun' (second order) or 'euler' (first order, the authors' scheme)")
    eig_every = substeps if eig_every is None else _check_positive_int("eig_every", eig_every, 1)
    top_k = _check_positive_int("top_k", top_k, 1)
    if top_k > MAX_CRITICAL:
        raise BadInput("top_k", top_k, f"at most {MAX_CRITICAL} (each critical direction costs k HVPs and k(k+1)/2 "
                       "third-derivative passes per velocity)")
    if not isinstance(critical_fraction, (int, float)) or not 0.5 <= critical_fraction <= 1.0:
        raise BadInput("critical_fraction", critical_fraction, "a number in [0.5, 1] (of 2/η)")
    started = time.perf_counter()
    net = copy.deepcopy(model).to("cpu", torch.float64)
    params = trainable_parameters(net)
    x = inputs.detach().to("cpu", torch.float64)
    y = targets.detach().to("cpu", torch.float64)
    w = flatten([p.detach() for p in params]).clone()
    n_params = w.numel()
    if top_k > n_params:
        raise BadInput("top_k", top_k, f"at most the number of parameters {n_params}")
    tracker = SharpnessTracker(top_k, tol=lanczos_tol, max_iter=lanczos_max_iter, seed=seed)
    dt = 1.0 / substeps
    edge = 2.0 / lr
    crit_level = critical_fraction * edge

    def load(vec: Tensor) -> None:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(vec, params)

    rec: dict[str, list] = {k: [] for k in ("loss", "pred", "sigma", "eig", "crit", "params", "dirs")}
    saturated, max_res, grads_used, diverged = False, 0.0, 0, None
    counter = 0  # substeps taken: the eigenpairs are refreshed every ``eig_every`` of them
    for t in range(steps + 1):
        for sub in range(substeps if t < steps else 1):
            load(w)
            if counter % eig_every == 0:
                record = tracker.measure(net, loss_fn, x, y, lr=lr)
                eigs = np.array([record[f"lambda_{i + 1}"] for i in range(top_k)])
                n_crit = int(np.sum(eigs > crit_level)) if flow == "central" else 0
            saturated = saturated or n_crit == top_k
            step = central_flow_velocity(net, loss_fn, x, y, lr, tracker.vectors[:, :n_crit], dt=dt, check=False)
            loss_value, velocity = step.loss, step.velocity
            sig = np.zeros(top_k)
            sig[:n_crit] = step.sigma
            # Σ's eigenvectors (descending σ²) on the critical space, then the other tracked eigenvectors
            dirs = torch.cat([step.directions, tracker.vectors[:, n_crit:]], dim=1) if n_crit else tracker.vectors
            if step.sdcp is not None:
                max_res = max(max_res, *step.sdcp.residuals.values())
            grads_used += 1
            if sub == 0:
                rec["loss"].append(loss_value)
                rec["pred"].append(loss_value + float(sig.sum()) / lr)
                rec["sigma"].append(sig)
                rec["eig"].append(eigs)
                rec["crit"].append(n_crit)
                if keep_params:
                    rec["params"].append(w.numpy().copy())
                if keep_directions:
                    rec["dirs"].append(dirs.to(torch.float32).numpy().copy())
            if not math.isfinite(loss_value):
                diverged = t
                break
            if t < steps and method == "heun":  # Heun's predictor-corrector: second order in dt
                load(w + dt * velocity)
                second = central_flow_velocity(net, loss_fn, x, y, lr, tracker.vectors[:, :n_crit], dt=dt, check=False)
                grads_used += 1
                if second.sdcp is not None:
                    max_res = max(max_res, *second.sdcp.residuals.values())
                w = w + 0.5 * dt * (velocity + second.velocity)
            elif t < steps:
                w = w + dt * velocity
            counter += 1
        if callback is not None:
            callback(t)
        if diverged is not None:
            break
    return CentralFlowSolution(
        lr=lr,
        times=np.arange(len(rec["loss"]), dtype=np.float64),
        losses=np.array(rec["loss"]),
        predicted_losses=np.array(rec["pred"]),
        sigma=np.array(rec["sigma"]),
        eigenvalues=np.array(rec["eig"]),
        critical=np.array(rec["crit"]),
        params=np.array(rec["params"]) if keep_params else None,
        directions=np.array(rec["dirs"]) if keep_directions else None,
        saturated=saturated,
        max_sdcp_residual=max_res,
        gradient_evaluations=grads_used,
        hvps=tracker.total_hvps,
        seconds=time.perf_counter() - started,
        diverged_at=diverged,
    )
