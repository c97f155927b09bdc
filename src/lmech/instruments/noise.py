r"""The gradient noise scale :math:`B_\text{simple} = \operatorname{tr}\Sigma / |G|^2`.

McCandlish, Kaplan, Amodei et al. 2018, "An empirical model of large-batch training" (arXiv
1812.06162): :math:`G` is the full-batch gradient and :math:`\Sigma` the covariance of
per-example gradients; :math:`B_\text{simple}` (Sec. 2.2) predicts the critical batch size. A
minibatch gradient :math:`G_B` of :math:`B` examples drawn independently satisfies

.. math:: \mathbb{E}|G_B|^2 = |G|^2 + \frac{1}{B}\operatorname{tr}\Sigma,

so norms at two batch sizes :math:`B_s < B_b` give unbiased estimates (Appendix A.1)

.. math::
    |\mathcal{G}|^2 = \frac{B_b |G_{B_b}|^2 - B_s |G_{B_s}|^2}{B_b - B_s}, \qquad
    \mathcal{S} = \frac{|G_{B_s}|^2 - |G_{B_b}|^2}{1/B_s - 1/B_b},

and :math:`B_\text{simple} \approx \mathcal{S}/|\mathcal{G}|^2`, averaging numerator and
denominator over many batches before taking the ratio (the ratio of averages is consistent; each
average is unbiased).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._mode import check_examples_independent, eval_mode
from lmech.instruments._params import flatten, trainable_parameters
from lmech.instruments.curvature import check_batch

__all__ = ["NoiseScale", "noise_scale_from_norms", "gradient_noise_scale", "exact_noise_scale"]


@dataclass
class NoiseScale:
    """``b_simple = trace_sigma / grad_sq`` with standard errors of the two averaged estimates."""

    b_simple: float
    grad_sq: float
    trace_sigma: float
    grad_sq_se: float = float("nan")
    trace_sigma_se: float = float("nan")
    num_batches: int = 0


def _check_sizes(b_small: object, b_big: object) -> tuple[int, int]:
    for name, b in (("b_small", b_small), ("b_big", b_big)):
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise BadInput(name, b, "a batch size, an integer >= 1")
    if not b_small < b_big:
        raise BadInput("b_big", b_big, f"a batch size larger than b_small={b_small}")
    return int(b_small), int(b_big)


def noise_scale_from_norms(sq_norm_small, sq_norm_big, b_small: int, b_big: int) -> NoiseScale:
    r"""Unbiased :math:`|\mathcal G|^2` and :math:`\mathcal S` from squared gradient norms
    (McCandlish et al. 2018, Appendix A.1), then :math:`B_\text{simple}`.

    ``sq_norm_small`` and ``sq_norm_big`` are :math:`|G_{B_s}|^2` and :math:`|G_{B_b}|^2`, floats or
    equal-length sequences (one pair per draw); the estimates are averaged over draws.
    """
    b_small, b_big = _check_sizes(b_small, b_big)
    small = np.atleast_1d(np.asarray(sq_norm_small, dtype=np.float64))
    big = np.atleast_1d(np.asarray(sq_norm_big, dtype=np.float64))
    if small.shape != big.shape or small.ndim != 1:
        raise BadInput("sq_norm_big", big.shape, f"the shape of sq_norm_small {small.shape}")
    g2 = (b_big * big - b_small * small) / (b_big - b_small)
    s = (small - big) / (1.0 / b_small - 1.0 / b_big)
    m = small.size

    def se(x: np.ndarray) -> float:
        return float(x.std(ddof=1) / math.sqrt(m)) if m > 1 else float("nan")

    return NoiseScale(float(s.mean() / g2.mean()), float(g2.mean()), float(s.mean()), se(g2), se(s), m)


def _grad(model: nn.Module, loss_fn, params: list[Tensor], x: Tensor, y: Tensor) -> Tensor:
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(model(x), y), params, allow_unused=True)
    return flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])


def gradient_noise_scale(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    b_small: int,
    b_big: int,
    *,
    num_batches: int = 10,
    generator: torch.Generator | None = None,
) -> NoiseScale:
    r"""Estimate :math:`B_\text{simple}` on the data ``(inputs, targets)`` from two batch sizes.

    ``num_batches`` times, draw a batch of ``b_small`` and one of ``b_big`` examples uniformly
    *with replacement* (so that :math:`\mathbb{E}|G_B|^2 = |G|^2 + \operatorname{tr}\Sigma/B`
    holds exactly for the empirical distribution) and apply :func:`noise_scale_from_norms`.
    ``loss_fn`` must average over examples. The model is evaluated in eval mode and its modes are
    restored (the instruments' policy, :mod:`lmech.instruments._mode`: :math:`\Sigma` is the spread
    of the data's gradients, not of dropout masks); indices are drawn from ``generator``, not the
    global RNG.
    """
    b_small, b_big = _check_sizes(b_small, b_big)
    if isinstance(num_batches, bool) or not isinstance(num_batches, (int, np.integer)) or num_batches < 1:
        raise BadInput("num_batches", num_batches, "an integer >= 1")
    params = trainable_parameters(model)
    check_examples_independent(model, "the gradient noise scale")
    with eval_mode(model):
        check_batch(model, loss_fn, inputs, targets)
        n = inputs.shape[0]
        small, big = [], []
        for _ in range(num_batches):
            for size, out in ((b_small, small), (b_big, big)):
                idx = torch.randint(0, n, (size,), generator=generator).to(inputs.device)
                g = _grad(model, loss_fn, params, inputs[idx], targets[idx])
                out.append(float(torch.dot(g, g)))
    return noise_scale_from_norms(small, big, b_small, b_big)


def exact_noise_scale(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor
) -> NoiseScale:
    r"""The exact :math:`B_\text{simple}` of the empirical distribution, from per-example gradients.

    :math:`G = \frac1N\sum_n g_n`, :math:`\operatorname{tr}\Sigma = \frac1N\sum_n |g_n - G|^2`
    (McCandlish et al. 2018, Sec. 2.2); costs one gradient per example (small problems only). The
    model is evaluated in eval mode, its modes restored.
    """
    params = trainable_parameters(model)
    check_examples_independent(model, "per-example gradients")
    with eval_mode(model):
        check_batch(model, loss_fn, inputs, targets)
        per_example = torch.stack(
            [_grad(model, loss_fn, params, inputs[i : i + 1], targets[i : i + 1]) for i in range(inputs.shape[0])]
        ).double()
    mean = per_example.mean(0)
    grad_sq = float(mean @ mean)
    trace_sigma = float(((per_example - mean) ** 2).sum(1).mean())
    return NoiseScale(trace_sigma / grad_sq, grad_sq, trace_sigma, 0.0, 0.0, 0)
