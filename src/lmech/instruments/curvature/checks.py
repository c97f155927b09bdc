"""Input checks shared by the curvature instruments, and the eval-mode context (the instruments' policy,
:mod:`lmech.instruments._mode`, re-exported here)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._mode import eval_mode

__all__ = ["LossFn", "check_batch", "eval_mode"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def check_batch(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> None:
    """Raise BadInput unless ``loss_fn(model(inputs), targets)`` is a scalar on this batch.

    Checks that inputs and targets are tensors with the same first dimension, then runs the model
    and the loss on the first two examples only (cheap, under ``torch.no_grad``, in eval mode with
    every module's mode restored: no dropout draw, no batch-norm statistics updated) so that an input
    the model does not accept is reported before any real work starts.
    """
    if not isinstance(inputs, Tensor):
        raise BadInput("inputs", type(inputs).__name__, "a torch.Tensor whose first dimension indexes examples")
    if not isinstance(targets, Tensor):
        raise BadInput("targets", type(targets).__name__, "a torch.Tensor whose first dimension indexes examples")
    if inputs.ndim == 0 or inputs.shape[0] == 0:
        raise BadInput("inputs", tuple(inputs.shape), "a non-empty batch (first dimension = number of examples)")
    if targets.ndim == 0 or targets.shape[0] != inputs.shape[0]:
        raise BadInput(
            "targets",
            f"tensor of shape {tuple(targets.shape)}",
            f"first dimension {inputs.shape[0]} (inputs have shape {tuple(inputs.shape)})",
        )
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(inputs[:2])
    except Exception as err:  # noqa: BLE001 - any failure means the model does not accept the input
        raise BadInput(
            "inputs", f"tensor of shape {tuple(inputs.shape)}", f"a batch the model accepts ({err})"
        ) from err
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*target size.*")  # MSELoss broadcasting shapes
            loss = loss_fn(out, targets[:2])
    except Exception as err:  # noqa: BLE001
        raise BadInput(
            "targets", f"tensor of shape {tuple(targets.shape)}", f"targets the loss accepts ({err})"
        ) from err
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise BadInput("loss_fn", getattr(loss_fn, "__name__", repr(loss_fn)), "a callable returning a scalar loss")


def _check_positive_int(name: str, value: object, lower: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lower:
        raise BadInput(name, value, f"an integer >= {lower}")
    return int(value)


def _check_tol(tol: object) -> float:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise BadInput("tol", tol, "a float in (0, 1)")
    return float(tol)
