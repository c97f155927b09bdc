r"""Closed-form training dynamics of linearized networks (kernel regression) on the squared loss.

Setting (Lee et al. 2019, arXiv 1902.06720, Sec. 2.2). The linearized network
:math:`f(x) = f_0(x) + J(x)\,(\theta - \theta_0)` with a fixed kernel :math:`K(x, x') = J(x) J(x')^\top`
(the NTK) is trained on n examples :math:`(X, Y)` by gradient descent with learning rate :math:`\eta` on

.. math::  \mathcal L(\theta) = \frac{s}{2}\Big(\lVert f(X) - Y\rVert^2 + \delta\,\lVert\theta-\theta_0\rVert^2\Big),
   \qquad s = \tfrac1n \text{ (``reduction="mean"``, the ½·mean squared error)}, \; s = 1 \text{ (``"sum"``)},

with ridge :math:`\delta \ge 0`. Since :math:`\theta-\theta_0 = J(X)^\top\alpha` stays in the row space of
:math:`J(X)`, the coefficients obey :math:`\alpha \leftarrow \alpha - \eta s\,[(K+\delta I)\alpha - r]`
with :math:`r = Y - f_0(X)`. With :math:`K = K(X,X) = V\,\mathrm{diag}(\lambda)\,V^\top` and
:math:`\mu_i = \lambda_i + \delta`:

.. math::  \alpha_t = V\,\mathrm{diag}\big(g_t(\mu_i)\big)\,V^\top r, \qquad
   g_t(\mu) = \frac{1 - (1 - \eta s\mu)^k}{\mu} \;\text{(GD, step k)}, \qquad
   g_t(\mu) = \frac{1 - e^{-\eta s \mu t}}{\mu} \;\text{(gradient flow, time t in steps)},

.. math::  f_t(X) = f_0(X) + K\alpha_t, \qquad f_t(x) = f_0(x) + K(x, X)\,\alpha_t .

For :math:`\delta = 0` these are Lee et al.'s :math:`f_t(X) = (I - e^{-\eta s K t})Y + e^{-\eta s K t}f_0(X)`
and :math:`f_t(x) = f_0(x) + K(x,X)K^{-1}(I - e^{-\eta s K t})(Y - f_0(X))` (their Sec. 2.2, with their
:math:`\Theta` carrying the factor s of the loss). At :math:`t=\infty`:
:math:`f_\infty(x) = f_0(x) + K(x,X)(K+\delta I)^{-1}(Y - f_0(X))`, kernel ridge regression. Numerically
null modes of K (:math:`\lambda \le 10^{-13}\lambda_{\max}`, δ = 0) are frozen: they change neither
:math:`f_t(X)` nor, for a PSD joint kernel, :math:`f_t(x)`.

Stability: GD converges iff :math:`|1 - \eta s \mu_i| < 1` for all modes, i.e.
:math:`\eta < \eta_{\max} = 2/(s\,\mu_{\max})`: :math:`2n/\lambda_{\max}(K+\delta I)` for the mean,
:math:`2/\lambda_{\max}(K+\delta I)` for the sum (the eigenvalues of the kernel matrix grow ∝ n, those
of :math:`K/n` do not). Time: GD step k is gradient-flow time :math:`t = k` in these units, i.e.
:math:`\eta k` in units of the flow :math:`\dot\theta = -\nabla\mathcal L`.

Infinite ensembles (Lee et al. 2019, Sec. 2.3.1, eqs. (15)-(16)): for infinitely wide networks
:math:`f_0 \sim \mathcal{GP}(0, \mathcal K)` (the NNGP) and K = Θ (the NTK) is deterministic, so
:math:`f_t(x) = \Theta(x,X)A_tY + f_0(x) - \Theta(x,X)A_t f_0(X)` with
:math:`A_t = V\mathrm{diag}(g_t)V^\top` is Gaussian with

.. math::  \mu_t(x) = \Theta(x,X)A_tY, \qquad
   \Sigma_t(x,x') = \mathcal K(x,x') - B\,\mathcal K(X,x') - \mathcal K(x,X)B'^\top
   + B\,\mathcal K(X,X)\,B'^\top, \quad B = \Theta(x,X)A_t .
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lmech.errors import BadInput

__all__ = [
    "loss_scale",
    "max_stable_lr",
    "LinearizedPredictions",
    "linearized_predictions",
    "EnsemblePredictions",
    "ensemble_predictions",
]

_NULL = 1e-13  # eigenvalues below _NULL·λ_max of a ridgeless kernel are treated as exactly zero


def loss_scale(n: int, reduction: str = "mean") -> float:
    """The factor s of the module docstring: 1/n for the ½·mean squared error, 1 for the ½·sum."""
    if reduction not in ("mean", "sum"):
        raise BadInput("reduction", reduction, "'mean' (½·mean squared error) or 'sum' (½·sum)")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise BadInput("n", n, "a positive number of training examples")
    return 1.0 / n if reduction == "mean" else 1.0


def _tensor(name: str, value, ndim: tuple[int, ...]) -> Tensor:
    try:
        t = value.detach().to("cpu", torch.float64) if isinstance(value, Tensor) else torch.as_tensor(
            np.array(value, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise BadInput(name, type(value).__name__, "an array or tensor of numbers") from err
    if t.ndim not in ndim:
        raise BadInput(name, tuple(t.shape), f"an array with {' or '.join(map(str, ndim))} dimensions")
    if not torch.isfinite(t).all():
        raise BadInput(name, "non-finite entries", "finite values")
    return t


def _train_kernel(name: str, k) -> Tensor:
    k = _tensor(name, k, (2,))
    if k.shape[0] != k.shape[1] or k.shape[0] < 1:
        raise BadInput(name, tuple(k.shape), "a square (n, n) kernel matrix of the training points")
    if not torch.allclose(k, k.T, rtol=1e-10, atol=1e-12 * float(k.abs().max())):
        raise BadInput(name, "asymmetric matrix", "a symmetric kernel matrix")
    return (k + k.T) / 2


def _ridge(ridge: float) -> float:
    if isinstance(ridge, bool) or not isinstance(ridge, numbers.Real) or not (math.isfinite(ridge) and ridge >= 0):
        raise BadInput("ridge", ridge, "a finite number >= 0")
    return float(ridge)


def _lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
        raise BadInput("lr", lr, "a finite learning rate > 0")
    return float(lr)


def _times(t, dynamics: str) -> tuple[Tensor, bool]:
    if dynamics not in ("flow", "gd"):
        raise BadInput("dynamics", dynamics, "'flow' (gradient flow) or 'gd' (gradient descent steps)")
    scalar = np.ndim(t) == 0
    times = torch.as_tensor(np.atleast_1d(np.asarray(t, dtype=np.float64)))
    if times.ndim != 1 or torch.isnan(times).any() or torch.any(times < 0):
        raise BadInput("t", t, "a time >= 0 or a 1-D array of them (math.inf for the limit)")
    finite = times[torch.isfinite(times)]
    if dynamics == "gd" and torch.any(finite != torch.round(finite)):
        raise BadInput("t", t, "whole numbers of steps for dynamics='gd'")
    return times, scalar


def _filter(mu: Tensor, null: Tensor, times: Tensor, step: float, dynamics: str) -> Tensor:
    """g_t(μ) of the module docstring, shape (T, n); `step` = η·s."""
    t = times[:, None]
    mu_safe = torch.where(null, torch.ones_like(mu), mu)
    x = step * mu_safe
    if dynamics == "flow":
        decay = torch.where(torch.isinf(t), torch.ones_like(t * x), -torch.expm1(-x * torch.where(
            torch.isinf(t), torch.zeros_like(t), t)))
    else:
        small = x.abs() < 0.5
        t_fin = torch.where(torch.isinf(t), torch.zeros_like(t), t)
        via_log = -torch.expm1(t_fin * torch.log1p(-torch.where(small, x, torch.zeros_like(x))))
        direct = 1 - torch.pow(1 - x, t_fin)
        decay = torch.where(small, via_log, direct)
        limit = torch.where((1 - x).abs() < 1, torch.ones_like(x), torch.full_like(x, math.nan))
        decay = torch.where(torch.isinf(t), limit.expand_as(decay), decay)
    g = decay / mu_safe
    return torch.where(null, torch.zeros_like(g), g)


@dataclass
class _Eigen:
    lam: Tensor
    vec: Tensor
    null: Tensor


def _eigen(k: Tensor, ridge: float) -> _Eigen:
    lam, vec = torch.linalg.eigh(k)
    lam = torch.clamp(lam, min=0.0)  # a PSD kernel's round-off negatives
    if ridge > 0:
        null = torch.zeros_like(lam, dtype=torch.bool)
    else:
        null = lam <= _NULL * max(float(lam.max()), 1e-300)
    return _Eigen(lam, vec, null)


def max_stable_lr(k_train, reduction: str = "mean", ridge: float = 0.0) -> float:
    r"""Largest stable GD learning rate :math:`\eta_{\max} = 2/(s\,\lambda_{\max}(K+\delta I))`.

    ``s = 1/n`` for ``reduction="mean"`` (so :math:`\eta_{\max} = 2n/\lambda_{\max}`), 1 for ``"sum"``
    (module docstring: the stability condition |1 - η s μ_i| < 1 of GD on the quadratic loss of the
    linearized model, Lee et al. 2019, arXiv 1902.06720, Sec. 2.2).
    """
    k = _train_kernel("k_train", k_train)
    scale = loss_scale(k.shape[0], reduction)
    top = float(torch.linalg.eigvalsh(k)[-1]) + _ridge(ridge)
    if top <= 0:
        raise BadInput("k_train", "zero kernel", "a kernel with a positive eigenvalue")
    return 2.0 / (scale * top)


@dataclass(frozen=True)
class LinearizedPredictions:
    """Mean predictions f_t on the training points, shape (T, n[, c]) (no T for a scalar t), and on the
    test points, shape (T, m[, c]) or None."""

    train: Tensor
    test: Tensor | None


def _targets(y, n_rows: int | None = None, name: str = "y_train") -> Tensor:
    y = _tensor(name, y, (1, 2))
    if n_rows is not None and y.shape[0] != n_rows:
        raise BadInput(name, tuple(y.shape), f"{n_rows} rows (one per training point)")
    return y


def _like(name: str, value, shape: tuple[int, ...]) -> Tensor:
    if value is None:
        return torch.zeros(shape, dtype=torch.float64)
    t = _tensor(name, value, (len(shape),))
    if tuple(t.shape) != shape:
        raise BadInput(name, tuple(t.shape), f"shape {shape}")
    return t


def _cross(name: str, value, n: int) -> Tensor:
    k = _tensor(name, value, (2,))
    if k.shape[1] != n:
        raise BadInput(name, tuple(k.shape), f"shape (m, {n}): test points × training points")
    return k


def _apply(eig: _Eigen, g: Tensor, r: Tensor) -> Tensor:
    """A_t r = V diag(g_t) Vᵀ r for every time: (T, n[, c])."""
    coeff = eig.vec.T @ (r if r.ndim == 2 else r[:, None])            # (n, c)
    alpha = torch.einsum("ij,tj,jc->tic", eig.vec, g, coeff)          # (T, n, c)
    return alpha if r.ndim == 2 else alpha[..., 0]


def linearized_predictions(k_train, y_train, t, lr: float, *, k_test_train=None, f0_train=None, f0_test=None,
                           ridge: float = 0.0, dynamics: str = "flow",
                           reduction: str = "mean") -> LinearizedPredictions:
    r"""Predictions :math:`f_t` of the linearized network / kernel regression (module docstring).

    ``k_train`` (n, n) is the fixed kernel (e.g. the NTK) on the training points, ``y_train`` (n,) or
    (n, c), ``t`` a time or 1-D array of times (GD steps for ``dynamics="gd"``, gradient-flow time in
    the same units for ``"flow"``; ``math.inf`` for the limit), ``lr`` the learning rate η.
    ``k_test_train`` (m, n) adds test predictions; ``f0_train``/``f0_test`` are the outputs at
    initialization (default 0, the mean over initializations). ``ridge`` δ and ``reduction`` as in the
    module docstring. For GD at t = ∞ modes with :math:`|1 - \eta s\mu| \ge 1` give NaN (no limit).
    """
    k = _train_kernel("k_train", k_train)
    n = k.shape[0]
    y = _targets(y_train, n)
    ridge, step = _ridge(ridge), _lr(lr) * loss_scale(n, reduction)
    times, scalar = _times(t, dynamics)
    f0 = _like("f0_train", f0_train, tuple(y.shape))
    kx = None if k_test_train is None else _cross("k_test_train", k_test_train, n)
    f0x = None if kx is None else _like("f0_test", f0_test, (kx.shape[0],) + tuple(y.shape[1:]))
    eig = _eigen(k, ridge)
    alpha = _apply(eig, _filter(eig.lam + ridge, eig.null, times, step, dynamics), y - f0)
    train = f0 + torch.einsum("ij,tj...->ti...", k, alpha)
    test = None if kx is None else f0x + torch.einsum("ij,tj...->ti...", kx, alpha)
    if scalar:
        train, test = train[0], None if test is None else test[0]
    return LinearizedPredictions(train, test)


@dataclass(frozen=True)
class EnsemblePredictions:
    """Mean and covariance over initializations of infinitely wide networks trained to time t.

    ``mean_train`` (T, n[, c]), ``cov_train`` (T, n, n) (identical for every output), and the same on
    the test points (None when no test kernels were given); no T axis for a scalar t.
    """

    mean_train: Tensor
    cov_train: Tensor
    mean_test: Tensor | None
    cov_test: Tensor | None


def _covariance(b: Tensor, k_train_points: Tensor, k_train: Tensor, k_points: Tensor) -> Tensor:
    """K(a,a) - B K(X,a) - K(a,X) Bᵀ + B K(X,X) Bᵀ at each time; B (T, m, n), K(X,a) (n, m)."""
    cross = b @ k_train_points                                       # (T, m, m)
    return k_points - cross - cross.transpose(1, 2) + b @ k_train @ b.transpose(1, 2)


def ensemble_predictions(nngp_train, ntk_train, y_train, t, lr: float, *, nngp_test_train=None,
                         ntk_test_train=None, nngp_test=None, ridge: float = 0.0, dynamics: str = "flow",
                         reduction: str = "mean") -> EnsemblePredictions:
    r"""Infinite-ensemble mean and covariance of linearized networks (Lee et al. 2019, eqs. (15)-(16)).

    ``nngp_train``, ``ntk_train`` (n, n); ``y_train`` (n,) or (n, c); times, ``lr``, ``ridge``,
    ``dynamics``, ``reduction`` as in :func:`linearized_predictions`. Test statistics need
    ``nngp_test_train`` and ``ntk_test_train`` (m, n) and ``nngp_test`` (m, m). Formulas in the module
    docstring; on the training points B = Θ(X,X) A_t.
    """
    nngp, ntk = _train_kernel("nngp_train", nngp_train), _train_kernel("ntk_train", ntk_train)
    n = ntk.shape[0]
    if nngp.shape != ntk.shape:
        raise BadInput("nngp_train", tuple(nngp.shape), f"the shape of ntk_train {tuple(ntk.shape)}")
    y = _targets(y_train, n)
    ridge, step = _ridge(ridge), _lr(lr) * loss_scale(n, reduction)
    times, scalar = _times(t, dynamics)
    given = [v is not None for v in (nngp_test_train, ntk_test_train, nngp_test)]
    if any(given) and not all(given):
        raise BadInput("nngp_test_train, ntk_test_train, nngp_test", given, "all three or none")
    eig = _eigen(ntk, ridge)
    g = _filter(eig.lam + ridge, eig.null, times, step, dynamics)
    a_t = torch.einsum("ij,tj,kj->tik", eig.vec, g, eig.vec)          # (T, n, n)
    b_train = ntk @ a_t
    mean_train = torch.einsum("tij,j...->ti...", b_train, y)
    cov_train = _covariance(b_train, nngp, nngp, nngp)
    mean_test = cov_test = None
    if all(given):
        kx, tx = _cross("nngp_test_train", nngp_test_train, n), _cross("ntk_test_train", ntk_test_train, n)
        if kx.shape != tx.shape:
            raise BadInput("ntk_test_train", tuple(tx.shape), f"the shape of nngp_test_train {tuple(kx.shape)}")
        kxx = _tensor("nngp_test", nngp_test, (2,))
        if tuple(kxx.shape) != (kx.shape[0], kx.shape[0]):
            raise BadInput("nngp_test", tuple(kxx.shape), f"shape ({kx.shape[0]}, {kx.shape[0]})")
        b_test = tx @ a_t
        mean_test = torch.einsum("tij,j...->ti...", b_test, y)
        cov_test = _covariance(b_test, kx.T, nngp, kxx)
    if scalar:
        mean_train, cov_train = mean_train[0], cov_train[0]
        mean_test = None if mean_test is None else mean_test[0]
        cov_test = None if cov_test is None else cov_test[0]
    return EnsemblePredictions(mean_train, cov_train, mean_test, cov_test)
