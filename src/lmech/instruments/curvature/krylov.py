r"""The Lanczos process: an orthonormal Krylov basis of a symmetric operator, its tridiagonal
:math:`T = Q^\top A Q` and the Ritz pairs of :math:`T` (Golub & Van Loan 2013, Sec. 10.1). Shared by the
top-k eigensolver (:mod:`.eigensolver`) and stochastic Lanczos quadrature (:mod:`.density`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import torch
from torch import Tensor

from lmech.instruments.curvature.operators import CurvatureOperator


def _random_unit(size: int, dtype, device, generator: torch.Generator | None) -> Tensor:
    v = torch.randn(size, dtype=torch.float64, generator=generator).to(dtype=dtype, device=device)
    return v / v.norm()


def _orthogonalize(w: Tensor, basis: Tensor) -> tuple[Tensor, float]:
    r"""Classical Gram-Schmidt against the rows of ``basis``, repeated once when it cancelled much.

    A second pass is taken when the first left less than :math:`1/\sqrt2` of the norm (Daniel,
    Gragg, Kaufman & Stewart 1976, Math. Comp. 30(136); "twice is enough", Giraud et al. 2005).
    Returns the orthogonalized ``w`` (updated in place) and its norm.
    """
    before = float(torch.linalg.vector_norm(w))
    if basis.shape[0] == 0:
        return w, before
    w = torch.addmv(w, basis.T, basis @ w, alpha=-1.0)
    after = float(torch.linalg.vector_norm(w))
    if after < 0.7071 * before:
        w = torch.addmv(w, basis.T, basis @ w, alpha=-1.0)
        after = float(torch.linalg.vector_norm(w))
    return w, after


def _lanczos_iterations(
    op: CurvatureOperator,
    start: Tensor,
    max_steps: int,
    generator: torch.Generator | None,
    stop: Callable[[list[float], list[float]], bool] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Lanczos with full reorthogonalization (Golub & Van Loan 2013, Alg. 10.1.1).

    Returns ``(alpha, beta, basis, last_beta)``: the diagonal and off-diagonal of the tridiagonal
    :math:`T = Q^\\top A Q` (float64), the orthonormal basis ``Q`` as rows, and the final
    :math:`\\beta_m` that sets the Ritz residuals :math:`|\\beta_m s_{m,i}|`. ``stop(alphas, betas)``
    (Python lists; ``betas[-1]`` is :math:`\\beta_m`) is asked after every step. An invariant
    subspace (breakdown, :math:`\\beta = 0`) is continued with a fresh random direction, so the
    basis keeps growing up to ``P``.
    """
    n = op.shape[0]
    max_steps = min(max_steps, n)
    basis = torch.empty(max_steps, n, dtype=op.dtype, device=op.device)
    alphas: list[float] = []
    betas: list[float] = []
    torch.div(start, start.norm(), out=basis[0])
    scale = 0.0
    for j in range(max_steps):
        q = basis[j]
        w = op @ q
        alpha = float(torch.dot(q, w))
        # three-term recurrence, then full reorthogonalization against every previous vector
        w = w.sub_(q, alpha=alpha) if j == 0 else w.sub_(q, alpha=alpha).sub_(basis[j - 1], alpha=betas[-1])
        w, beta = _orthogonalize(w, basis[: j + 1])
        alphas.append(alpha)
        scale = max(scale, abs(alpha), beta)
        if j == max_steps - 1:
            betas.append(beta)
            break
        if beta <= 1e-12 * max(scale, 1e-300):  # invariant subspace: restart, T splits into blocks
            betas.append(0.0)
            fresh, norm = _orthogonalize(_random_unit(n, op.dtype, op.device, generator), basis[: j + 1])
            torch.div(fresh, norm, out=basis[j + 1])
        else:
            betas.append(beta)
            torch.div(w, beta, out=basis[j + 1])  # the next Lanczos vector, written in place
        if stop is not None and stop(alphas, betas):
            break
    m = len(alphas)
    return (
        torch.tensor(alphas, dtype=torch.float64),
        torch.tensor(betas[: m - 1], dtype=torch.float64),
        basis[:m],
        torch.tensor(betas[m - 1], dtype=torch.float64),
    )


def _tridiagonal(alpha: Tensor, beta: Tensor) -> Tensor:
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)


def _ritz(alphas: Sequence[float], betas: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ritz values (ascending), the eigenvectors ``S`` of ``T`` (columns) and the residuals
    :math:`|\\beta_m s_{m,i}|`, from the Lanczos coefficients (``betas[m-1]`` = :math:`\\beta_m`)."""
    m = len(alphas)
    if m == 1:
        return np.array(alphas, dtype=np.float64), np.ones((1, 1)), np.abs(np.array(betas[:1], dtype=np.float64))
    # LAPACK dstev directly: scipy.linalg.eigh_tridiagonal's checks cost more than the solve here
    theta, s, info = scipy.linalg.lapack.dstev(
        np.asarray(alphas, dtype=np.float64), np.asarray(betas[: m - 1], dtype=np.float64), compute_v=1
    )
    if info != 0:  # pragma: no cover - dstev fails only on non-finite input
        theta, s = np.linalg.eigh(np.diag(alphas) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1))
    return theta, s, np.abs(betas[m - 1] * s[-1])
