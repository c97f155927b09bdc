"""The instruments' one policy for a model in train mode: measure in eval mode, then restore the mode.

An instrument measures the function a network computes at its current parameters. In train mode a
network is not one function: dropout draws a new mask at every call (the Hessian or kernel of a
random function is a random matrix, and ``torch.func.vmap`` refuses the random call), and batch
norm normalizes by the statistics of whatever batch it is given (one example's output then depends
on the others) and updates its running statistics (measuring would change the model: ``vmap``
refuses that in-place update of ``num_batches_tracked``). So every instrument that runs a model
(curvature, eNTK and the linearized model, gradient noise scale, activations and similarity) puts
every module in eval mode while it measures (:func:`eval_mode`), as ``model.eval()`` would, and
restores each module's own ``training`` flag afterwards, whatever it was; a training loop around
the instrument sees its model exactly as it left it.

Attention. PyTorch's fused attention kernels (``scaled_dot_product_attention``'s flash and
memory-efficient kernels, and the fused ``nn.TransformerEncoderLayer``/``nn.MultiheadAttention``
fast path taken in eval mode) have no double backward and no forward-mode derivative, which the
Hessian, the GGN and the eNTK need. While they measure, instruments select the math attention kernel
(``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``) and turn the fast path off
(``torch.backends.mha.set_fastpath_enabled(False)``), restoring both afterwards
(:func:`measuring`): the same function, computed by ordinary differentiable operations.

Where eval mode is not enough, the instrument says so before any work: a batch norm with
``track_running_stats=False`` normalizes by batch statistics in eval mode too, so instruments whose
definition needs examples processed independently (the eNTK, per-example gradients) raise
:class:`lmech.errors.BadInput` naming the module and the fix (:func:`check_examples_independent`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from lmech.errors import BadInput

__all__ = ["eval_mode", "differentiable_attention", "measuring", "check_examples_independent"]


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


@contextlib.contextmanager
def differentiable_attention() -> Iterator[None]:
    """Attention computed by ordinary operations (twice and forward-mode differentiable); restored on exit.

    The math kernel of ``scaled_dot_product_attention`` and no fused ``nn.MultiheadAttention`` /
    ``nn.TransformerEncoderLayer`` fast path.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


@contextlib.contextmanager
def measuring(model: nn.Module) -> Iterator[nn.Module]:
    """The instruments' context: ``model`` in eval mode and differentiable attention, both restored."""
    with eval_mode(model), differentiable_attention():
        yield model


def check_examples_independent(model: nn.Module, instrument: str) -> None:
    """Raise BadInput if a module of ``model`` couples the examples of a batch even in eval mode.

    Batch norm without running statistics (``track_running_stats=False``) normalizes every batch
    by its own mean and variance in eval mode as in train mode; ``instrument`` (its name, for the
    message) needs ``f(X)[i]`` to depend on ``X[i]`` alone.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.running_mean is None or m.running_var is None):
            raise BadInput(
                "model",
                f"{type(m).__name__} at {name or '<model>'!r} with track_running_stats=False",
                f"a model whose examples are processed independently in eval mode for {instrument}: that "
                "batch norm normalizes by the statistics of each batch even in eval mode; give it running "
                "statistics (track_running_stats=True, then train or set them) or use LayerNorm/GroupNorm",
            )
