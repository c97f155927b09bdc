r"""Curvature matrices of a loss as symmetric linear operators on the flat parameter vector.

Every operator has ``shape``, ``dtype``, ``device``, ``@`` on a vector ``(P,)`` or a matrix ``(P, m)``,
counts its matrix-vector products in ``num_matvecs`` and adapts to SciPy with
:meth:`CurvatureOperator.to_scipy`: the Hessian (Pearlmutter 1994, eq. 3), the generalized
Gauss-Newton matrix (Schraudolph 2002, eq. 6) and a dense matrix (for tests against closed forms).

The Hessian and the GGN take their data as tensors ``(inputs, targets)`` or as a DataLoader (any
re-iterable of ``(inputs, targets)`` batches, :mod:`lmech.instruments._batches`): the empirical risk is
then the average over all the loader's examples, each batch weighted by its size (batch sizes may
differ), read one batch at a time (memory bounded by one batch, the loader read once per product).
They evaluate the model in eval mode, with the math attention kernel and no fused transformer fast
path (:func:`lmech.instruments._mode.measuring`): the fused kernels have no double backward, so a
``nn.TransformerEncoderLayer`` model works on the CPU as any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._batches import Examples
from lmech.instruments._mode import measuring
from lmech.instruments._params import flatten, num_parameters, trainable_parameters, unflatten
from lmech.instruments.curvature.checks import LossFn, _check_positive_int, check_batch

__all__ = ["CurvatureOperator", "MatrixOperator", "HessianOperator", "GGNOperator"]


class CurvatureOperator:
    """A symmetric linear operator on :math:`\\mathbb{R}^P` (subclasses implement ``_matmat``).

    ``A @ v`` accepts a vector of shape ``(P,)`` or a matrix of shape ``(P, m)``; ``num_matvecs``
    counts the matrix-vector products applied so far (a matrix with ``m`` columns counts ``m``).
    """

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device):
        self.shape = (int(size), int(size))
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_matvecs = 0

    def _matmat(self, matrix: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __matmul__(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim not in (1, 2) or x.shape[0] != self.shape[1]:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise BadInput("x", shape, f"a tensor of shape ({self.shape[1]},) or ({self.shape[1]}, m)")
        matrix = x.reshape(self.shape[1], -1).to(dtype=self.dtype, device=self.device)
        self.num_matvecs += matrix.shape[1]
        out = self._matmat(matrix)
        return out.reshape(-1) if x.ndim == 1 else out

    def to_dense(self) -> Tensor:
        """The full ``P x P`` matrix, by multiplying the identity (for tests on small problems)."""
        return self @ torch.eye(self.shape[0], dtype=self.dtype, device=self.device)

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` in float64 acting through this operator."""
        from scipy.sparse.linalg import LinearOperator

        def matmat(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x).reshape(self.shape[1], -1)
            out = self @ torch.as_tensor(x, dtype=self.dtype, device=self.device)
            return out.detach().cpu().double().numpy()

        return LinearOperator(
            self.shape,
            matvec=lambda v: matmat(v).ravel(),
            matmat=matmat,
            rmatvec=lambda v: matmat(v).ravel(),
            dtype=np.float64,
        )


