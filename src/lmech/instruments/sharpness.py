r"""Sharpness tracking during training, and the stability threshold it is compared with.

Gradient descent with step size :math:`\eta` on a quadratic of curvature :math:`\lambda` is stable
iff :math:`\lambda < 2/\eta`; Cohen et al. (2021, arXiv 2103.00065, "edge of stability") observe
that the sharpness :math:`\lambda_1(H)` rises to that threshold and hovers there. For adaptive
methods the relevant quantity is the preconditioned sharpness :math:`\lambda_1(P^{-1}H)` and the
threshold :math:`(2+2\beta_1)/((1-\beta_1)\eta)` (Cohen et al. 2022, arXiv 2207.14484, Sec. 2).

:class:`SharpnessTracker` measures the top-``k`` eigenvalues with Lanczos warm-started from the
previous call's Ritz vectors, so that tracking along a trajectory costs a few Hessian-vector
products per measurement; it counts them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._params import num_parameters, trainable_parameters
from lmech.instruments.curvature import (
    BOUNDS,
    HessianOperator,
    PreconditionedOperator,
    check_batch,
    eval_mode,
    lanczos,
    optimizer_preconditioner,
)

__all__ = ["stability_threshold", "SharpnessTracker"]

_ADAPTIVE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)


def stability_threshold(optimizer: torch.optim.Optimizer | None = None, *, lr: float | None = None) -> float:
    r"""The largest (preconditioned) curvature for which the optimizer is stable on a quadratic.

    For a quadratic of curvature :math:`\lambda` (of :math:`P^{-1}H` for adaptive methods, with the
    preconditioner frozen) the update is a linear recurrence; it is stable until a root of its
    characteristic polynomial crosses :math:`-1`, which happens at

    * gradient descent: :math:`2/\eta` (Cohen et al. 2021, arXiv 2103.00065, Sec. 2);
    * SGD, heavy-ball momentum :math:`\mu`, dampening :math:`d`: :math:`(2+2\mu)/((1-d)\eta)`;
      Nesterov: :math:`(2+2\mu)/((1+2\mu)\eta)` (both from the roots of
      :math:`z^2 - (1+\mu-a)z + \mu` and :math:`z^2 - (1+\mu)(1-a)z + \mu(1-a)`, :math:`a=\eta\lambda`);
    * Adam / AdamW: :math:`(2+2\beta_1)/((1-\beta_1)\eta)`, 38/η at β1 = 0.9 (Cohen et al. 2022,
      arXiv 2207.14484, eq. 3); RMSprop with momentum :math:`\mu`: :math:`(2+2\mu)/\eta`.

    :math:`\eta` is ``lr`` when given, else the first parameter group's learning rate (other
    groups' rates are folded into the preconditioner). Weight decay is ignored.
    """
    if optimizer is None:
        if lr is None:
            raise BadInput("lr", lr, "a positive learning rate when no optimizer is given")
    elif not isinstance(optimizer, torch.optim.Optimizer):
        raise BadInput("optimizer", type(optimizer).__name__, "a torch.optim.Optimizer or None")
    eta = float(optimizer.param_groups[0]["lr"]) if lr is None else lr
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta > 0:
        raise BadInput("lr", lr, "a positive learning rate")
    if optimizer is None:
        return 2.0 / eta
    group = optimizer.param_groups[0]
    if isinstance(optimizer, torch.optim.SGD):
        mu, damp = float(group.get("momentum", 0.0)), float(group.get("dampening", 0.0))
        if group.get("nesterov", False):
            return (2 + 2 * mu) / ((1 + 2 * mu) * eta)
        return (2 + 2 * mu) / ((1 - damp) * eta)
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        beta1 = float(group["betas"][0])
        return (2 + 2 * beta1) / ((1 - beta1) * eta)
    if isinstance(optimizer, torch.optim.RMSprop):
        return (2 + 2 * float(group.get("momentum", 0.0))) / eta
    raise BadInput("optimizer", type(optimizer).__name__, "SGD, Adam, AdamW or RMSprop (or lr for plain GD)")


def _aligned(vectors: Tensor, reference: Tensor) -> Tensor:
    """Each column of ``vectors`` with its sign flipped where it points away from ``reference``'s."""
    return torch.where((vectors * reference).sum(0) < 0, -vectors, vectors)


def _has_stepped(optimizer: torch.optim.Optimizer, params: list[Tensor]) -> bool:
    return all(bool(optimizer.state.get(p)) for p in params)


