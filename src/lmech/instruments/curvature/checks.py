"""Input checks shared by the curvature instruments, and the eval-mode context every model function uses."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from lmech.errors import BadInput

__all__ = ["LossFn", "check_batch", "eval_mode"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def check_batch(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> None:
    """Raise BadInput unless ``loss_fn(model(inputs), targets)`` is a scalar on this batch.

    Checks that inputs and targets are tensors with the same first dimension, then runs the model
    and the loss on the first two examples only (cheap, under ``torch.no_grad``) so that an input
    the model does not accept is reported before any real work starts. The caller is responsible for
    the RNG: run it in eval mode or under a saved RNG state when the model is stochastic.
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
        with torch.no_grad():
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


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule of ``model`` in eval mode; restore each one's own flag on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _check_positive_int(name: str, value: object, lower: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lower:
        raise BadInput(name, value, f"an integer >= {lower}")
    return int(value)


def _check_tol(tol: object) -> float:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise BadInput("tol", tol, "a float in (0, 1)")
    return float(tol)
