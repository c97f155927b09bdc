r"""The spectral density of an operator by stochastic Lanczos quadrature."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lmech.instruments.curvature.checks import _check_positive_int
from lmech.instruments.curvature.krylov import _lanczos_iterations, _random_unit, _tridiagonal
from lmech.instruments.curvature.operators import CurvatureOperator

__all__ = ["SpectralDensity", "spectral_density"]


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
