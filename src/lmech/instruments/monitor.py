"""Attach instruments to any training loop without perturbing it.

::

    monitor = Monitor(model, loss_fn, (x_probe, y_probe), probes=[LossProbe(), sharpness_probe()], every=100)
    for step in range(steps):
        ...  # the user's own training step
        monitor.step(step, optimizer=opt)
    monitor.frame()  # one row per recorded step, a ``step`` column, one column per named value

A probe is any callable ``probe(context) -> dict[str, float | array]``; ``context`` is a
:class:`ProbeContext` (model, loss_fn, inputs, targets, step, optimizer, lr). Records go to
``sink.append(series, row)`` when a sink is given (the run store implements it) and are always kept
in memory for :meth:`Monitor.frame`.

Observing does not perturb training: while the probes run, every module is in eval mode (or left
as it is with ``mode="train"``), and afterwards the monitor restores each module's train/eval flag,
each parameter's ``.grad`` (the same tensor object, or ``None``), every buffer's values (e.g.
BatchNorm running statistics) and the RNG states of torch (CPU and every initialized CUDA device),
numpy's global generator and Python's ``random``. A training trajectory is therefore bit-identical
with and without a monitor attached (``tests/instruments/test_monitor.py``).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._params import flatten, trainable_parameters
from lmech.instruments.curvature import check_batch, hessian_trace
from lmech.instruments.sharpness import SharpnessTracker

__all__ = [
    "Monitor",
    "ProbeContext",
    "Sink",
    "preserved_state",
    "LossProbe",
    "GradNormProbe",
    "ParamNormProbe",
    "HessianTraceProbe",
    "sharpness_probe",
    "hessian_eigenvalues_probe",
    "preconditioned_sharpness_probe",
]


class Sink(Protocol):
    """Where records go: the run store implements ``append(series, row)``."""

    def append(self, series: str, row: dict) -> None: ...


@dataclass
class ProbeContext:
    """What a probe sees: the model, the loss, the probe batch, the step and the optimizer."""

    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    inputs: Tensor
    targets: Tensor
    step: int
    optimizer: torch.optim.Optimizer | None = None
    lr: float | None = None


@contextlib.contextmanager
def preserved_state(model: nn.Module, mode: str = "eval") -> Iterator[None]:
    """Run a block without leaving a trace on ``model`` or the global RNGs.

    Saves and restores: each module's ``training`` flag (the block sees eval mode when
    ``mode="eval"``), each parameter's ``.grad`` (set to ``None`` inside the block so a probe's
    ``backward`` cannot accumulate into it), buffer values, grad mode, and the RNG states of torch
    (CPU and initialized CUDA devices), numpy and ``random``.
    """
    flags = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = (
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    )
    np_rng = np.random.get_state()  # noqa: NPY002 - the legacy global generator is what we protect
    py_rng = random.getstate()
    grad_enabled = torch.is_grad_enabled()
    try:
        for p in params:
            p.grad = None
        if mode == "eval":
            model.eval()
        torch.set_grad_enabled(True)
        yield
    finally:
        torch.set_grad_enabled(grad_enabled)
        for m, flag in flags:
            m.training = flag
        for p, g in zip(params, grads):
            p.grad = g
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        np.random.set_state(np_rng)  # noqa: NPY002
        random.setstate(py_rng)


class Monitor:
    """Record probes of a model on a fixed probe batch every ``every`` steps of any training loop.

    ``every`` is an int ``k`` (record when ``step % k == 0``) or a callable ``step -> bool``.
    ``mode="eval"`` (default) shows the probes a deterministic network (dropout off, BatchNorm
    running statistics); ``mode="train"`` leaves the modules as the loop set them for the probes'
    own forward passes (``LossProbe``, custom probes), while lmech's instruments (curvature, eNTK,
    noise scale) measure in eval mode whatever the mode (:mod:`lmech.instruments._mode`). ``seconds``
    accumulates the wall time spent observing.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        probe_batch: tuple[Tensor, Tensor],
        probes: Sequence[Callable[[ProbeContext], dict]] = (),
        every: int | Callable[[int], bool] = 1,
        sink: Sink | None = None,
        *,
        series: str = "monitor",
        mode: str = "eval",
    ):
        if not isinstance(model, nn.Module):
            raise BadInput("model", type(model).__name__, "a torch.nn.Module")
        if not callable(loss_fn):
            raise BadInput("loss_fn", loss_fn, "a callable loss_fn(outputs, targets) -> scalar")
        if not isinstance(probe_batch, (tuple, list)) or len(probe_batch) != 2:
            raise BadInput("probe_batch", type(probe_batch).__name__, "a pair (inputs, targets) of tensors")
        probes = list(probes)
        for i, probe in enumerate(probes):
            if not callable(probe):
                raise BadInput(f"probes[{i}]", probe, "a callable probe(context) -> dict of named values")
        if isinstance(every, bool) or not (
            callable(every) or (isinstance(every, (int, np.integer)) and every >= 1)
        ):
            raise BadInput("every", every, "an integer >= 1 or a callable step -> bool")
        if sink is not None and not callable(getattr(sink, "append", None)):
            raise BadInput("sink", type(sink).__name__, "None or an object with a method append(series, row)")
        if mode not in ("eval", "train"):
            raise BadInput("mode", mode, "'eval' or 'train'")
        inputs, targets = probe_batch
        with preserved_state(model, mode):
            check_batch(model, loss_fn, inputs, targets)
        self.model, self.loss_fn, self.inputs, self.targets = model, loss_fn, inputs, targets
        self.probes, self.every, self.sink, self.series, self.mode = probes, every, sink, series, mode
        self.records: list[dict] = []
        self.seconds = 0.0

    def due(self, step: int) -> bool:
        """Whether probes are recorded at ``step``."""
        return bool(self.every(step)) if callable(self.every) else step % int(self.every) == 0

    def step(self, step: int, *, optimizer: torch.optim.Optimizer | None = None, lr: float | None = None):
        """Record every probe if ``step`` is due; return the row (``None`` when not due)."""
        if not self.due(step):
            return None
        started = time.perf_counter()
        context = ProbeContext(self.model, self.loss_fn, self.inputs, self.targets, step, optimizer, lr)
        row: dict[str, Any] = {"step": step}
        with preserved_state(self.model, self.mode):
            for probe in self.probes:
                values = probe(context)
                if not isinstance(values, dict):
                    raise BadInput("probes", probe, "probes returning a dict name -> value")
                clash = set(values) & set(row)
                if clash:
                    raise BadInput("probes", sorted(clash), "probes with distinct value names (set a prefix)")
                row.update({k: _plain(v) for k, v in values.items()})
        self.records.append(row)
        if self.sink is not None:
            self.sink.append(self.series, row)
        self.seconds += time.perf_counter() - started
        return row

    def frame(self):
        """The records as a pandas DataFrame: one row per recorded step, a ``step`` column."""
        import pandas as pd

        return pd.DataFrame.from_records(self.records, columns=None if self.records else ["step"])


