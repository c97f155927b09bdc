r"""Gradients of Hessian quadratic forms: third derivatives of the loss along chosen directions.

For fixed vectors :math:`u_1, \dots, u_k` (e.g. the top Hessian eigenvectors) the quadratic forms
:math:`h_{ij}(\theta) = u_i^\top H(\theta) u_j` are smooth functions of the parameters. Their gradients

.. math:: \nabla_\theta h_{ij} = \nabla^3 \mathcal{L}(\theta)[u_i, u_j, \cdot\,]

are one more differentiation of the Hessian-vector product: :math:`H u_i = \nabla_\theta\langle
\nabla_\theta\mathcal{L}, u_i\rangle` is built with its graph kept, and
:math:`\nabla_\theta\langle H u_i, u_j\rangle` is a backward pass through it (Pearlmutter 1994's
trick applied twice). At an isolated eigenvalue :math:`S = \lambda_1` with unit eigenvector
:math:`u`, :math:`\nabla S = \nabla_\theta(u^\top H u)` with :math:`u` held fixed (first-order
perturbation theory: the eigenvector's own motion does not change :math:`S` to first order). These
are the derivatives the central flow needs (Cohen, Damian, Talwalkar, Kolter & Lee 2025, arXiv
2410.24206, Sec. 3: :math:`\nabla S` and :math:`\nabla\langle H, \Sigma\rangle`).

Third derivatives are only as exact as the model's double-backward formulas: PyTorch's fused
LayerNorm is known to give wrong third derivatives (a note of Cohen et al.'s code); the tests compare
these gradients with finite differences of Hessian-vector products for the models lmech uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._mode import measuring
from lmech.instruments._params import flatten, num_parameters, trainable_parameters, unflatten
from lmech.instruments.curvature import check_batch

__all__ = ["HessianFormGradients", "hessian_form_gradients", "sharpness_gradient"]


@dataclass
class HessianFormGradients:
    r"""The loss, its gradient and the Hessian's quadratic forms on ``U`` with their gradients.

    ``loss``: :math:`\mathcal{L}(\theta)`; ``gradient``: :math:`\nabla\mathcal{L}`, ``(P,)``;
    ``hvps``: :math:`HU`, ``(P, k)``; ``forms``: :math:`U^\top H U`, ``(k, k)`` (symmetric);
    ``form_gradients``: :math:`\nabla_\theta(u_i^\top H u_j)`, ``(k, k, P)`` (symmetric in i, j).
    """

    loss: float
    gradient: Tensor
    hvps: Tensor
    forms: Tensor
    form_gradients: Tensor


def _check_vectors(vectors: object, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    if not isinstance(vectors, Tensor) or vectors.ndim not in (1, 2) or vectors.shape[0] != size:
        shape = tuple(vectors.shape) if isinstance(vectors, Tensor) else type(vectors).__name__
        raise BadInput("vectors", shape, f"a tensor of shape ({size},) or ({size}, k): directions in parameter space")
    out = vectors.reshape(size, -1).detach().to(dtype=dtype, device=device)
    if out.shape[1] == 0 or not bool(torch.isfinite(out).all()):
        raise BadInput("vectors", tuple(vectors.shape), "at least one finite direction")
    return out


def hessian_form_gradients(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    vectors: Tensor,
    *,
    check: bool = True,
) -> HessianFormGradients:
    r"""Loss, gradient, :math:`HU`, :math:`U^\top HU` and :math:`\nabla_\theta(u_i^\top H u_j)`, i ≤ j.

    ``vectors`` is ``(P,)`` or ``(P, k)`` in the order of the model's trainable parameters (flat, as
    :class:`~lmech.instruments.curvature.HessianOperator` and
    :class:`~lmech.instruments.sharpness.SharpnessTracker` use). Cost: one gradient with its graph,
    ``k`` Hessian-vector products with theirs, and ``k(k+1)/2`` backward passes through them. The
    model is evaluated as every instrument evaluates it (:func:`lmech.instruments._mode.measuring`: eval
    mode, differentiable attention) on the full batch; float64 is advised (third derivatives lose
    about three digits more than gradients to round-off).
    """
    params = trainable_parameters(model)
    size = num_parameters(params)
    u = _check_vectors(vectors, size, params[0].dtype, params[0].device)
    if check:
        check_batch(model, loss_fn, inputs, targets)
    k = u.shape[1]
    with measuring(model), torch.enable_grad():
        loss = loss_fn(model(inputs), targets)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        hvps = []
        for i in range(k):
            hvp = torch.autograd.grad(grads, params, unflatten(u[:, i], params), create_graph=True, allow_unused=True)
            hvps.append([torch.zeros_like(p) if h is None else h for h, p in zip(hvp, params)])
        form_grads = torch.zeros(k, k, size, dtype=u.dtype, device=u.device)
        for i in range(k):
            for j in range(i, k):
                parts = [h for h in hvps[i] if h.requires_grad]
                if not parts:  # the loss is at most quadratic in θ: third derivatives vanish
                    continue
                uj = [v for v, h in zip(unflatten(u[:, j], params), hvps[i]) if h.requires_grad]
                g = torch.autograd.grad(parts, params, uj, retain_graph=True, allow_unused=True)
                flat = flatten([torch.zeros_like(p) if t is None else t for t, p in zip(g, params)])
                form_grads[i, j] = flat
                form_grads[j, i] = flat
    hu = torch.stack([flatten([h.detach() for h in hvp]) for hvp in hvps], dim=1)
    forms = u.T @ hu
    return HessianFormGradients(
        loss=float(loss.detach()),
        gradient=flatten([g.detach() for g in grads]),
        hvps=hu,
        forms=0.5 * (forms + forms.T),
        form_gradients=form_grads,
    )


def sharpness_gradient(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    eigenvector: Tensor,
) -> Tensor:
    r""":math:`\nabla S = \nabla_\theta(u^\top H(\theta) u)` at a unit top eigenvector ``u`` (``(P,)``).

    Valid where the top eigenvalue is simple (then :math:`S` is differentiable and its gradient is
    this one by first-order perturbation theory); ``u`` is normalized here.
    """
    params = trainable_parameters(model)
    u = _check_vectors(eigenvector, num_parameters(params), params[0].dtype, params[0].device)
    if u.shape[1] != 1:
        raise BadInput("eigenvector", tuple(eigenvector.shape), "one vector of shape (P,)")
    u = u / u.norm()
    return hessian_form_gradients(model, loss_fn, inputs, targets, u).form_gradients[0, 0]
