"""Data given to an instrument: one batch of tensors, or a DataLoader, read as blocks of examples.

Instruments that average over a dataset (the curvature operators) or tile a Gram matrix over it
(the eNTK) take either tensors ``(n, ...)`` or any *re-iterable* of batches, e.g. a
``torch.utils.data.DataLoader``: each batch is ``(inputs, targets)`` (a tuple or list; a bare
input tensor where no targets are needed). Only one batch is in memory at a time; the loader is
read again on every pass, so it must yield the same examples every time (``shuffle=False`` or a
fixed-seed sampler, no random augmentation, the same ``drop_last``): the number of examples is
checked on every pass. Batches are moved to the instrument's device; batch sizes may differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from lmech.errors import BadInput

__all__ = ["Examples", "is_loader"]


def is_loader(data: Any) -> bool:
    """True for an iterable of batches (a DataLoader, a list of pairs), False for a tensor."""
    return not isinstance(data, (Tensor, str, bytes, dict)) and isinstance(data, Iterable)


class Examples:
    """A dataset seen as blocks ``(x, y)`` of at most ``chunk_size`` examples, in a fixed order.

    ``inputs`` is a tensor ``(n, ...)`` (with ``targets`` a tensor ``(n, ...)`` or ``None``) or a
    re-iterable of batches (then ``targets`` must be ``None``). ``with_targets`` says whether each
    block needs its targets. ``len(examples)`` is ``n`` (for a loader, counted on the first pass,
    which also checks every batch).
    """

    def __init__(self, inputs: Any, targets: Any = None, *, chunk_size: int | None = None,
                 with_targets: bool = True, device: torch.device | None = None, name: str = "inputs"):
        self.name, self.chunk_size, self.with_targets, self.device = name, chunk_size, with_targets, device
        self.loader = is_loader(inputs)
        if self.loader:
            if targets is not None:
                raise BadInput("targets", type(targets).__name__,
                               f"None when {name} is a DataLoader (its batches are (inputs, targets) pairs)")
            if isinstance(inputs, Iterator):  # a generator or iter(loader): gone after one pass
                raise BadInput(name, type(inputs).__name__, "a re-iterable of batches (a DataLoader, a list), "
                               "not a one-pass iterator: the instrument reads the data more than once")
            self.data = inputs
            self.example_shape: tuple[int, ...] | None = None
            self._n, self._first = 0, None
            for x, y in self._loader_batches():  # the first pass: count and check every batch
                if self._first is None:
                    self._first = next(self._split(x, y))
                self._n += x.shape[0]
            if self._n == 0:
                raise BadInput(name, type(inputs).__name__, "a DataLoader yielding at least one example")
            return
        if not isinstance(inputs, Tensor) or inputs.ndim == 0 or inputs.shape[0] == 0:
            raise BadInput(name, getattr(inputs, "shape", type(inputs).__name__),
                           "a non-empty tensor (n, ...) or a DataLoader of batches")
        if with_targets:
            if not isinstance(targets, Tensor):
                raise BadInput("targets", type(targets).__name__,
                               "a torch.Tensor whose first dimension indexes examples (or pass a DataLoader)")
            if targets.ndim == 0 or targets.shape[0] != inputs.shape[0]:
                raise BadInput("targets", f"tensor of shape {tuple(targets.shape)}",
                               f"first dimension {inputs.shape[0]} (inputs have shape {tuple(inputs.shape)})")
        self.data, self.targets = inputs, targets
        self.example_shape = tuple(inputs.shape[1:])
        self._n = inputs.shape[0]

    def __len__(self) -> int:
        return self._n

    @property
    def single(self) -> bool:
        """True when the data is one block (a tensor no larger than ``chunk_size``): it can be cached."""
        return not self.loader and (self.chunk_size is None or self.chunk_size >= self._n)

    def first(self) -> tuple[Tensor, Tensor | None]:
        """The first block (to check the model and loss on before any real work; kept from the first pass)."""
        return self._first if self.loader else next(iter(self))

    def _split(self, x: Tensor, y: Tensor | None) -> Iterator[tuple[Tensor, Tensor | None]]:
        step = x.shape[0] if self.chunk_size is None else self.chunk_size
        for s in range(0, x.shape[0], step):
            yield x[s : s + step], (y[s : s + step] if y is not None else None)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        if not self.loader:
            step = self._n if self.chunk_size is None else self.chunk_size
            for s in range(0, self._n, step):
                y = self.targets[s : s + step] if self.with_targets else None
                yield self.data[s : s + step], y
            return
        seen = 0
        for x, y in self._loader_batches():
            seen += x.shape[0]
            yield from self._split(x, y)
        if seen != self._n:
            raise BadInput(self.name, f"a DataLoader that yielded {self._n} then {seen} examples",
                           "the same examples on every pass (shuffle=False, no random sampling or augmentation)")

    def _loader_batches(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        for i, batch in enumerate(self.data):
            if isinstance(batch, (tuple, list)) and batch:
                x, y = batch[0], (batch[1] if len(batch) > 1 else None)
            else:
                x, y = batch, None
            where = f"batch {i} of {self.name}"
            if not isinstance(x, Tensor) or x.ndim == 0 or x.shape[0] == 0:
                raise BadInput(where, getattr(x, "shape", type(x).__name__),
                               "inputs as a non-empty tensor (b, ...): a batch (inputs, targets) or inputs")
            if self.example_shape is None:
                self.example_shape = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != self.example_shape:
                raise BadInput(where, f"inputs of shape {tuple(x.shape)}",
                               f"the per-example shape of the first batch, (b, {', '.join(map(str, self.example_shape))})")
            if self.with_targets:
                if not isinstance(y, Tensor) or y.ndim == 0 or y.shape[0] != x.shape[0]:
                    raise BadInput(where, f"targets {getattr(y, 'shape', type(y).__name__)}",
                                   f"a pair (inputs, targets) with targets of first dimension {x.shape[0]}")
            else:
                y = None
            if self.device is not None:
                x = x.to(self.device)
                y = y.to(self.device) if y is not None else None
            yield x, y
