r"""Stochastic trace estimators of an operator: Hutchinson and Hutch++."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lmech.errors import BadInput
from lmech.instruments.curvature.checks import _check_positive_int
from lmech.instruments.curvature.operators import CurvatureOperator

__all__ = ["TraceEstimate", "hutchinson_trace", "hutchpp_trace"]


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