class MatrixOperator(CurvatureOperator):
    """A dense symmetric matrix seen as an operator (to test algorithms against closed forms)."""

    def __init__(self, matrix: Tensor):
        if not isinstance(matrix, Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise BadInput("matrix", getattr(matrix, "shape", matrix), "a square 2-D tensor")
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    def _matmat(self, matrix: Tensor) -> Tensor:
        return self.matrix @ matrix


class _LossCurvature(CurvatureOperator):
    """Shared plumbing of the Hessian and the GGN: parameters, chunks of data, chunk weights.

    ``inputs`` and ``targets`` are tensors, or ``inputs`` is a DataLoader of ``(inputs, targets)``
    batches and ``targets`` is omitted.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: Tensor | Iterable,
        targets: Tensor | None = None,
        *,
        chunk_size: int | None = None,
        reduction: str = "mean",
        params: Sequence[nn.Parameter] | None = None,
        check: bool = True,
    ):
        self.params = list(params) if params is not None else trainable_parameters(model)
        if not self.params:
            raise BadInput("params", [], "at least one parameter")
        if reduction not in ("mean", "sum"):
            raise BadInput("reduction", reduction, "'mean' or 'sum' (how loss_fn reduces over examples)")
        if chunk_size is not None:
            chunk_size = _check_positive_int("chunk_size", chunk_size)
        first = self.params[0]
        self.data = Examples(inputs, targets, chunk_size=chunk_size, device=first.device)
        if check:
            check_batch(model, loss_fn, *self.data.first())
        self.model, self.loss_fn, self.reduction = model, loss_fn, reduction
        self.num_examples = len(self.data)
        super().__init__(num_parameters(self.params), first.dtype, first.device)
        self._sizes = [p.numel() for p in self.params]
        self._cache: list | None = None
        self._views: list[Tensor] | None = None

    def _weight(self, x: Tensor) -> float:
        """L = sum_c w_c L_c: w_c = n_c / N for mean-reduced chunk losses, 1 for summed ones."""
        return x.shape[0] / self.num_examples if self.reduction == "mean" else 1.0

    def _chunks(self):
        """``(x, y, w_c)`` for every chunk of the data (a DataLoader is read again on every call)."""
        return ((x, y, self._weight(x)) for x, y in self.data)

    def _chunk_loss(self, x: Tensor, y: Tensor) -> Tensor:
        return self.loss_fn(self.model(x), y)

    def _columns(self, matrix: Tensor) -> list[list[Tensor]]:
        return [unflatten(matrix[:, j], self.params) for j in range(matrix.shape[1])]


def _vjp_columns(
    outputs: Sequence[Tensor], inputs: Sequence[Tensor], columns: Sequence[Sequence[Tensor]]
) -> list[Tensor]:
    """``[d(outputs . c)/d inputs for c in columns]``, flat, one ``(P_in, m)`` matrix.

    All columns go through one vmapped backward (``is_grads_batched``); models whose operations
    vmap does not support fall back to one backward per column. The graph is retained.
    """
    inputs = list(inputs)
    if len(columns) == 1:  # one vector (Lanczos): a plain backward, no vmap overhead
        grads = torch.autograd.grad(outputs, inputs, list(columns[0]), retain_graph=True, allow_unused=True)
        return flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, inputs)])[:, None]
    try:
        stacked = [torch.stack([c[i] for c in columns]) for i in range(len(outputs))]
        grads = torch.autograd.grad(
            outputs, inputs, stacked, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        m = len(columns)
        parts = [
            torch.zeros(m, *p.shape, dtype=p.dtype, device=p.device) if g is None else g for g, p in zip(grads, inputs)
        ]
        return torch.cat([t.reshape(m, -1) for t in parts], 1).T
    except RuntimeError:
        out = []
        for c in columns:
            grads = torch.autograd.grad(outputs, inputs, list(c), retain_graph=True, allow_unused=True)
            out.append(flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, inputs)]))
        return torch.stack(out, 1)


class HessianOperator(_LossCurvature):
    r"""The Hessian :math:`H = \nabla^2_\theta \mathcal{L}(\theta)` of the empirical risk.

    .. math:: H v = \sum_c w_c\, \nabla_\theta\big(\nabla_\theta \mathcal{L}_c(\theta)^\top v\big)

    (Pearlmutter 1994, eq. 3), summed over chunks ``c`` of ``chunk_size`` examples (or the batches
    of a DataLoader ``inputs``, ``targets`` omitted) with weights :math:`w_c = N_c/N` so that memory
    stays bounded by one chunk. With a single chunk the graph of the gradient is built once and
    reused by every product (one double-backward per product); with several chunks it is rebuilt
    per chunk and per call, shared by the columns of a matrix. The model is evaluated in eval mode
    with the math attention kernel (see the module docstring).

    The operator is a snapshot of the parameters at construction: build a new one after an
    optimizer step (the cached graph refers to the old values).
    """

    def _graph(self, x: Tensor, y: Tensor) -> list[tuple[int, Tensor]]:
        """The gradient's graph as ``(parameter index, gradient)`` for gradients that depend on θ."""
        with torch.enable_grad(), measuring(self.model):
            loss = self._chunk_loss(x, y)
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        return [(i, g) for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def _matvec_cached(self, v: Tensor) -> Tensor:
        """One product on the single chunk: one double backward through the cached gradient graph."""
        if self._cache is None:
            self._cache = self._graph(*self.data.first())
        if self._views is None:  # a flat input buffer with fixed per-parameter views: no split per product
            self._buffer = torch.empty(self.shape[0], dtype=self.dtype, device=self.device)
            views = [t.view_as(p) for t, p in zip(self._buffer.split(self._sizes), self.params)]
            self._views = [views[i] for i, _ in self._cache]
            self._outputs = [g for _, g in self._cache]
        if not self._cache:  # the loss is at most linear in θ: zero Hessian
            return torch.zeros_like(v)
        self._buffer.copy_(v)
        grads = torch.autograd.grad(self._outputs, self.params, self._views, retain_graph=True, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, self.params)])

    def _matmat(self, matrix: Tensor) -> Tensor:
        single = self.data.single
        if single and matrix.shape[1] == 1:  # Lanczos: the hot path, no per-call bookkeeping
            return self._matvec_cached(matrix[:, 0])[:, None]  # one chunk: w = 1
        cols = self._columns(matrix)
        out = torch.zeros_like(matrix)
        if single and self._cache is None:
            self._cache = self._graph(*self.data.first())
        for x, y, w in self._chunks():
            graph = self._cache if single else self._graph(x, y)
            if not graph:  # the loss is at most linear in θ on this chunk: zero Hessian
                continue
            grads = [g for _, g in graph]
            out += w * _vjp_columns(grads, self.params, [[col[i] for i, _ in graph] for col in cols])
        return out.detach()


