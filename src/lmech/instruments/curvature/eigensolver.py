r"""The top-k eigenpairs of a symmetric operator by Lanczos with a certified stopping rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lmech.errors import BadInput
from lmech.instruments.curvature.checks import _check_positive_int, _check_tol
from lmech.instruments.curvature.krylov import _lanczos_iterations, _random_unit, _ritz
from lmech.instruments.curvature.operators import CurvatureOperator

__all__ = ["BOUNDS", "EigenResult", "lanczos", "ritz_error_bounds"]


@dataclass
class EigenResult:
    r"""Top eigenpairs of an operator: ``values`` (descending), ``vectors`` (columns, ``(P, k)``).

    ``residuals`` are the Ritz residuals :math:`\|A x_i - \theta_i x_i\|`; ``errors`` the a-posteriori
    bounds on :math:`|\lambda_i - \theta_i|` that the stopping rule used (see :func:`lanczos`).
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    num_matvecs: int
    converged: bool
    errors: Tensor | None = None


BOUNDS = ("residual", "gap")


def ritz_error_bounds(theta: np.ndarray, residuals: np.ndarray, bound: str = "residual") -> np.ndarray:
    r"""A-posteriori bounds on :math:`\lambda_i - \theta_i` for Ritz values sorted ascending.

    :math:`\theta_i` is the ``i``-th largest Ritz value of a Rayleigh-Ritz (e.g. Lanczos)
    approximation of a symmetric ``A`` with residual :math:`r_i = \|A x_i - \theta_i x_i\|`.
    Cauchy interlacing gives :math:`\theta_i \le \lambda_i` (Parlett 1998, "The Symmetric
    Eigenvalue Problem", Thm. 10.1.1) and some eigenvalue lies within :math:`r_i` of
    :math:`\theta_i` (Thm. 4.5.1). No Krylov bound can say *which* eigenvalue: both bounds below
    read it as :math:`\lambda_i`, i.e. they assume the top of the spectrum is resolved.

    * ``"residual"``: :math:`0 \le \lambda_i - \theta_i \le r_i`. It fails only while an
      eigenvalue cluster narrower than about :math:`r_i` is unresolved, and then the error is at
      most about the cluster's width.
    * ``"gap"`` (Kato-Temple, Parlett 1998, Thm. 11.7.1): if no eigenvalue lies in
      :math:`(\alpha_i, \lambda_i)` and :math:`\theta_i > \alpha_i`, then
      :math:`\lambda_i - \theta_i \le r_i^2/(\theta_i - \alpha_i)` (from :math:`\sum_j c_j^2
      (\lambda_j - \alpha)(\lambda_j - \lambda_i) = r_i^2 + (\theta_i - \alpha)(\theta_i -
      \lambda_i)`, every term on the left being :math:`\ge 0`). Here :math:`\alpha_i = \max_{j>i}
      (\theta_j + r_j)`, which bounds :math:`\lambda_{i+1}` only if every lower eigenvalue is
      represented by a lower Ritz value. That fails while Lanczos has not resolved the top of
      the spectrum: for a bunched top (edge of stability: 1, 0.99, 0.985, 0.98 above a bulk)
      all of the cluster hides under :math:`\theta_1`, :math:`\theta_2` sits near the bulk with a
      small residual, and the bound claims 1e-3 accuracy after 7 products when the error is
      larger (``tests/instruments/test_curvature.py``). An estimate, not a guarantee; it is
      never looser than the residual bound.

    The smallest Ritz value has no neighbour below and keeps its residual bound.
    """
    theta = np.asarray(theta, dtype=np.float64)
    res = np.asarray(residuals, dtype=np.float64)
    if bound == "residual" or theta.size == 1:
        return res.copy()
    gap = np.full_like(theta, -np.inf)
    gap[1:] = theta[1:] - np.maximum.accumulate(theta + res)[:-1]
    with np.errstate(divide="ignore"):
        kato_temple = np.where(gap > 0, res**2 / np.where(gap > 0, gap, 1.0), np.inf)
    return np.minimum(res, kato_temple)


