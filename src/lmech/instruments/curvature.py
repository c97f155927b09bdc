r"""Curvature of a loss as linear operators, and the algorithms that read them.

The empirical risk of a model :math:`f_\theta` on data :math:`\{(x_n, y_n)\}_{n=1}^N` is

.. math::
    \mathcal{L}(\theta) = \frac{1}{N} \sum_{n=1}^N \ell(f_\theta(x_n), y_n),

with ``loss_fn(model(inputs), targets)`` returning the batch mean (``reduction="mean"``; pass
``reduction="sum"`` for a summed loss). Its curvature matrices act on the flat vector of all
trainable parameters (:mod:`lmech.instruments._params` fixes the order):

* the Hessian :math:`H = \nabla^2_\theta \mathcal{L}` (:class:`HessianOperator`), multiplied on a
  vector by reverse-over-reverse differentiation (Pearlmutter 1994, "Fast exact multiplication by
  the Hessian", Neural Computation 6(1), eq. 3: :math:`Hv = \nabla_\theta (\nabla_\theta
  \mathcal{L} \cdot v)`);
* the generalized Gauss-Newton matrix :math:`G = \frac1N \sum_n J_n^\top \nabla^2_f \ell_n\, J_n`
  with :math:`J_n = \partial f_\theta(x_n)/\partial\theta` (Schraudolph 2002, Neural Computation
  14(7), eq. 6) (:class:`GGNOperator`);
* the preconditioned matrix :math:`P^{-1/2} A P^{-1/2}` of an adaptive optimizer
  (:class:`PreconditionedOperator`, Cohen et al. 2022, arXiv 2207.14484, Sec. 2).

Every operator is symmetric, has ``shape``, ``dtype``, ``device``, ``@`` on a vector of shape
``(P,)`` or a matrix of shape ``(P, m)``, counts its matrix-vector products in ``num_matvecs`` and
adapts to SciPy with :meth:`CurvatureOperator.to_scipy`. Algorithms take any operator (curvlinops
style): :func:`lanczos` (top-k eigenpairs, warm-startable), :func:`hutchinson_trace`,
:func:`hutchpp_trace` and :func:`spectral_density` (stochastic Lanczos quadrature).

The model functions (:func:`hessian_eigenvalues`, :func:`hessian_trace`,
:func:`hessian_spectral_density`, :func:`preconditioned_sharpness`) put the model in eval mode
while they measure (the curvature of a network with dropout active is a random matrix) and restore
every module's mode afterwards.

Base choice. A Hessian-vector product here is plain ``torch.autograd`` double backward, with the
gradient's graph built once per operator and reused by every product when the data is one chunk
(one ``autograd.grad`` per product into fixed views of a flat buffer). On a 94k-parameter MLP with
2000 examples (2 CPU threads) one product costs about 1.7 gradients, against 2.7 with the graph
rebuilt, 3.1 for ``torch.func`` forward-over-reverse and 3.3 for curvlinops'
``HessianLinearOperator`` (see ``benchmarks/hessian_top_eig.py`` and BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._params import flatten, num_parameters, trainable_parameters, unflatten

__all__ = [
    "CurvatureOperator",
    "MatrixOperator",
    "HessianOperator",
    "GGNOperator",
    "PreconditionedOperator",
    "EigenResult",
    "TraceEstimate",
    "SpectralDensity",
    "check_batch",
    "eval_mode",
    "lanczos",
    "ritz_error_bounds",
    "hutchinson_trace",
    "hutchpp_trace",
    "spectral_density",
    "optimizer_preconditioner",
    "hessian_eigenvalues",
    "hessian_trace",
    "hessian_spectral_density",
    "preconditioned_sharpness",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


# ---------------------------------------------------------------------------------------------
# input checks and model mode
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# linear operators
# ---------------------------------------------------------------------------------------------


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
    """Shared plumbing of the Hessian and the GGN: parameters, chunks of data, chunk weights."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: Tensor,
        targets: Tensor,
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
        if check:
            check_batch(model, loss_fn, inputs, targets)
        n = inputs.shape[0]
        chunk_size = n if chunk_size is None else _check_positive_int("chunk_size", chunk_size)
        self.model, self.loss_fn, self.reduction = model, loss_fn, reduction
        self.chunks = list(zip(inputs.split(chunk_size), targets.split(chunk_size)))
        # L = sum_c w_c L_c with w_c = n_c / N for mean-reduced chunk losses, 1 for summed ones.
        self.weights = [(x.shape[0] / n if reduction == "mean" else 1.0) for x, _ in self.chunks]
        first = self.params[0]
        super().__init__(num_parameters(self.params), first.dtype, first.device)
        self._sizes = [p.numel() for p in self.params]
        self._cache: list | None = None
        self._views: list[Tensor] | None = None

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

    (Pearlmutter 1994, eq. 3), summed over chunks ``c`` of ``chunk_size`` examples with weights
    :math:`w_c = N_c/N` so that memory stays bounded by one chunk. With a single chunk the graph of
    the gradient is built once and reused by every product (one double-backward per product); with
    several chunks it is rebuilt per chunk and per call, shared by the columns of a matrix.

    The operator is a snapshot of the parameters at construction: build a new one after an
    optimizer step (the cached graph refers to the old values).
    """

    def _graph(self, x: Tensor, y: Tensor) -> list[tuple[int, Tensor]]:
        """The gradient's graph as ``(parameter index, gradient)`` for gradients that depend on θ."""
        with torch.enable_grad():
            loss = self._chunk_loss(x, y)
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        return [(i, g) for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def _matvec_cached(self, v: Tensor) -> Tensor:
        """One product on the single chunk: one double backward through the cached gradient graph."""
        if self._cache is None:
            self._cache = self._graph(*self.chunks[0])
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
        single = len(self.chunks) == 1
        if single and matrix.shape[1] == 1:  # Lanczos: the hot path, no per-call bookkeeping
            out = self._matvec_cached(matrix[:, 0])
            return (out if self.weights[0] == 1.0 else self.weights[0] * out)[:, None]
        cols = self._columns(matrix)
        out = torch.zeros_like(matrix)
        if single and self._cache is None:
            self._cache = self._graph(*self.chunks[0])
        for (x, y), w in zip(self.chunks, self.weights):
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
        with torch.enable_grad():
            out = self.model(x)
            (grad_out,) = torch.autograd.grad(self.loss_fn(out, y), out, create_graph=True)
            dummy = torch.zeros_like(out, requires_grad=True)
            jt_dummy = torch.autograd.grad(out, self.params, dummy, create_graph=True, allow_unused=True)
        return out, grad_out, dummy, jt_dummy

    def _matmat(self, matrix: Tensor) -> Tensor:
        cols = self._columns(matrix)
        out = torch.zeros_like(matrix)
        single = len(self.chunks) == 1
        if single and self._cache is None:
            self._cache = list(self._graph(*self.chunks[0]))
        for (x, y), w in zip(self.chunks, self.weights):
            f, grad_f, dummy, jt_dummy = self._cache if single else self._graph(x, y)
            used = [i for i, j in enumerate(jt_dummy) if j is not None]
            jv = _vjp_columns([jt_dummy[i] for i in used], [dummy], [[col[i] for i in used] for col in cols])
            hjv = _vjp_columns([grad_f], [f], [[c.reshape(f.shape)] for c in jv.T])
            out += w * _vjp_columns([f], self.params, [[c.reshape(f.shape)] for c in hjv.T])
        return out.detach()


class PreconditionedOperator(CurvatureOperator):
    r"""The symmetric preconditioned operator :math:`P^{-1/2} A P^{-1/2}` for a diagonal :math:`P`.

    Its eigenvalues are those of :math:`P^{-1} A`, the matrix that governs the stability of a
    preconditioned step :math:`\theta \leftarrow \theta - \eta P^{-1} \nabla\mathcal{L}` (Cohen et
    al. 2022, arXiv 2207.14484, Sec. 2: "preconditioned sharpness").
    """

    def __init__(self, operator: CurvatureOperator, diagonal: Tensor):
        if not isinstance(diagonal, Tensor) or diagonal.shape != (operator.shape[0],):
            raise BadInput(
                "diagonal", getattr(diagonal, "shape", diagonal), f"a tensor of shape ({operator.shape[0]},)"
            )
        if not bool((diagonal > 0).all()):
            raise BadInput("diagonal", "tensor with non-positive entries", "a strictly positive diagonal P")
        super().__init__(operator.shape[0], operator.dtype, operator.device)
        self.operator = operator
        self.inv_sqrt = diagonal.to(dtype=operator.dtype, device=operator.device).rsqrt()

    def _matmat(self, matrix: Tensor) -> Tensor:
        scale = self.inv_sqrt[:, None]
        before = self.operator.num_matvecs
        out = scale * (self.operator @ (scale * matrix))
        self.operator.num_matvecs = before  # counted once, here
        return out


# ---------------------------------------------------------------------------------------------
# Lanczos: top-k eigenpairs and the tridiagonal used by SLQ
# ---------------------------------------------------------------------------------------------


@dataclass
class EigenResult:
    r"""Top eigenpairs of an operator: ``values`` (descending), ``vectors`` (columns, ``(P, k)``).

    ``residuals`` are the Ritz residuals :math:`\|A x_i - \theta_i x_i\|`; ``errors`` the a-posteriori
    bounds on :math:`|\lambda_i - \theta_i|` that the stopping rule used (see :func:`lanczos`).
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    num_matvecs: int
    converged: bool
    errors: Tensor | None = None


BOUNDS = ("residual", "gap")


def _random_unit(size: int, dtype, device, generator: torch.Generator | None) -> Tensor:
    v = torch.randn(size, dtype=torch.float64, generator=generator).to(dtype=dtype, device=device)
    return v / v.norm()


def _orthogonalize(w: Tensor, basis: Tensor) -> tuple[Tensor, float]:
    r"""Classical Gram-Schmidt against the rows of ``basis``, repeated once when it cancelled much.

    A second pass is taken when the first left less than :math:`1/\sqrt2` of the norm (Daniel,
    Gragg, Kaufman & Stewart 1976, Math. Comp. 30(136); "twice is enough", Giraud et al. 2005).
    Returns the orthogonalized ``w`` (updated in place) and its norm.
    """
    before = float(torch.linalg.vector_norm(w))
    if basis.shape[0] == 0:
        return w, before
    w = torch.addmv(w, basis.T, basis @ w, alpha=-1.0)
    after = float(torch.linalg.vector_norm(w))
    if after < 0.7071 * before:
        w = torch.addmv(w, basis.T, basis @ w, alpha=-1.0)
        after = float(torch.linalg.vector_norm(w))
    return w, after


def _lanczos_iterations(
    op: CurvatureOperator,
    start: Tensor,
    max_steps: int,
    generator: torch.Generator | None,
    stop: Callable[[list[float], list[float]], bool] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Lanczos with full reorthogonalization (Golub & Van Loan 2013, Alg. 10.1.1).

    Returns ``(alpha, beta, basis, last_beta)``: the diagonal and off-diagonal of the tridiagonal
    :math:`T = Q^\\top A Q` (float64), the orthonormal basis ``Q`` as rows, and the final
    :math:`\\beta_m` that sets the Ritz residuals :math:`|\\beta_m s_{m,i}|`. ``stop(alphas, betas)``
    (Python lists; ``betas[-1]`` is :math:`\\beta_m`) is asked after every step. An invariant
    subspace (breakdown, :math:`\\beta = 0`) is continued with a fresh random direction, so the
    basis keeps growing up to ``P``.
    """
    n = op.shape[0]
    max_steps = min(max_steps, n)
    basis = torch.empty(max_steps, n, dtype=op.dtype, device=op.device)
    alphas: list[float] = []
    betas: list[float] = []
    torch.div(start, start.norm(), out=basis[0])
    scale = 0.0
    for j in range(max_steps):
        q = basis[j]
        w = op @ q
        alpha = float(torch.dot(q, w))
        # three-term recurrence, then full reorthogonalization against every previous vector
        w = w.sub_(q, alpha=alpha) if j == 0 else w.sub_(q, alpha=alpha).sub_(basis[j - 1], alpha=betas[-1])
        w, beta = _orthogonalize(w, basis[: j + 1])
        alphas.append(alpha)
        scale = max(scale, abs(alpha), beta)
        if j == max_steps - 1:
            betas.append(beta)
            break
        if beta <= 1e-12 * max(scale, 1e-300):  # invariant subspace: restart, T splits into blocks
            betas.append(0.0)
            fresh, norm = _orthogonalize(_random_unit(n, op.dtype, op.device, generator), basis[: j + 1])
            torch.div(fresh, norm, out=basis[j + 1])
        else:
            betas.append(beta)
            torch.div(w, beta, out=basis[j + 1])  # the next Lanczos vector, written in place
        if stop is not None and stop(alphas, betas):
            break
    m = len(alphas)
    return (
        torch.tensor(alphas, dtype=torch.float64),
        torch.tensor(betas[: m - 1], dtype=torch.float64),
        basis[:m],
        torch.tensor(betas[m - 1], dtype=torch.float64),
    )


def _tridiagonal(alpha: Tensor, beta: Tensor) -> Tensor:
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)


