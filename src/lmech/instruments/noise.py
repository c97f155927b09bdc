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

**The Hessian-weighted noise scale** (§2.2, eq. 2.8 of the same paper; numbers not verified against the
paper's text, see :mod:`lmech.experiments.critical_batch`)

.. math:: B_\text{noise} = \frac{\operatorname{tr}(H\Sigma)}{G^\top H G},

with :math:`H` the Hessian of the loss on the data: for a quadratic loss the step size that most
lowers the loss in one step at batch :math:`B` is :math:`\epsilon_\text{opt}(B) =
\epsilon_\text{max}/(1 + B_\text{noise}/B)` (eq. 2.6), and :math:`B_\text{noise} = B_\text{simple}`
when :math:`H` is a multiple of the identity. The same two-batch trick estimates it, quadratic forms
in :math:`H` in place of squared norms: :math:`\mathbb{E}\,G_B^\top H G_B = G^\top H G +
\operatorname{tr}(H\Sigma)/B` (one Hessian-vector product per batch,
:func:`hessian_noise_scale`); :func:`exact_hessian_noise_scale` computes it from per-example
gradients (small problems).
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

__all__ = ["NoiseScale", "HessianNoiseScale", "noise_scale_from_norms", "noise_scale_from_quadratic_forms",
           "gradient_noise_scale", "exact_noise_scale", "hessian_noise_scale", "exact_hessian_noise_scale"]


@dataclass
class NoiseScale:
    """``b_simple = trace_sigma / grad_sq`` with standard errors of the two averaged estimates."""

    b_simple: float
    grad_sq: float
    trace_sigma: float
    grad_sq_se: float = float("nan")
    trace_sigma_se: float = float("nan")
    num_batches: int = 0


@dataclass
class HessianNoiseScale:
    r"""``b_noise = trace_h_sigma / g_h_g`` (:math:`\operatorname{tr}(H\Sigma)/G^\top H G`) with standard errors
    of the two averaged estimates; ``simple`` is :math:`B_\text{simple}` from the same gradients."""

    b_noise: float
    g_h_g: float
    trace_h_sigma: float
    g_h_g_se: float = float("nan")
    trace_h_sigma_se: float = float("nan")
    num_batches: int = 0
    simple: NoiseScale | None = None

    @property
    def b_simple(self) -> float:
        r""":math:`B_\text{simple}` of the same gradients (NaN if not computed)."""
        return self.simple.b_simple if self.simple is not None else float("nan")


def _check_sizes(b_small: object, b_big: object) -> tuple[int, int]:
    for name, b in (("b_small", b_small), ("b_big", b_big)):
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise BadInput(name, b, "a batch size, an integer >= 1")
    if not b_small < b_big:
        raise BadInput("b_big", b_big, f"a batch size larger than b_small={b_small}")
    return int(b_small), int(b_big)


def _two_batch(small_values, big_values, b_small: int, b_big: int, name: str):
    """Unbiased (signal, noise) averages and their standard errors from paired values at two batch sizes:
    signal = (B_b v_b - B_s v_s)/(B_b - B_s), noise = (v_s - v_b)/(1/B_s - 1/B_b) (Appendix A.1)."""
    small = np.atleast_1d(np.asarray(small_values, dtype=np.float64))
    big = np.atleast_1d(np.asarray(big_values, dtype=np.float64))
    if small.shape != big.shape or small.ndim != 1:
        raise BadInput(name, big.shape, f"the shape of the values at b_small {small.shape}")
    signal = (b_big * big - b_small * small) / (b_big - b_small)
    noise = (small - big) / (1.0 / b_small - 1.0 / b_big)
    m = small.size

    def se(x: np.ndarray) -> float:
        return float(x.std(ddof=1) / math.sqrt(m)) if m > 1 else float("nan")

    return float(signal.mean()), float(noise.mean()), se(signal), se(noise), m


def noise_scale_from_norms(sq_norm_small, sq_norm_big, b_small: int, b_big: int) -> NoiseScale:
    r"""Unbiased :math:`|\mathcal G|^2` and :math:`\mathcal S` from squared gradient norms
    (McCandlish et al. 2018, Appendix A.1), then :math:`B_\text{simple}`.

    ``sq_norm_small`` and ``sq_norm_big`` are :math:`|G_{B_s}|^2` and :math:`|G_{B_b}|^2`, floats or
    equal-length sequences (one pair per draw); the estimates are averaged over draws.
    """
    b_small, b_big = _check_sizes(b_small, b_big)
    g2, s, g2_se, s_se, m = _two_batch(sq_norm_small, sq_norm_big, b_small, b_big, "sq_norm_big")
    return NoiseScale(s / g2, g2, s, g2_se, s_se, m)


def noise_scale_from_quadratic_forms(quad_small, quad_big, b_small: int, b_big: int,
                                     simple: NoiseScale | None = None) -> HessianNoiseScale:
    r"""Unbiased :math:`G^\top H G` and :math:`\operatorname{tr}(H\Sigma)` from the quadratic forms
    :math:`G_{B_s}^\top H G_{B_s}` and :math:`G_{B_b}^\top H G_{B_b}` of minibatch gradients (floats or
    equal-length sequences, one pair per draw), then :math:`B_\text{noise}`: the estimator of Appendix A.1
    with :math:`\mathbb{E}\,G_B^\top H G_B = G^\top H G + \operatorname{tr}(H\Sigma)/B` in place of
    :math:`\mathbb{E}|G_B|^2 = |G|^2 + \operatorname{tr}\Sigma/B` (McCandlish et al. 2018, §2.2 and App. A.1).
    ``simple`` (optional) is the :math:`B_\text{simple}` of the same draws, kept beside it.
    """
    b_small, b_big = _check_sizes(b_small, b_big)
    ghg, ths, ghg_se, ths_se, m = _two_batch(quad_small, quad_big, b_small, b_big, "quad_big")
    return HessianNoiseScale(ths / ghg, ghg, ths, ghg_se, ths_se, m, simple)


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
    norms, _ = _two_batch_samples(model, loss_fn, inputs, targets, b_small, b_big, num_batches, generator)
    return noise_scale_from_norms(norms[b_small], norms[b_big], b_small, b_big)


def _two_batch_samples(model: nn.Module, loss_fn, inputs: Tensor, targets: Tensor, b_small: int, b_big: int,
                       num_batches: int, generator: torch.Generator | None, *, hessian: bool = False
                       ) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """``num_batches`` times a batch of ``b_small`` then one of ``b_big`` examples drawn with replacement from
    ``generator``: per size, the minibatch gradients' :math:`|G_B|^2` and, with ``hessian``, their
    :math:`G_B^\top H G_B` (``H`` the Hessian on all the data, one Hessian-vector product per batch)."""
    if isinstance(num_batches, bool) or not isinstance(num_batches, (int, np.integer)) or num_batches < 1:
        raise BadInput("num_batches", num_batches, "an integer >= 1")
    params = trainable_parameters(model)
    check_examples_independent(model, "the gradient noise scale")
    norms: dict[int, list[float]] = {b_small: [], b_big: []}
    quads: dict[int, list[float]] = {b_small: [], b_big: []}
    with eval_mode(model):
        check_batch(model, loss_fn, inputs, targets)
        if hessian:
            from lmech.instruments.curvature import HessianOperator

            h = HessianOperator(model, loss_fn, inputs, targets, check=False)
        n = inputs.shape[0]
        for _ in range(num_batches):
            for size in (b_small, b_big):
                idx = torch.randint(0, n, (size,), generator=generator).to(inputs.device)
                g = _grad(model, loss_fn, params, inputs[idx], targets[idx])
                norms[size].append(float(torch.dot(g, g)))
                if hessian:
                    quads[size].append(float(torch.dot(g, h @ g)))
    return norms, quads


def _per_example_gradients(model: nn.Module, loss_fn, params: list[Tensor], inputs: Tensor, targets: Tensor) -> Tensor:
    r"""The ``(N, P)`` matrix of per-example gradients :math:`g_n = \nabla_\theta \ell(f(x_n), y_n)`, in float64.

    One vectorized call (``torch.func.vmap`` over ``grad`` of a ``functional_call``) where the model allows
    it, else one backward per example; both give the same numbers to round-off. Call in eval mode.
    """
    from torch.func import functional_call, grad, vmap

    names = {id(p): n for n, p in model.named_parameters()}
    keys = [names[id(p)] for p in params]

    def loss_of(values, x, y):
        out = functional_call(model, dict(zip(keys, values)), (x[None],))
        return loss_fn(out, y[None])

    try:
        with torch.enable_grad():
            grads = vmap(grad(loss_of), in_dims=(None, 0, 0))(tuple(p.detach() for p in params), inputs, targets)
        return torch.cat([g.reshape(inputs.shape[0], -1) for g in grads], 1).double()
    except RuntimeError:  # an operation vmap does not support: one backward per example
        return torch.stack(
            [_grad(model, loss_fn, params, inputs[i : i + 1], targets[i : i + 1]) for i in range(inputs.shape[0])]
        ).double()


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
        per_example = _per_example_gradients(model, loss_fn, params, inputs, targets)
    return _simple_from_per_example(per_example)


def _simple_from_per_example(per_example: Tensor) -> NoiseScale:
    mean = per_example.mean(0)
    grad_sq = float(mean @ mean)
    trace_sigma = float(((per_example - mean) ** 2).sum(1).mean())
    return NoiseScale(trace_sigma / grad_sq, grad_sq, trace_sigma, 0.0, 0.0, 0)


def hessian_noise_scale(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    b_small: int,
    b_big: int,
    *,
    num_batches: int = 10,
    generator: torch.Generator | None = None,
) -> HessianNoiseScale:
    r"""Estimate :math:`B_\text{noise} = \operatorname{tr}(H\Sigma)/G^\top H G` on ``(inputs, targets)``
    from two batch sizes (and :math:`B_\text{simple}` from the same gradients, in ``.simple``).

    :math:`H` is the Hessian of the loss on all of ``(inputs, targets)`` at the current parameters
    (:class:`~lmech.instruments.curvature.HessianOperator`). ``num_batches`` times, a batch of ``b_small``
    and one of ``b_big`` examples are drawn uniformly *with replacement* from ``generator`` (so that
    :math:`\mathbb{E}\,G_B^\top H G_B = G^\top H G + \operatorname{tr}(H\Sigma)/B` holds exactly for the
    empirical distribution); each costs one gradient and one Hessian-vector product, and
    :func:`noise_scale_from_quadratic_forms` averages them. ``loss_fn`` must average over examples. The
    model is evaluated in eval mode and its modes are restored.
    """
    b_small, b_big = _check_sizes(b_small, b_big)
    norms, quads = _two_batch_samples(model, loss_fn, inputs, targets, b_small, b_big, num_batches, generator,
                                      hessian=True)
    simple = noise_scale_from_norms(norms[b_small], norms[b_big], b_small, b_big)
    return noise_scale_from_quadratic_forms(quads[b_small], quads[b_big], b_small, b_big, simple)


def exact_hessian_noise_scale(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor
) -> HessianNoiseScale:
    r"""The exact :math:`B_\text{noise} = \operatorname{tr}(H\Sigma)/G^\top H G` of the empirical distribution
    (McCandlish et al. 2018, eq. 2.8), and :math:`B_\text{simple}` of the same gradients (``.simple``).

    :math:`G = \frac1N\sum_n g_n`, :math:`\Sigma = \frac1N\sum_n (g_n - G)(g_n - G)^\top` from the
    per-example gradients, :math:`H` the Hessian of the loss on all the data. With :math:`P` parameters
    and :math:`N` examples it costs :math:`\min(P, N) + 1` Hessian-vector products: :math:`H` itself
    when :math:`P \le N` (then :math:`\operatorname{tr}(H\Sigma) = \sum_{ij} H_{ij}\Sigma_{ij}`), else
    :math:`H` applied to the :math:`N` centred gradients. Small problems only. The model is evaluated in
    eval mode, its modes restored.
    """
    from lmech.instruments.curvature import HessianOperator

    params = trainable_parameters(model)
    check_examples_independent(model, "per-example gradients")
    with eval_mode(model):
        check_batch(model, loss_fn, inputs, targets)
        per_example = _per_example_gradients(model, loss_fn, params, inputs, targets)
        hessian = HessianOperator(model, loss_fn, inputs, targets, check=False)
        n, p = per_example.shape
        mean = per_example.mean(0)
        centred = per_example - mean
        dtype = hessian.dtype
        h_mean = (hessian @ mean.to(dtype)).double()
        if p <= n:
            dense = (hessian @ torch.eye(p, dtype=dtype, device=hessian.device)).double()
            dense = 0.5 * (dense + dense.T)
            trace_h_sigma = float((dense * (centred.T @ centred / n)).sum())
        else:
            h_centred = (hessian @ centred.T.to(dtype)).double()
            trace_h_sigma = float((centred.T * h_centred).sum() / n)
    g_h_g = float(mean @ h_mean)
    return HessianNoiseScale(trace_h_sigma / g_h_g, g_h_g, trace_h_sigma, 0.0, 0.0, 0,
                             _simple_from_per_example(per_example))