def _plain(value: Any) -> Any:
    """Tensors become Python floats (scalars) or numpy arrays; other values pass through."""
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.numpy()
    return value


# ---------------------------------------------------------------------------------------------
# ready-made probes
# ---------------------------------------------------------------------------------------------


class LossProbe:
    """``{"loss": L}``: the loss on the probe batch."""

    def __init__(self, name: str = "loss"):
        self.name = name

    def __call__(self, context: ProbeContext) -> dict:
        with torch.no_grad():
            return {self.name: float(context.loss_fn(context.model(context.inputs), context.targets))}


class GradNormProbe:
    """``{"grad_norm": |∇L|}``: the Euclidean norm of the full-batch gradient on the probe batch."""

    def __init__(self, name: str = "grad_norm"):
        self.name = name

    def __call__(self, context: ProbeContext) -> dict:
        params = trainable_parameters(context.model)
        loss = context.loss_fn(context.model(context.inputs), context.targets)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        flat = flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])
        return {self.name: float(flat.norm())}


class ParamNormProbe:
    """``{"param_norm": |θ|}``: the Euclidean norm of all trainable parameters."""

    def __init__(self, name: str = "param_norm"):
        self.name = name

    def __call__(self, context: ProbeContext) -> dict:
        with torch.no_grad():
            return {self.name: float(flatten(trainable_parameters(context.model)).norm())}


class HessianTraceProbe:
    """``{"hessian_trace": tr H, "hessian_trace_se": standard error}`` by Hutch++ (or Hutchinson)."""

    def __init__(
        self, num_matvecs: int = 30, method: str = "hutch++", seed: int = 0, name: str = "hessian_trace"
    ):
        if method not in ("hutch++", "hutchinson"):
            raise BadInput("method", method, "'hutch++' or 'hutchinson'")
        self.num_matvecs, self.method, self.name = num_matvecs, method, name
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, context: ProbeContext) -> dict:
        est = hessian_trace(
            context.model,
            context.loss_fn,
            context.inputs,
            context.targets,
            method=self.method,
            num_matvecs=self.num_matvecs,
            generator=self.generator,
        )
        return {self.name: est.value, f"{self.name}_se": est.std_error}


def sharpness_probe(k: int = 1, **options) -> SharpnessTracker:
    """λ1 (and λ2..λk) of the Hessian with threshold 2/η-type and ratio: a :class:`SharpnessTracker`.

    For Adam/AdamW/RMSprop this is the plain Hessian's top eigenvalues (use
    :func:`preconditioned_sharpness_probe` for :math:`P^{-1}H`). Options go to the tracker.
    """
    options.setdefault("preconditioned", False)
    return SharpnessTracker(k, **options)


def hessian_eigenvalues_probe(k: int = 5, **options) -> SharpnessTracker:
    """The top-``k`` Hessian eigenvalues, ``hess_lambda_1..k``, warm-started between records."""
    options.setdefault("preconditioned", False)
    options.setdefault("prefix", "hess_")
    return SharpnessTracker(k, **options)


def preconditioned_sharpness_probe(k: int = 1, **options) -> SharpnessTracker:
    """λ1 of :math:`P^{-1/2}HP^{-1/2}` for Adam/RMSprop, with threshold (2+2β1)/((1-β1)η) and ratio."""
    options.setdefault("prefix", "precond_")
    return SharpnessTracker(k, preconditioned=True, **options)