def _ritz(alphas: Sequence[float], betas: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ritz values (ascending), the eigenvectors ``S`` of ``T`` (columns) and the residuals
    :math:`|\\beta_m s_{m,i}|`, from the Lanczos coefficients (``betas[m-1]`` = :math:`\\beta_m`)."""
    m = len(alphas)
    if m == 1:
        return np.array(alphas, dtype=np.float64), np.ones((1, 1)), np.abs(np.array(betas[:1], dtype=np.float64))
    # LAPACK dstev directly: scipy.linalg.eigh_tridiagonal's checks cost more than the solve here
    theta, s, info = scipy.linalg.lapack.dstev(
        np.asarray(alphas, dtype=np.float64), np.asarray(betas[: m - 1], dtype=np.float64), compute_v=1
    )
    if info != 0:  # pragma: no cover - dstev fails only on non-finite input
        theta, s = np.linalg.eigh(np.diag(alphas) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1))
    return theta, s, np.abs(betas[m - 1] * s[-1])


def ritz_error_bounds(theta: np.ndarray, residuals: np.ndarray, bound: str = "residual") -> np.ndarray:
    r"""A-posteriori bounds on :math:`\lambda_i - \theta_i` for Ritz values sorted ascending.

    :math:`\theta_i` is the ``i``-th largest Ritz value of a Rayleigh-Ritz (e.g. Lanczos)
    approximation of a symmetric ``A`` with residual :math:`r_i = \|A x_i - \theta_i x_i\|`.
    Cauchy interlacing gives :math:`\theta_i \le \lambda_i` (Parlett 1998, "The Symmetric
    Eigenvalue Problem", Thm. 10.1.1) and some eigenvalue lies within :math:`r_i` of
    :math:`\theta_i` (Thm. 4.5.1). No Krylov bound can say *which* eigenvalue: both bounds below
    read it as :math:`\lambda_i`, i.e. they assume the top of the spectrum is resolved.

    * ``"residual"``: :math:`0 \le \lambda_i - \theta_i \le r_i`. It fails only while an
      eigenvalue cluster narrower than about :math:`r_i` is unresolved, and then the error is at
      most about the cluster's width.
    * ``"gap"`` (Kato-Temple, Parlett 1998, Thm. 11.7.1): if no eigenvalue lies in
      :math:`(\alpha_i, \lambda_i)` and :math:`\theta_i > \alpha_i`, then
      :math:`\lambda_i - \theta_i \le r_i^2/(\theta_i - \alpha_i)` (from :math:`\sum_j c_j^2
      (\lambda_j - \alpha)(\lambda_j - \lambda_i) = r_i^2 + (\theta_i - \alpha)(\theta_i -
      \lambda_i)`, every term on the left being :math:`\ge 0`). Here :math:`\alpha_i = \max_{j>i}
      (\theta_j + r_j)`, which bounds :math:`\lambda_{i+1}` only if every lower eigenvalue is
      represented by a lower Ritz value. That fails while Lanczos has not resolved the top of
      the spectrum: for a bunched top (edge of stability: 1, 0.99, 0.985, 0.98 above a bulk)
      all of the cluster hides under :math:`\theta_1`, :math:`\theta_2` sits near the bulk with a
      small residual, and the bound claims 1e-3 accuracy after 7 products when the error is
      larger (``tests/instruments/test_curvature.py``). An estimate, not a guarantee; it is
      never looser than the residual bound.

    The smallest Ritz value has no neighbour below and keeps its residual bound.
    """
    theta = np.asarray(theta, dtype=np.float64)
    res = np.asarray(residuals, dtype=np.float64)
    if bound == "residual" or theta.size == 1:
        return res.copy()
    gap = np.full_like(theta, -np.inf)
    gap[1:] = theta[1:] - np.maximum.accumulate(theta + res)[:-1]
    with np.errstate(divide="ignore"):
        kato_temple = np.where(gap > 0, res**2 / np.where(gap > 0, gap, 1.0), np.inf)
    return np.minimum(res, kato_temple)


def lanczos(
    op: CurvatureOperator,
    k: int = 1,
    *,
    tol: float = 1e-6,
    max_iter: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    bound: str = "residual",
) -> EigenResult:
    r"""The ``k`` largest (algebraic) eigenvalues of a symmetric operator and their eigenvectors.

    Lanczos with full reorthogonalization (Golub & Van Loan 2013, "Matrix Computations", Sec.
    10.1). After step ``m`` the Ritz pairs :math:`(\theta_i, Q s_i)` of
    :math:`T_m = Q_m^\top A Q_m` have residual :math:`r_i = \|A Q s_i - \theta_i Q s_i\| = |\beta_m
    s_{m,i}|` (G&VL eq. 10.1.7). Iteration stops when every top-``k`` eigenvalue is known to relative
    accuracy ``tol``: its error bound (:func:`ritz_error_bounds`) is at most ``tol * max(|theta_i|,
    sqrt(eps) * max_j |theta_j|)``.

    ``bound="residual"`` (default) bounds the error by :math:`r_i`, which also makes the
    eigenvectors accurate (residual :math:`\le` ``tol`` :math:`|\theta_i|`). ``bound="gap"``
    uses the Kato-Temple estimate :math:`\min(r_i, r_i^2/\delta_i)`, :math:`\delta_i = \theta_i -
    \max_{j>i}(\theta_j + r_j)`: a third fewer products when the top eigenvalue is isolated, but
    not a guarantee (it fails on bunched tops, see :func:`ritz_error_bounds`). The bounds are in
    ``EigenResult.errors``.

    Eigenvalues are ordered algebraically (largest first), never by magnitude: a large negative
    eigenvalue is not "top". ``v0`` warm-starts the iteration: a vector ``(P,)`` or a block of
    previous Ritz vectors ``(P, m)`` (their sum starts the Krylov space, so a slowly moving
    spectrum is recovered in about ``k`` + a few products). Lanczos with a single start vector
    finds one vector per eigenspace: a repeated eigenvalue is returned once per direction the
    Krylov space reaches, which in floating point eventually includes its multiplicity.
    """
    n = op.shape[0]
    k = _check_positive_int("k", k)
    if k > n:
        raise BadInput("k", k, f"at most the operator size {n} (number of parameters)")
    tol = _check_tol(tol)
    max_iter = min(n, max(200, 4 * k)) if max_iter is None else _check_positive_int("max_iter", max_iter)
    if max_iter < k:
        raise BadInput("max_iter", max_iter, f"at least k={k}")
    if bound not in BOUNDS:
        raise BadInput("bound", bound, "'residual' (certified) or 'gap' (Kato-Temple estimate)")
    if v0 is None:
        start = _random_unit(n, op.dtype, op.device, generator)
    else:
        if not isinstance(v0, Tensor) or v0.shape[0] != n or v0.ndim not in (1, 2):
            raise BadInput("v0", getattr(v0, "shape", v0), f"a tensor of shape ({n},) or ({n}, m)")
        start = v0.to(dtype=op.dtype, device=op.device)
        start = start.sum(dim=1) if start.ndim == 2 else start
        norm = float(start.norm())  # inf or nan when any entry is not finite
        if not math.isfinite(norm) or norm == 0.0:
            start = _random_unit(n, op.dtype, op.device, generator)
    matvecs_before = op.num_matvecs
    sqrt_eps = math.sqrt(torch.finfo(op.dtype).eps)

    def check(theta: np.ndarray, res: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """Top-k Ritz values (descending), their error bounds, and whether all meet ``tol``."""
        err = ritz_error_bounds(theta, res, bound)[::-1][:k]
        values = theta[::-1][:k]
        floor = sqrt_eps * np.abs(theta).max()
        return values, err, bool(np.all(err <= tol * np.maximum(np.abs(values), floor)))

    def converged(alphas: list[float], betas: list[float]) -> bool:
        if len(alphas) < k:
            return False
        theta, _, res = _ritz(alphas, betas)
        return check(theta, res)[2]

    alpha, beta, basis, last = _lanczos_iterations(op, start, max_iter, generator, stop=converged)
    theta, s, res = _ritz(alpha.tolist(), beta.tolist() + [float(last)])
    values, err, ok = check(theta, res)
    ok = ok or basis.shape[0] == n
    s_top = torch.from_numpy(s[:, ::-1][:, :k].copy())
    vectors = basis.T @ s_top.to(basis.dtype)
    return EigenResult(
        torch.from_numpy(values.copy()),
        vectors,
        torch.from_numpy(res[::-1][:k].copy()),
        op.num_matvecs - matvecs_before,
        ok,
        torch.from_numpy(err.copy()),
    )


# ---------------------------------------------------------------------------------------------
# trace and spectral density
# ---------------------------------------------------------------------------------------------


@dataclass
class TraceEstimate:
    """A stochastic trace estimate with its standard error (from the spread of its samples)."""

    value: float
    std_error: float
    num_matvecs: int
    samples: Tensor


def _probes(n: int, m: int, distribution: str, dtype, device, generator) -> Tensor:
    if distribution == "rademacher":
        z = torch.randint(0, 2, (n, m), generator=generator, dtype=torch.int64).to(torch.float64) * 2 - 1
    elif distribution == "normal":
        z = torch.randn(n, m, generator=generator, dtype=torch.float64)
    else:
        raise BadInput("distribution", distribution, "'rademacher' or 'normal'")
    return z.to(dtype=dtype, device=device)


def _estimate(exact: float, samples: Tensor, matvecs: int) -> TraceEstimate:
    m = samples.numel()
    se = float(samples.std(unbiased=True)) / math.sqrt(m) if m > 1 else float("nan")
    return TraceEstimate(exact + float(samples.mean()), se, matvecs, samples)


def hutchinson_trace(
    op: CurvatureOperator,
    num_samples: int = 100,
    *,
    distribution: str = "rademacher",
    block_size: int = 16,
    generator: torch.Generator | None = None,
) -> TraceEstimate:
    r"""Hutchinson's estimator :math:`\operatorname{tr}A \approx \frac1m \sum_{i=1}^m z_i^\top A z_i`.

    Unbiased for :math:`E[zz^\top] = I` (Hutchinson 1990, Commun. Stat. Simul. 19(2), Prop. 1);
    Rademacher probes have the least variance, :math:`2(\|A\|_F^2 - \sum_i A_{ii}^2)`. The standard
    error is the sample standard deviation of the :math:`z_i^\top A z_i` over :math:`\sqrt m`.
    """
    m = _check_positive_int("num_samples", num_samples)
    block_size = _check_positive_int("block_size", block_size)
    n = op.shape[0]
    before = op.num_matvecs
    parts = []
    for start in range(0, m, block_size):
        z = _probes(n, min(block_size, m - start), distribution, op.dtype, op.device, generator)
        parts.append((z * (op @ z)).sum(0).double())
    return _estimate(0.0, torch.cat(parts), op.num_matvecs - before)


def hutchpp_trace(
    op: CurvatureOperator,
    num_matvecs: int = 99,
    *,
    distribution: str = "rademacher",
    generator: torch.Generator | None = None,
) -> TraceEstimate:
    r"""Hutch++ (Meyer, Musco, Musco & Woodruff 2021, SOSA, Algorithm 1).

    With ``num_matvecs = 3m``: ``Q = orth(A S)`` for an ``n x m`` sketch ``S``, then

    .. math:: \operatorname{tr}A \approx \operatorname{tr}(Q^\top A Q)
        + \frac1m \sum_{i=1}^m g_i^\top (I - QQ^\top) A (I - QQ^\top) g_i,

    exact on the top subspace and Hutchinson on its complement. Given ``Q`` the first term has no
    variance, so the standard error is that of the Hutchinson samples on the complement.
    """
    total = _check_positive_int("num_matvecs", num_matvecs, lower=3)
    m = total // 3
    n = op.shape[0]
    before = op.num_matvecs
    sketch = _probes(n, m, distribution, op.dtype, op.device, generator)
    q, _ = torch.linalg.qr(op @ sketch)
    exact = float(torch.trace(q.T @ (op @ q)))
    g = _probes(n, m, distribution, op.dtype, op.device, generator)
    g = g - q @ (q.T @ g)
    samples = (g * (op @ g)).sum(0).double()
    return _estimate(exact, samples, op.num_matvecs - before)


@dataclass
class SpectralDensity:
    r"""A spectral measure :math:`\sum_j w_j \delta(\lambda - \theta_j)` with :math:`\sum_j w_j = 1`.

    It approximates the empirical eigenvalue distribution :math:`\frac1P\sum_i \delta(\lambda -
    \lambda_i)` of the operator.
    """

    nodes: Tensor
    weights: Tensor
    num_matvecs: int

    def smoothed(self, grid: Tensor, sigma: float) -> Tensor:
        """Density on ``grid`` after convolving each node with a Gaussian of width ``sigma``."""
        grid = torch.as_tensor(grid, dtype=torch.float64)
        z = (grid[:, None] - self.nodes[None, :]) / sigma
        return (torch.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))) @ self.weights


def spectral_density(
    op: CurvatureOperator,
    *,
    num_probes: int = 10,
    num_steps: int = 64,
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    r"""Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017, SIMAX 38(4), Sec. 3; Ghorbani,
    Krishnan & Xiao 2019, ICML, Sec. 2.2).

    For each of ``num_probes`` random unit vectors :math:`v`, ``num_steps`` Lanczos steps give
    :math:`T = S \Theta S^\top`; the Gauss quadrature :math:`\sum_j s_{1j}^2 \delta(\lambda -
    \theta_j)` matches :math:`v^\top \delta(\lambda - A) v` on all polynomials of degree
    :math:`< 2\cdot` ``num_steps``. Averaging over probes gives the spectral measure.
    """
    num_probes = _check_positive_int("num_probes", num_probes)
    num_steps = _check_positive_int("num_steps", num_steps)
    n = op.shape[0]
    before = op.num_matvecs
    nodes, weights = [], []
    for _ in range(num_probes):
        start = _random_unit(n, op.dtype, op.device, generator)
        alpha, beta, _, _ = _lanczos_iterations(op, start, num_steps, generator)
        theta, s = torch.linalg.eigh(_tridiagonal(alpha, beta))
        nodes.append(theta)
        weights.append(s[0] ** 2 / num_probes)
    return SpectralDensity(torch.cat(nodes), torch.cat(weights), op.num_matvecs - before)


# ---------------------------------------------------------------------------------------------
# adaptive optimizers' preconditioner
# ---------------------------------------------------------------------------------------------


def _step_count(state: dict) -> float:
    step = state.get("step", 0)
    return float(step.item() if isinstance(step, Tensor) else step)


def optimizer_preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> Tensor:
    r"""The diagonal preconditioner :math:`P` of an Adam-type optimizer, flat over ``params``.

    As ``torch.optim`` computes its step (Cohen et al. 2022, arXiv 2207.14484, eq. 2):

    * Adam / AdamW: :math:`P = \sqrt{\hat v} + \epsilon`, :math:`\hat v = v/(1-\beta_2^t)` (AMSGrad:
      the running maximum of :math:`v`);
    * RMSprop: :math:`P = \sqrt{v} + \epsilon` (centered: :math:`\sqrt{v - m^2} + \epsilon`).

    When parameter groups have different learning rates :math:`\eta_g`, the ratio
    :math:`\eta_0/\eta_g` to the first group's rate is folded into :math:`P`, so that the step is
    :math:`\eta_0 P^{-1}\nabla\mathcal{L}` with one scalar rate :math:`\eta_0`.
    """
    kinds = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)
    if not isinstance(optimizer, kinds):
        raise BadInput("optimizer", type(optimizer).__name__, "torch.optim.Adam, AdamW or RMSprop")
    lr0 = float(optimizer.param_groups[0]["lr"])
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    parts = []
    for p in params:
        group = group_of.get(id(p))
        if group is None:
            raise BadInput("optimizer", type(optimizer).__name__, "an optimizer holding every trainable parameter")
        state = optimizer.state.get(p, {})
        if not state or _step_count(state) == 0:
            raise BadInput("optimizer", type(optimizer).__name__, "an optimizer that has taken at least one step")
        eps = float(group["eps"])
        if isinstance(optimizer, torch.optim.RMSprop):
            v = state["square_avg"]
            if group.get("centered", False):
                v = v - state["grad_avg"] ** 2
            diag = v.sqrt() + eps
        else:
            v = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
            bias2 = 1 - float(group["betas"][1]) ** _step_count(state)
            diag = (v / bias2).sqrt() + eps
        parts.append((diag * (lr0 / float(group["lr"]))).reshape(-1))
    return torch.cat(parts).detach()


# ---------------------------------------------------------------------------------------------
# entry points on a model
# ---------------------------------------------------------------------------------------------


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
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
    eval mode; :func:`lanczos` to relative accuracy ``tol`` (float64 models reach 1e-10), certified
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
    inputs: Tensor,
    targets: Tensor,
    *,
    method: str = "hutch++",
    num_matvecs: int = 99,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> TraceEstimate:
    """Stochastic estimate of the Hessian trace: ``method`` is ``"hutch++"`` or ``"hutchinson"``."""
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
    inputs: Tensor,
    targets: Tensor,
    *,
    num_probes: int = 10,
    num_steps: int = 64,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    """The Hessian's eigenvalue density by stochastic Lanczos quadrature (:func:`spectral_density`)."""
    with eval_mode(model):
        op = HessianOperator(model, loss_fn, inputs, targets, chunk_size=chunk_size)
        return spectral_density(op, num_probes=num_probes, num_steps=num_steps, generator=generator)


def preconditioned_sharpness(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    optimizer: torch.optim.Optimizer,
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
    :func:`optimizer_preconditioner` for :math:`P`.
    """
    params = trainable_parameters(model)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_parameters(params):
        raise BadInput("k", k, f"an integer in [1, {num_parameters(params)}] (the number of trainable parameters)")
    diag = optimizer_preconditioner(optimizer, params)
    with eval_mode(model):
        op = PreconditionedOperator(
            HessianOperator(model, loss_fn, inputs, targets, chunk_size=chunk_size, params=params), diag
        )
        result = lanczos(op, k, tol=tol, max_iter=max_iter, v0=v0, generator=generator, bound=bound)
    if not result.converged:
        warnings.warn(f"Lanczos stopped after {result.num_matvecs} products before reaching tol={tol}", stacklevel=2)
    return result if return_result else result.values