def _lr_ratio_diagonal(optimizer: torch.optim.Optimizer, params: list[Tensor]) -> Tensor | None:
    """For SGD with unequal group rates: :math:`P = \\eta_0/\\eta_g` per parameter, else None."""
    lrs = {float(g["lr"]) for g in optimizer.param_groups}
    if len(lrs) == 1:
        return None
    lr0 = float(optimizer.param_groups[0]["lr"])
    group_lr = {id(p): float(g["lr"]) for g in optimizer.param_groups for p in g["params"]}
    return torch.cat([torch.full((p.numel(),), lr0 / group_lr[id(p)], dtype=p.dtype) for p in params])


class SharpnessTracker:
    r"""Top-``k`` Hessian eigenvalues along a training trajectory, warm-started, HVPs counted.

    Call :meth:`measure` in any loop (GD, SGD, Adam...), or attach the tracker to a
    :class:`~lmech.instruments.monitor.Monitor` as a probe. Each measurement runs
    :func:`~lmech.instruments.curvature.lanczos` (largest *algebraic* eigenvalues to relative
    accuracy ``tol``, certified by the Ritz residual with ``bound="residual"`` (default) or
    estimated by Kato-Temple with ``bound="gap"``, which is unreliable exactly where sharpness is
    tracked, at the edge of stability, where the top eigenvalues bunch; at most ``max_iter``
    products) started from the previous measurement's Ritz vectors, moved along their recent path
    when that path is smooth (``predict``, :meth:`_start`). The batch is validated
    (:func:`~lmech.instruments.curvature.check_batch`) on the first measurement and again only
    when the model, loss or batch objects change. It returns ``{prefix}lambda_1 .. lambda_k``, ``{prefix}threshold`` and
    ``{prefix}ratio`` = λ1/threshold (when an optimizer or ``lr`` is known), ``{prefix}hvps``
    (products used by this measurement) and ``{prefix}converged``.

    ``preconditioned``: ``None`` measures :math:`P^{-1/2}HP^{-1/2}` for Adam, AdamW and RMSprop
    (the preconditioned sharpness of Cohen et al. 2022) and :math:`H` otherwise; ``True`` or
    ``False`` forces it. The model is measured in eval mode; its modes are restored.
    """

    def __init__(
        self,
        k: int = 1,
        *,
        tol: float = 1e-3,
        max_iter: int = 100,
        chunk_size: int | None = None,
        preconditioned: bool | None = None,
        warm_start: bool = True,
        predict: bool = True,
        bound: str = "residual",
        prefix: str = "",
        seed: int = 0,
    ):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise BadInput("k", k, "an integer >= 1")
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < k:
            raise BadInput("max_iter", max_iter, f"an integer >= k={k}")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
            raise BadInput("tol", tol, "a float in (0, 1)")
        if preconditioned not in (None, True, False):
            raise BadInput("preconditioned", preconditioned, "None (automatic), True or False")
        if not isinstance(prefix, str):
            raise BadInput("prefix", prefix, "a string")
        self.k, self.tol, self.max_iter, self.chunk_size = int(k), float(tol), int(max_iter), chunk_size
        if bound not in BOUNDS:
            raise BadInput("bound", bound, "'residual' (certified) or 'gap' (estimate; see curvature.lanczos)")
        self.preconditioned, self.warm_start, self.prefix, self.bound = preconditioned, warm_start, prefix, bound
        self.predict = bool(predict)
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict] = []
        self.total_hvps = 0
        self._trail: list[Tensor] = []  # the last (up to three) measurements' Ritz vectors, newest last
        self._mode: bool | None = None
        self._checked: tuple | None = None  # the (model, loss_fn, inputs, targets) last validated

    def _use_preconditioner(self, optimizer: torch.optim.Optimizer | None) -> bool:
        if self.preconditioned is None:
            return isinstance(optimizer, _ADAPTIVE)
        if self.preconditioned and not isinstance(optimizer, _ADAPTIVE):
            raise BadInput("optimizer", type(optimizer).__name__, "Adam, AdamW or RMSprop when preconditioned=True")
        return self.preconditioned

    def _check_once(self, model, loss_fn, inputs, targets) -> None:
        """:func:`check_batch` on a new batch; skipped when the same objects were validated before."""
        batch = (model, loss_fn, inputs, targets)
        same = self._checked is not None and all(a is b for a, b in zip(batch, self._checked))
        if not (same and inputs.shape == self._shapes[0] and targets.shape == self._shapes[1]):
            check_batch(*batch)
            self._checked, self._shapes = batch, (inputs.shape, targets.shape)

    def measure(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        inputs: Tensor,
        targets: Tensor,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
    ) -> dict:
        """Measure the top-``k`` eigenvalues now; append the record to ``history`` and return it."""
        params = trainable_parameters(model)
        if self.k > num_parameters(params):
            raise BadInput("k", self.k, f"at most the number of trainable parameters {num_parameters(params)}")
        pre = self._use_preconditioner(optimizer)
        known = optimizer is not None or lr is not None
        # an adaptive optimizer's threshold bounds P^{-1}H, not H: no threshold for its plain sharpness
        comparable = pre or not isinstance(optimizer, _ADAPTIVE)
        threshold = stability_threshold(optimizer, lr=lr) if known and comparable else None
        started = time.perf_counter()
        p = self.prefix
        if pre and not _has_stepped(optimizer, params):
            # Adam's P does not exist before its first step: a record of NaNs, not an error mid-training
            record = {f"{p}lambda_{i + 1}": float("nan") for i in range(self.k)}
            record.update({f"{p}hvps": 0, f"{p}converged": False, f"{p}warm": False, f"{p}seconds": 0.0})
            self.history.append(record)
            return record
        with eval_mode(model):
            self._check_once(model, loss_fn, inputs, targets)
            op = HessianOperator(
                model, loss_fn, inputs, targets, chunk_size=self.chunk_size, params=params, check=False
            )
            diag = optimizer_preconditioner(optimizer, params) if pre else None
            if diag is None and optimizer is not None and not pre and lr is None:
                diag = _lr_ratio_diagonal(optimizer, params)
            if diag is not None:
                op = PreconditionedOperator(op, diag)
            v0 = self._start() if (self.warm_start and self._mode == pre) else None
            if v0 is not None and v0.shape[0] != op.shape[0]:
                v0, self._trail = None, []
            result = lanczos(
                op, self.k, tol=self.tol, max_iter=self.max_iter, v0=v0, generator=self.generator, bound=self.bound
            )
        if self._mode != pre:
            self._trail = []
        self._trail, self._mode = (self._trail + [result.vectors.detach()])[-3:], pre
        self.total_hvps += result.num_matvecs
        record = {f"{p}lambda_{i + 1}": float(v) for i, v in enumerate(result.values)}
        if threshold is not None:
            record[f"{p}threshold"] = threshold
            record[f"{p}ratio"] = float(result.values[0]) / threshold
        record[f"{p}hvps"] = result.num_matvecs
        record[f"{p}converged"] = bool(result.converged)
        record[f"{p}warm"] = v0 is not None
        record[f"{p}seconds"] = time.perf_counter() - started
        self.history.append(record)
        return record

    @property
    def vectors(self) -> Tensor | None:
        """The last measurement's Ritz vectors, ``(P, k)``, columns in the order of ``lambda_1..k``
        (orthonormal, flat in the order of the model's trainable parameters); None before the first."""
        return self._trail[-1] if self._trail else None

    def _start(self) -> Tensor | None:
        r"""The warm start: the previous Ritz vectors, moved along their path when it is smooth.

        A predictor step of numerical continuation (Allgower & Georg 1990, "Numerical Continuation
        Methods", Ch. 2): with the last three measurements' Ritz vectors :math:`u_{t-2}, u_{t-1},
        u_t` (signs aligned), the displacements :math:`d_t = u_t - u_{t-1}` and :math:`d_{t-1}` have
        cosine :math:`c`; the start is :math:`u_t + \max(c, 0)\, d_t`. Along a smooth trajectory
        (full-batch gradient descent, :math:`c \approx 1`) this extrapolates the eigenvector's
        drift; along a noisy one (SGD, :math:`c \le 0`) it is the plain warm start :math:`u_t`. Only
        the start vector changes: the answer is still certified by the Lanczos stopping rule.
        """
        if not self._trail:
            return None
        if not self.predict or len(self._trail) < 3:
            return self._trail[-1]
        oldest, older, last = self._trail
        # eigenvectors have no sign: align each column with its successor before differencing
        older = _aligned(older, last)
        oldest = _aligned(oldest, older)
        d_now, d_before = last - older, older - oldest
        cos = (d_now * d_before).sum(0) / (d_now.norm(dim=0) * d_before.norm(dim=0)).clamp_min(1e-30)
        return last + cos.clamp_min(0.0) * d_now

    def __call__(self, context) -> dict:
        """Monitor probe: measure on the context's model, loss, probe batch and optimizer."""
        return self.measure(
            context.model,
            context.loss_fn,
            context.inputs,
            context.targets,
            optimizer=context.optimizer,
            lr=context.lr,
        )
