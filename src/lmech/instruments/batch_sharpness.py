r"""Batch sharpness: the curvature of the minibatch loss along the minibatch gradient, averaged over batches.

Andreyev & Beneventano 2024 ("Edge of Stochastic Stability", arXiv 2412.20553, Sec. 3, Definition 1):
for the loss :math:`L_B` of a minibatch :math:`B` of :math:`b` examples, with gradient
:math:`g_B = \nabla L_B(\theta)` and Hessian :math:`H_B = \nabla^2 L_B(\theta)`,

.. math:: \operatorname{BS}(\theta) = \mathbb{E}_B\left[\frac{g_B^\top H_B\, g_B}{\|g_B\|^2}\right],

the expectation over the batches SGD draws (``b`` distinct examples, uniformly). SGD's step on
:math:`L_B` is :math:`-\eta g_B`; the quotient is the curvature of :math:`L_B` along that step, so
:math:`L_B` itself decreases along the step (to second order) iff it is below :math:`2/\eta`. Under
SGD with step :math:`\eta` the batch sharpness rises to :math:`2/\eta` and stays there (the edge of
stochastic stability), while the full-batch :math:`\lambda_{\max}` stays below it.

Each batch costs one gradient (with its graph) and one Hessian-vector product
:math:`H_B g_B` (Pearlmutter 1994, eq. 3: the derivative of :math:`g_B^\top \mathrm{sg}(g_B)`).
The expectation is estimated by Monte Carlo over independently drawn batches; the estimate comes
with its standard error, std/√m over the m batches' quotients (the quotients are i.i.d. given θ).
``rel_tol`` adds batches until the standard error is below ``rel_tol`` times the estimate
(Andreyev & Beneventano's estimator stops at a relative error of 0.5%), which biases the
estimate by a fraction of its standard error (a sequential stopping rule; not used by lmech's law).

:func:`batch_sharpness` measures it once; :class:`BatchSharpnessProbe` is the same for a
:class:`~lmech.instruments.monitor.Monitor` (threshold 2/η and ratio for plain SGD).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._mode import measuring
from lmech.instruments._params import flatten, trainable_parameters
from lmech.instruments.curvature import check_batch

__all__ = ["BatchSharpness", "BatchSharpnessProbe", "batch_rayleigh_quotient", "batch_sharpness"]


@dataclass
class BatchSharpness:
    r"""A batch-sharpness estimate: ``value`` = mean of the per-batch quotients
    :math:`g_B^\top H_B g_B/\|g_B\|^2` (``quotients``), ``std_error`` its Monte Carlo standard error
    (NaN with one batch; 0 when ``exact``: every batch enumerated), ``num_batches`` the batches used
    (batches whose gradient is exactly zero have no quotient: counted in ``zero_gradient``, left out)."""

    value: float
    std_error: float
    num_batches: int
    batch_size: int
    quotients: np.ndarray = field(repr=False)
    zero_gradient: int = 0
    exact: bool = False

    @property
    def hvps(self) -> int:
        """Hessian-vector products used (one per batch)."""
        return self.num_batches + self.zero_gradient


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise BadInput(name, value, f"an integer >= {low}")
    return int(value)


def batch_rayleigh_quotient(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor,
    *, params: list[Tensor] | None = None,
) -> tuple[float, float]:
    r""":math:`(g_B^\top H_B g_B,\ \|g_B\|^2)` of the loss on one batch ``(inputs, targets)``: one
    gradient with its graph and one Hessian-vector product. The model is used as it is (callers put
    it in eval mode: :func:`batch_sharpness` does)."""
    params = trainable_parameters(model) if params is None else params
    with torch.enable_grad():
        loss = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        used = [(g, p) for g, p in zip(grads, params) if g is not None]
        g = flatten([gi for gi, _ in used])
        direction = g.detach()
        gg = float(direction @ direction)
        if gg == 0.0 or not g.requires_grad:  # zero gradient, or a loss linear in θ (zero Hessian)
            return 0.0, gg
        hg = torch.autograd.grad(g @ direction, [p for _, p in used], allow_unused=True)
        hg = flatten([torch.zeros_like(p) if h is None else h for h, (_, p) in zip(hg, used)])
    return float(direction @ hg), gg


def batch_sharpness(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    batch_size: int | None = None,
    *,
    num_batches: int = 32,
    rel_tol: float | None = None,
    max_batches: int = 500,
    batches: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> BatchSharpness:
    r"""Estimate the batch sharpness :math:`\mathbb{E}_B[g_B^\top H_B g_B/\|g_B\|^2]` on the data
    ``(inputs, targets)`` (the training set SGD draws its batches from; ``loss_fn`` averages over
    a batch's examples).

    ``num_batches`` batches of ``batch_size`` distinct examples are drawn uniformly (as SGD draws
    them: a random permutation's first ``batch_size`` indices), independently of each other, from
    ``generator`` (not the global RNG). With ``rel_tol``, more batches are drawn (up to
    ``max_batches``) until ``std_error <= rel_tol * |value|``. ``batches``: an ``(m, b)`` tensor of
    example indices instead, one row per batch (every ``b``-subset enumerated gives the exact
    expectation: ``exact=True`` is then the caller's to judge; ``std_error`` is the sampling error as
    if the rows were drawn). A batch size equal to the data size gives the full-batch quotient
    :math:`g^\top H g/\|g\|^2` (one batch, exact).

    The model is evaluated in eval mode with differentiable attention, its modes restored
    (:mod:`lmech.instruments._mode`).
    """
    check_batch(model, loss_fn, inputs, targets)
    n = inputs.shape[0]
    if batches is not None:
        if not isinstance(batches, Tensor) or batches.ndim != 2 or batches.shape[0] < 1 or batches.dtype in (
            torch.float16, torch.float32, torch.float64, torch.bool
        ):
            raise BadInput("batches", getattr(batches, "shape", batches), "an (m, b) integer tensor of example indices")
        if int(batches.min()) < 0 or int(batches.max()) >= n:
            raise BadInput("batches", f"indices in [{int(batches.min())}, {int(batches.max())}]",
                           f"indices in [0, {n - 1}] (the data has {n} examples)")
        if batch_size is not None and batch_size != batches.shape[1]:
            raise BadInput("batch_size", batch_size, f"None or the batches' width {batches.shape[1]}")
        b = batches.shape[1]
    else:
        if batch_size is None:
            raise BadInput("batch_size", batch_size, "the minibatch size (or give batches=)")
        b = _check_int("batch_size", batch_size, 1)
        if b > n:
            raise BadInput("batch_size", b, f"at most the number of examples {n}")
        num_batches = _check_int("num_batches", num_batches, 1)
        max_batches = _check_int("max_batches", max_batches, num_batches)
        if rel_tol is not None and (isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float))
                                    or not 0 < rel_tol < 1):
            raise BadInput("rel_tol", rel_tol, "None or a float in (0, 1)")
    params = trainable_parameters(model)
    device = inputs.device
    full = batches is None and b == n
    quotients: list[float] = []
    zero = 0
    with measuring(model):
        k = 0
        while True:
            if batches is not None:
                if k == batches.shape[0]:
                    break
                idx = batches[k].to(device)
            elif full:
                idx = None
            else:
                done = len(quotients) + zero
                if done >= max_batches or (done >= num_batches and (
                        rel_tol is None or _sem(quotients) <= rel_tol * abs(np.mean(quotients)))):
                    break
                idx = torch.randperm(n, generator=generator)[:b].to(device)
            x, y = (inputs, targets) if idx is None else (inputs[idx], targets[idx])
            ghg, gg = batch_rayleigh_quotient(model, loss_fn, x, y, params=params)
            if gg > 0.0:
                quotients.append(ghg / gg)
            else:
                zero += 1
            k += 1
            if full:
                break
    q = np.asarray(quotients, dtype=np.float64)
    value = float(q.mean()) if len(q) else math.nan
    exact = full
    return BatchSharpness(value, 0.0 if exact else _sem(quotients), len(q), b, q, zero, exact)


def _sem(values) -> float:
    """Standard error of the mean of ``values`` (NaN for fewer than two)."""
    m = len(values)
    return float(np.std(values, ddof=1) / math.sqrt(m)) if m > 1 else math.nan


class BatchSharpnessProbe:
    r"""Monitor probe: the batch sharpness of batches of ``batch_size`` drawn from the monitor's probe
    batch (pass the training set, from which SGD draws).

    Returns ``{prefix}batch_sharpness``, ``..._se`` (its standard error), ``..._batches`` and, when
    the threshold is known (plain SGD: ``lr`` given, or ``torch.optim.SGD`` without momentum, whose
    first group's rate is η), ``{prefix}batch_sharpness_threshold`` = 2/η and
    ``{prefix}batch_sharpness_ratio``. With momentum or an adaptive optimizer the quantity that
    equilibrates is another one (Andreyev & Beneventano, Sec. 7): no threshold is given. Batches are
    drawn from the probe's own generator (seeded by ``seed``), so attaching it changes nothing in
    the training loop.
    """

    def __init__(self, batch_size: int, *, num_batches: int = 32, rel_tol: float | None = None,
                 max_batches: int = 500, seed: int = 0, prefix: str = ""):
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.num_batches = _check_int("num_batches", num_batches, 1)
        self.max_batches = _check_int("max_batches", max_batches, self.num_batches)
        if rel_tol is not None and (isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float))
                                    or not 0 < rel_tol < 1):
            raise BadInput("rel_tol", rel_tol, "None or a float in (0, 1)")
        if not isinstance(prefix, str):
            raise BadInput("prefix", prefix, "a string")
        self.rel_tol, self.prefix = rel_tol, prefix
        self.generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def threshold(optimizer: torch.optim.Optimizer | None, lr: float | None) -> float | None:
        """2/η for plain SGD (``lr`` or an SGD optimizer without momentum), else None."""
        if lr is not None:
            return 2.0 / float(lr)
        if isinstance(optimizer, torch.optim.SGD):
            group = optimizer.param_groups[0]
            if not group.get("momentum", 0.0) and len({float(g["lr"]) for g in optimizer.param_groups}) == 1:
                return 2.0 / float(group["lr"])
        return None

    def __call__(self, context) -> dict:
        est = batch_sharpness(context.model, context.loss_fn, context.inputs, context.targets, self.batch_size,
                              num_batches=self.num_batches, rel_tol=self.rel_tol, max_batches=self.max_batches,
                              generator=self.generator)
        p = f"{self.prefix}batch_sharpness"
        out = {p: est.value, f"{p}_se": est.std_error, f"{p}_batches": est.num_batches}
        threshold = self.threshold(context.optimizer, context.lr)
        if threshold is not None:
            out[f"{p}_threshold"] = threshold
            out[f"{p}_ratio"] = est.value / threshold
        return out