def lanczos(
    op: CurvatureOperator,
    k: int = 1,
    *,
    tol: float = 1e-6,
    max_iter: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    bound: str = "residual",
) -> EigenResult:
    r"""The ``k`` largest (algebraic) eigenvalues of a symmetric operator and their eigenvectors.

    Lanczos with full reorthogonalization (Golub & Van Loan 2013, "Matrix Computations", Sec.
    10.1). After step ``m`` the Ritz pairs :math:`(\theta_i, Q s_i)` of
    :math:`T_m = Q_m^\top A Q_m` have residual :math:`r_i = \|A Q s_i - \theta_i Q s_i\| = |\beta_m
    s_{m,i}|` (G&VL eq. 10.1.7). Iteration stops when every top-``k`` eigenvalue is known to relative
    accuracy ``tol``: its error bound (:func:`ritz_error_bounds`) is at most ``tol * max(|theta_i|,
    sqrt(eps) * max_j |theta_j|)``.

    ``bound="residual"`` (default) bounds the error by :math:`r_i`, which also makes the
    eigenvectors accurate (residual :math:`\le` ``tol`` :math:`|\theta_i|`). ``bound="gap"``
    uses the Kato-Temple estimate :math:`\min(r_i, r_i^2/\delta_i)`, :math:`\delta_i = \theta_i -
    \max_{j>i}(\theta_j + r_j)`: a third fewer products when the top eigenvalue is isolated, but
    not a guarantee (it fails on bunched tops, see :func:`ritz_error_bounds`). The bounds are in
    ``EigenResult.errors``.

    Eigenvalues are ordered algebraically (largest first), never by magnitude: a large negative
    eigenvalue is not "top". ``v0`` warm-starts the iteration: a vector ``(P,)`` or a block of
    previous Ritz vectors ``(P, m)`` (their sum starts the Krylov space, so a slowly moving
    spectrum is recovered in about ``k`` + a few products). Lanczos with a single start vector
    finds one vector per eigenspace: a repeated eigenvalue is returned once per direction the
    Krylov space reaches, which in floating point eventually includes its multiplicity.
    """
    n = op.shape[0]
    k = _check_positive_int("k", k)
    if k > n:
        raise BadInput("k", k, f"at most the operator size {n} (number of parameters)")
    tol = _check_tol(tol)
    max_iter = min(n, max(200, 4 * k)) if max_iter is None else _check_positive_int("max_iter", max_iter)
    if max_iter < k:
        raise BadInput("max_iter", max_iter, f"at least k={k}")
    if bound not in BOUNDS:
        raise BadInput("bound", bound, "'residual' (certified) or 'gap' (Kato-Temple estimate)")
    if v0 is None:
        start = _random_unit(n, op.dtype, op.device, generator)
    else:
        if not isinstance(v0, Tensor) or v0.shape[0] != n or v0.ndim not in (1, 2):
            raise BadInput("v0", getattr(v0, "shape", v0), f"a tensor of shape ({n},) or ({n}, m)")
        start = v0.to(dtype=op.dtype, device=op.device)
        start = start.sum(dim=1) if start.ndim == 2 else start
        norm = float(start.norm())  # inf or nan when any entry is not finite
        if not math.isfinite(norm) or norm == 0.0:
            start = _random_unit(n, op.dtype, op.device, generator)
    matvecs_before = op.num_matvecs
    sqrt_eps = math.sqrt(torch.finfo(op.dtype).eps)

    def check(theta: np.ndarray, res: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """Top-k Ritz values (descending), their error bounds, and whether all meet ``tol``."""
        err = ritz_error_bounds(theta, res, bound)[::-1][:k]
        values = theta[::-1][:k]
        floor = sqrt_eps * np.abs(theta).max()
        return values, err, bool(np.all(err <= tol * np.maximum(np.abs(values), floor)))

    def converged(alphas: list[float], betas: list[float]) -> bool:
        if len(alphas) < k:
            return False
        theta, _, res = _ritz(alphas, betas)
        return check(theta, res)[2]

    alpha, beta, basis, last = _lanczos_iterations(op, start, max_iter, generator, stop=converged)
    theta, s, res = _ritz(alpha.tolist(), beta.tolist() + [float(last)])
    values, err, ok = check(theta, res)
    ok = ok or basis.shape[0] == n
    s_top = torch.from_numpy(s[:, ::-1][:, :k].copy())
    vectors = basis.T @ s_top.to(basis.dtype)
    return EigenResult(
        torch.from_numpy(values.copy()),
        vectors,
        torch.from_numpy(res[::-1][:k].copy()),
        op.num_matvecs - matvecs_before,
        ok,
        torch.from_numpy(err.copy()),
    )
