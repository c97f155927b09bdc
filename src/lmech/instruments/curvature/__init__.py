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

The operators and the model functions (:func:`hessian_eigenvalues`, :func:`hessian_trace`,
:func:`hessian_spectral_density`, :func:`preconditioned_sharpness`) evaluate the model in eval mode
(the curvature of a network with dropout active is a random matrix) and restore every module's mode
afterwards; they select the math attention kernel (``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``,
no fused transformer fast path), whose double backward exists on every device, so transformers
(``nn.TransformerEncoderLayer``) work on the CPU. Data: tensors ``inputs, targets``, or a DataLoader
of ``(inputs, targets)`` batches in place of ``inputs`` (``targets`` omitted): the loss averaged over
all its examples, batches weighted by their sizes, one batch in memory at a time.

Base choice. A Hessian-vector product here is plain ``torch.autograd`` double backward, with the
gradient's graph built once per operator and reused by every product when the data is one chunk
(one ``autograd.grad`` per product into fixed views of a flat buffer). On a 94k-parameter MLP with
2000 examples (2 CPU threads) one product costs about 1.7 gradients, against 2.7 with the graph
rebuilt, 3.1 for ``torch.func`` forward-over-reverse and 3.3 for curvlinops'

The package holds one idea per module: :mod:`.checks` (batch checks, eval mode), :mod:`.operators`
(Hessian, GGN, dense), :mod:`.preconditioner` (an adaptive optimizer's :math:`P` and
:math:`P^{-1/2} A P^{-1/2}`), :mod:`.krylov` (the Lanczos process), :mod:`.eigensolver` (top-k
eigenpairs), :mod:`.trace` (Hutchinson, Hutch++), :mod:`.density` (stochastic Lanczos quadrature) and
:mod:`.on_model` (the model functions).
"""

from lmech.instruments.curvature.checks import LossFn, check_batch, eval_mode
from lmech.instruments.curvature.density import SpectralDensity, spectral_density
from lmech.instruments.curvature.eigensolver import BOUNDS, EigenResult, lanczos, ritz_error_bounds
from lmech.instruments.curvature.on_model import (
    hessian_eigenvalues,
    hessian_spectral_density,
    hessian_trace,
    preconditioned_sharpness,
)
from lmech.instruments.curvature.operators import CurvatureOperator, GGNOperator, HessianOperator, MatrixOperator
from lmech.instruments.curvature.preconditioner import PreconditionedOperator, optimizer_preconditioner
from lmech.instruments.curvature.trace import TraceEstimate, hutchinson_trace, hutchpp_trace

__all__ = [
    "BOUNDS",
    "LossFn",
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
