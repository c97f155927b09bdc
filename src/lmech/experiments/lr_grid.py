r"""A learning-rate sweep of one network, trained as one batched model, and the optimum read from it.

:func:`train_lr_grid` trains K copies of a network that start from the *same* weights and see the *same*
batches and differ only in their learning rate :math:`\eta_k`: TP V's learning-rate curves (Yang et al.
2022, arXiv 2203.03466, Fig. 1) are a family of such runs. The K copies are one model with a leading
axis on every parameter, evaluated with ``torch.func.vmap(functional_call(model, ...))``: one kernel
launch serves the K runs, which at the small widths of a CPU law book (where a step is mostly Python
and dispatch overhead) makes the sweep several times cheaper than K separate runs. Each copy is updated
by the optimizer's own rule with its parameter group's scales from the parametrization's side table
(:class:`lmech.param.ParamTable`):

* SGD: :math:`\theta \leftarrow \theta - \eta_k c\, g` (``c`` the parameter's ``lr_sgd`` scale);
* Adam (Kingma & Ba 2015, arXiv 1412.6980, Algorithm 1, in ``torch.optim.Adam``'s form):
  :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
  :math:`\theta \leftarrow \theta - \frac{\eta_k c}{1-\beta_1^t}\,
  \frac{m}{\sqrt{v/(1-\beta_2^t)} + \epsilon\, e}` (``c`` the ``lr_adam`` scale, ``e`` the ε scale).

The copies are independent: a copy whose loss becomes non-finite (too large a rate) is recorded as
diverged and stops moving; the others go on (tests compare every copy with its own
``torch.optim`` run).

:func:`parabola_optimum` reads the optimal :math:`\log_2\eta` from such a curve as the vertex of a
least-squares parabola in :math:`\log_2\eta` through the grid's best point and its neighbours (the
issue's rule: not the grid's argmin), and says when it cannot (the best point at the grid's edge).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lmech.errors import BadInput
from lmech.param import ParamTable

__all__ = ["LrGridRun", "Optimum", "cross_entropy", "parabola_optimum", "schedule", "train_lr_grid"]

OPTIMIZERS = ("sgd", "adam")


@dataclass
class LrGridRun:
    """What :func:`train_lr_grid` returns.

    ``losses``: (steps, K) training loss of each copy at each step (on that step's batch, before its
    update; NaN after a copy diverged); ``final``: (K,) loss on ``eval_batch`` after the last step
    (``inf`` for a diverged copy; the last training loss when there is no eval batch);
    ``diverged_at``: (K,) first step whose loss was non-finite, −1 for none.
    """

    lrs: np.ndarray
    losses: np.ndarray
    final: np.ndarray
    diverged_at: np.ndarray


def _check(lrs: Sequence[float], steps: int, optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise BadInput("optimizer", optimizer, f"one of {', '.join(OPTIMIZERS)}")
    if not len(lrs) or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in lrs):
        raise BadInput("lrs", lrs, "one or more positive finite learning rates")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise BadInput("steps", steps, "an integer >= 1")


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (..., classes) at integer ``targets`` (...): −mean log softmax[target].

    The same number as ``F.cross_entropy`` written with ``log_softmax`` and ``gather``, which ``vmap`` runs
    directly (``F.cross_entropy`` under ``vmap`` goes through a decomposition that imports SymPy: seconds
    of start-up in a fresh process).
    """
    logp = logits.log_softmax(dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).mean()


def schedule(t: int, steps: int, warmup: float = 0.0, decay: bool = False) -> float:
    """The learning-rate factor of step ``t`` (1-based) of ``steps``: linear warmup over the first
    ``warmup`` fraction of the steps, then constant or (``decay``) linear decay from 1 after the warmup to
    0 at step ``steps + 1``."""
    ramp = max(1, round(warmup * steps)) if warmup > 0 else 0
    if t <= ramp:
        return t / ramp
    if not decay:
        return 1.0
    return (steps + 1 - t) / (steps + 1 - max(ramp, 1))


