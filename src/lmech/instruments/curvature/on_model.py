r"""Curvature of a model's loss in one call: top eigenvalues, trace, spectral density, preconditioned
sharpness.

Each puts the model in eval mode while it measures and restores every module's mode, and selects
the math attention kernel (``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``, no fused transformer
fast path) so that double backward works through attention on the CPU (``nn.TransformerEncoderLayer``
included; :func:`lmech.instruments._mode.measuring`). The data is ``inputs, targets`` tensors, or a
DataLoader of ``(inputs, targets)`` batches as ``inputs`` with ``targets`` omitted: the curvature of
the loss averaged over all its examples (each batch weighted by its size), one batch in memory at a
time, the loader read once per Hessian-vector product (it must yield the same examples every pass).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._params import num_parameters, trainable_parameters
from lmech.instruments.curvature.checks import LossFn, eval_mode
from lmech.instruments.curvature.density import SpectralDensity, spectral_density
from lmech.instruments.curvature.eigensolver import EigenResult, lanczos
from lmech.instruments.curvature.operators import HessianOperator
from lmech.instruments.curvature.preconditioner import PreconditionedOperator, optimizer_preconditioner
from lmech.instruments.curvature.trace import TraceEstimate, hutchinson_trace, hutchpp_trace

__all__ = ["hessian_eigenvalues", "hessian_trace", "hessian_spectral_density", "preconditioned_sharpness"]


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor | Iterable,
    targets: Tensor | None = None,
    k: int = 1,
    *,
    tol: float = 1e-6,
    max_iter: int | None = None,
    chunk_size: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    bound: str = "residual",
    return_result: bool = False,
) -> Tensor | EigenResult:
    r"""The ``k`` largest (algebraic) eigenvalues of :math:`\nabla^2_\theta\,
    \text{loss\_fn}(\text{model}(\text{inputs}), \text{targets})`, descending, as a 1-D tensor.

    The Hessian is w.r.t. all trainable parameters, at the current parameters, with the model in
    eval mode and the math attention kernel (module docstring); ``inputs`` may be a DataLoader
    (``targets`` omitted); :func:`lanczos` to relative accuracy ``tol`` (float64 models reach 1e-10), certified
    by the Ritz residual (``bound="residual"``, default) or estimated by Kato-Temple (``bound="gap"``,
    fewer products, unreliable on bunched top eigenvalues: see :func:`ritz_error_bounds`). With ``return_result=True`` the full
    :class:`EigenResult` (eigenvectors to warm-start the next call via ``v0``, residuals, error
    bounds, number of Hessian-vector products) is returned instead.
    """
    params = trainable_parameters(model)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_parameters(params):
        raise BadInput("k", k, f"an integer in [1, {num_parameters(params)}] (the number of trainable parameters)")
    with eval_mode(model):
        op = HessianOperator(model, loss_fn, inputs, targets, chunk_size=chunk_size, params=params)
        result = lanczos(op, k, tol=tol, max_iter=max_iter, v0=v0, generator=generator, bound=bound)
    if not result.converged:
        warnings.warn(
            f"Lanczos stopped after {result.num_matvecs} products before reaching tol={tol} "
            f"(error bounds {result.errors.tolist()}); raise max_iter",
            stacklevel=2,
        )
    return result if return_result else result.values


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor | Iterable,
    targets: Tensor | None = None,
    *,
    method: str = "hutch++",
    num_matvecs: int = 99,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> TraceEstimate:
    """Stochastic estimate of the Hessian trace: ``method`` is ``"hutch++"`` or ``"hutchinson"``.

    Eval mode and the math attention kernel; ``inputs`` may be a DataLoader (module docstring)."""
    if method not in ("hutch++", "hutchinson"):
        raise BadInput("method", method, "'hutch++' or 'hutchinson'")
    with eval_mode(model):
        op = HessianOperator(model, loss_fn, inputs, targets, chunk_size=chunk_size)
        if method == "hutchinson":
            return hutchinson_trace(op, num_matvecs, generator=generator)
        return hutchpp_trace(op, num_matvecs, generator=generator)


def hessian_spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor | Iterable,
    targets: Tensor | None = None,
    *,
    num_probes: int = 10,
    num_steps: int = 64,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    """The Hessian's eigenvalue density by stochastic Lanczos quadrature (:func:`spectral_density`).

    Eval mode and the math attention kernel; ``inputs`` may be a DataLoader (module docstring)."""
    with eval_mode(model):
        op = HessianOperator(model, loss_fn, inputs, targets, chunk_size=chunk_size)
        return spectral_density(op, num_probes=num_probes, num_steps=num_steps, generator=generator)


def preconditioned_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor | Iterable,
    targets: Tensor | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    k: int = 1,
    *,
    tol: float = 1e-6,
    max_iter: int | None = None,
    chunk_size: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    bound: str = "residual",
    return_result: bool = False,
) -> Tensor | EigenResult:
    r"""Top-``k`` eigenvalues of :math:`P^{-1/2} H P^{-1/2}` with :math:`P` read from ``optimizer``.

    The preconditioned sharpness of Cohen et al. 2022 (arXiv 2207.14484, Sec. 2); it equilibrates
    at :math:`(2 + 2\beta_1)/((1-\beta_1)\eta)` for Adam (38/η at β1 = 0.9). See
    :func:`optimizer_preconditioner` for :math:`P`. Eval mode and the math attention kernel;
    ``inputs`` may be a DataLoader (``targets=None``, ``optimizer=`` by keyword; module docstring).
    """
    params = trainable_parameters(model)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_parameters(params):
        raise BadInput("k", k, f"an integer in [1, {num_parameters(params)}] (the number of trainable parameters)")
    if optimizer is None:
        raise BadInput("optimizer", None, "the Adam, AdamW or RMSprop optimizer whose preconditioner P is read")
    diag = optimizer_preconditioner(optimizer, params)
    with eval_mode(model):
        op = PreconditionedOperator(
            HessianOperator(model, loss_fn, inputs, targets, chunk_size=chunk_size, params=params), diag
        )
        result = lanczos(op, k, tol=tol, max_iter=max_iter, v0=v0, generator=generator, bound=bound)
    if not result.converged:
        warnings.warn(f"Lanczos stopped after {result.num_matvecs} products before reaching tol={tol}", stacklevel=2)
    return result if return_result else result.values