class GGNOperator(_LossCurvature):
    r"""The generalized Gauss-Newton matrix :math:`G = \sum_c w_c J_c^\top H^{(f)}_c J_c`.

    :math:`J_c` is the Jacobian of the chunk's outputs w.r.t. the parameters and
    :math:`H^{(f)}_c = \nabla^2_f \mathcal{L}_c` the Hessian of the loss w.r.t. the outputs
    (Schraudolph 2002, eq. 6). One product is :math:`J v` (the double-backward trick: the
    derivative of :math:`J^\top u` w.r.t. a dummy :math:`u`), then :math:`H^{(f)}(Jv)` by
    differentiating :math:`\nabla_f\mathcal{L}_c`, then :math:`J^\top(\cdot)` by one backward.
    G is positive semi-definite when the loss is convex in the outputs (MSE, cross-entropy).
    """

    def _graph(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, ...]]:
        with torch.enable_grad(), measuring(self.model):
            out = self.model(x)
            (grad_out,) = torch.autograd.grad(self.loss_fn(out, y), out, create_graph=True)
            dummy = torch.zeros_like(out, requires_grad=True)
            jt_dummy = torch.autograd.grad(out, self.params, dummy, create_graph=True, allow_unused=True)
        return out, grad_out, dummy, jt_dummy

    def _matmat(self, matrix: Tensor) -> Tensor:
        cols = self._columns(matrix)
        out = torch.zeros_like(matrix)
        single = self.data.single
        if single and self._cache is None:
            self._cache = list(self._graph(*self.data.first()))
        for x, y, w in self._chunks():
            f, grad_f, dummy, jt_dummy = self._cache if single else self._graph(x, y)
            used = [i for i, j in enumerate(jt_dummy) if j is not None]
            jv = _vjp_columns([jt_dummy[i] for i in used], [dummy], [[col[i] for i in used] for col in cols])
            hjv = _vjp_columns([grad_f], [f], [[c.reshape(f.shape)] for c in jv.T])
            out += w * _vjp_columns([f], self.params, [[c.reshape(f.shape)] for c in hjv.T])
        return out.detach()