def train_lr_grid(model: nn.Module, table: ParamTable, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  batches: Callable[[], tuple[torch.Tensor, torch.Tensor]], lrs: Sequence[float], steps: int, *,
                  optimizer: str = "adam", betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                  warmup: float = 0.0, decay: bool = False,
                  eval_batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> LrGridRun:
    """Train ``len(lrs)`` copies of ``model`` (same init, same batches), copy k with base rate ``lrs[k]``.

    ``loss_fn(model(x), y)`` is the loss of a batch; ``batches()`` returns the next ``(x, y)`` (called
    once per step, shared by every copy); ``table`` gives each parameter's learning-rate and ε scales
    (the model's parametrization). ``model`` itself is not modified. Formulas: module docstring.
    """
    _check(lrs, steps, optimizer)
    K = len(lrs)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    params = [p.detach().unsqueeze(0).repeat(K, *([1] * p.ndim)).clone().requires_grad_(True) for _, p in named]
    shapes = [(K,) + (1,) * (p.ndim - 1) for p in params]
    dtype = params[0].dtype
    device = params[0].device  # batches are moved there: the data may live on the CPU
    rates = torch.tensor([float(v) for v in lrs], dtype=dtype, device=device)
    family = "sgd" if optimizer == "sgd" else "adam"
    scales = [table[n].lr(family) for n in names]
    epsilons = [eps * table[n].eps for n in names]
    if optimizer == "adam":
        first = [torch.zeros_like(p) for p in params]
        second = [torch.zeros_like(p) for p in params]
    buffers = dict(model.named_buffers())

    def one(ps: tuple[torch.Tensor, ...], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(torch.func.functional_call(model, (dict(zip(names, ps)), buffers), (x,)), y)

    batched = torch.func.vmap(one, in_dims=(0, None, None))
    alive = torch.ones(K, dtype=torch.bool, device=device)
    losses = np.full((steps, K), np.nan)
    diverged_at = np.full(K, -1, dtype=np.int64)
    beta1, beta2 = betas
    for t in range(1, steps + 1):
        x, y = (t.to(device) for t in batches())
        loss = batched(tuple(params), x, y)
        finite = torch.isfinite(loss.detach())
        diverged_at[(alive & ~finite).cpu().numpy()] = t - 1
        alive &= finite
        losses[t - 1] = np.where(alive.cpu().numpy(), loss.detach().double().cpu().numpy(), np.nan)
        if not alive.any():
            break
        grads = list(torch.autograd.grad(torch.where(alive, loss, 0.0).sum(), params))
        # a diverged copy takes no step: its gradient is zeroed and its rate set to 0
        rate = rates * alive.to(dtype) * schedule(t, steps, warmup, decay)
        with torch.no_grad():
            if not alive.all():
                grads = [torch.nan_to_num(g).mul_(alive.to(dtype).view(s)) for g, s in zip(grads, shapes)]
            if optimizer == "sgd":
                torch._foreach_mul_(grads, [(rate * c).view(s) for c, s in zip(scales, shapes)])
                torch._foreach_sub_(params, grads)
                continue
            torch._foreach_lerp_(first, grads, 1 - beta1)
            torch._foreach_mul_(second, beta2)
            torch._foreach_addcmul_(second, grads, grads, value=1 - beta2)
            # θ -= η c/(1-β1^t) · m/(√(v/(1-β2^t)) + ε) = m / [(√v + ε√(1-β2^t)) / (η c √(1-β2^t)/(1-β1^t))]
            root = math.sqrt(1 - beta2**t)
            denom = torch._foreach_sqrt(second)
            torch._foreach_add_(denom, [e * root for e in epsilons])
            # a rate of 0 makes the denominator infinite: m/∞ = 0, no step (m is finite: gradients were zeroed)
            torch._foreach_div_(denom, [(rate * (c * root / (1 - beta1**t))).view(s) for c, s in zip(scales, shapes)])
            torch._foreach_addcdiv_(params, first, denom, value=-1.0)
    if eval_batch is not None:
        with torch.no_grad():
            final = batched(tuple(params), *(t.to(device) for t in eval_batch)).double().cpu().numpy()
    else:
        final = losses[-1].copy()
    final = np.where((diverged_at >= 0) | ~np.isfinite(final), np.inf, final)
    diverged_at = np.where((diverged_at < 0) & np.isinf(final), steps, diverged_at)
    return LrGridRun(np.asarray(lrs, dtype=float), losses, final, diverged_at)


@dataclass(frozen=True)
class Optimum:
    """The optimum of a loss-vs-log2(lr) curve: ``log2_lr`` (the parabola's vertex), the fitted loss
    there, the grid's best point, and ``edge``: a reason the optimum is not bracketed (else None).

    ``clipped``: the parabola's vertex ``vertex`` = −b/2a lies outside the ``window`` it was fitted on, and
    ``log2_lr`` is the window's end nearest it: the fit's optimum is not bracketed by the points it was fitted
    to (a curve flatter or more skewed than a parabola), so a caller that treats an edge optimum as
    inconclusive treats a clipped one so too (:func:`lmech.experiments.lr_transfer.optima`)."""

    log2_lr: float
    loss: float
    grid_log2_lr: float
    grid_loss: float
    curvature: float
    edge: str | None = None
    clipped: bool = False
    vertex: float = math.nan
    window: tuple[float, float] = (math.nan, math.nan)


def parabola_optimum(log2_lrs: Sequence[float], losses: Sequence[float], *, window: int = 2,
                     log_loss: bool = True) -> Optimum:
    r"""The vertex of a least-squares parabola :math:`a x^2 + b x + c` in :math:`x = \log_2\eta`.

    The fit takes the grid's best point and up to ``window`` finite neighbours on each side (non-finite
    losses, diverged runs, end the window), on :math:`\log` loss when ``log_loss`` (a loss curve spans
    decades near its optimum, and is closer to a parabola in log). The vertex :math:`-b/2a` is clipped to
    the window, and ``clipped`` says so. ``edge`` says why the optimum is not bracketed: the best point is
    the first or last finite point of the grid (the true optimum may lie beyond it), or the fit is not
    convex.
    """
    x = np.asarray(log2_lrs, dtype=float)
    y = np.asarray(losses, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 3 or np.any(np.diff(x) <= 0):
        raise BadInput("log2_lrs", list(x), "at least 3 increasing values, one loss each")
    finite = np.isfinite(y) & ((y > 0) | (not log_loss))
    if not finite.any():
        return Optimum(math.nan, math.nan, math.nan, math.nan, math.nan, "every run diverged")
    best = int(np.argmin(np.where(finite, y, np.inf)))
    grid = Optimum(float(x[best]), float(y[best]), float(x[best]), float(y[best]), math.nan)
    if best == 0 or not finite[best - 1]:
        return Optimum(**{**grid.__dict__, "edge": "the best rate is the grid's smallest"})
    if best == len(x) - 1 or not finite[best + 1]:
        return Optimum(**{**grid.__dict__, "edge": "the best rate is the grid's largest that trained"})
    lo = best
    while lo > 0 and best - lo < window and finite[lo - 1]:
        lo -= 1
    hi = best
    while hi < len(x) - 1 and hi - best < window and finite[hi + 1]:
        hi += 1
    xs, ys = x[lo:hi + 1], y[lo:hi + 1]
    ys = np.log(ys) if log_loss else ys
    a, b, c = np.polyfit(xs, ys, 2)
    if not a > 0:
        return Optimum(**{**grid.__dict__, "curvature": float(a), "edge": "the loss is not convex around its best rate"})
    raw = float(-b / (2 * a))
    vertex = float(np.clip(raw, xs[0], xs[-1]))
    fitted = float(np.polyval([a, b, c], vertex))
    return Optimum(vertex, float(np.exp(fitted)) if log_loss else fitted, float(x[best]), float(y[best]), float(a),
                   clipped=vertex != raw, vertex=raw, window=(float(xs[0]), float(xs[-1])))
