"""Trainable parameters of a model as one flat vector, and back.

Curvature matrices, kernels and noise scales act on the space of all trainable parameters
``theta = (theta_1, ..., theta_P)`` concatenated in ``model.parameters()`` order. These helpers are
the single place that defines that order and the flatten/unflatten maps between a list of tensors
shaped like the parameters and a 1-D vector of length ``P``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lmech.errors import BadInput

__all__ = ["trainable_parameters", "num_parameters", "flatten", "unflatten"]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model`` that require grad, in ``model.parameters()`` order.

    Raises BadInput when there is none (a frozen model has no curvature to measure).
    """
    if not isinstance(model, nn.Module):
        raise BadInput("model", type(model).__name__, "a torch.nn.Module")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise BadInput("model", type(model).__name__, "a module with at least one parameter requiring grad")
    return params


def num_parameters(params: Sequence[Tensor]) -> int:
    """Total number of scalar entries ``P = sum_i numel(theta_i)``."""
    return sum(p.numel() for p in params)


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors (e.g. one per parameter) into one 1-D vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a 1-D ``vector`` into views shaped like ``like`` (the inverse of :func:`flatten`).

    A leading batch dimension is kept: a ``(m, P)`` matrix gives tensors of shape ``(m, *p.shape)``.
    """
    sizes = [p.numel() for p in like]
    if vector.shape[-1] != sum(sizes):
        raise BadInput("vector", tuple(vector.shape), f"last dimension {sum(sizes)} (number of parameters)")
    lead = tuple(vector.shape[:-1])
    return [chunk.reshape(*lead, *p.shape) for chunk, p in zip(vector.split(sizes, dim=-1), like)]
