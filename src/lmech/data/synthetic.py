"""Synthetic data with known structure: whitened inputs and linear teachers of chosen spectrum.

Every generator takes an explicit ``torch.Generator`` (or a seed) so that a run's data derive from its
seed alone; nothing touches torch's global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmech.errors import BadInput


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (data are drawn on the CPU, then moved)."""
    return torch.Generator().manual_seed(int(seed))


def random_orthogonal(n: int, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A Haar-random n×n orthogonal matrix (QR of a Gaussian matrix with the sign fix of Mezzadri 2007)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.to(dtype)


def whitened_inputs(n: int, dim: int, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` inputs of dimension ``dim`` (rows), exactly whitened: (1/n) Xᵀ X = I.

    Gaussian samples are transformed by the inverse square root of their empirical second moment,
    so the input correlation is the identity to round-off (the assumption of Saxe et al. 2014, eq. 3).
    Requires ``n >= dim``.
    """
    if dim < 1:
        raise BadInput("dim", dim, "a positive integer")
    if n < dim:
        raise BadInput("n", n, f">= the input dimension {dim} (exact whitening needs full rank)")
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(x.T @ x / n)
    x = x @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    return x.to(dtype)


@dataclass
class LinearTeacher:
    """A teacher map M = U diag(s) Vᵀ; its singular vectors are the modes learning is measured on."""

    matrix: torch.Tensor  # (d_out, d_in)
    singular_values: torch.Tensor  # (r,)
    left: torch.Tensor  # (d_out, r): columns a_i
    right: torch.Tensor  # (d_in, r): columns b_i

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Targets y = M x for inputs in rows."""
        return x @ self.matrix.T


def linear_teacher(singular_values: Sequence[float], d_in: int, d_out: int, gen: torch.Generator,
                   dtype: torch.dtype = torch.float64) -> LinearTeacher:
    """A random linear map with the given singular values and Haar-random singular vectors."""
    s = torch.as_tensor(list(singular_values), dtype=torch.float64)
    r = len(s)
    if r == 0 or r > min(d_in, d_out):
        raise BadInput("singular_values", tuple(singular_values),
                       f"between 1 and min(d_in, d_out) = {min(d_in, d_out)} values")
    if torch.any(s <= 0):
        raise BadInput("singular_values", tuple(singular_values), "positive values")
    u = random_orthogonal(d_out, gen)[:, :r]
    v = random_orthogonal(d_in, gen)[:, :r]
    m = u @ torch.diag(s) @ v.T
    return LinearTeacher(m.to(dtype), s.to(dtype), u.to(dtype), v.to(dtype))


def chebyshev_regression(n: int = 20, degree: int = 6, dtype: torch.dtype = torch.float64
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression of the Chebyshev polynomial T_degree on ``n`` evenly spaced points of [-1, 1].

    T_k(x) = cos(k arccos x). Returns inputs (n, 1) and targets (n, 1): the small synthetic problem of
    the edge-of-stability experiments (Cohen et al. 2021, arXiv 2103.00065, appendix).
    """
    if n < 2:
        raise BadInput("n_samples", n, "at least 2 points")
    if degree < 0:
        raise BadInput("degree", degree, "a non-negative integer")
    x = torch.linspace(-1.0, 1.0, n, dtype=torch.float64)
    y = torch.cos(degree * torch.arccos(x.clamp(-1.0, 1.0)))
    return x[:, None].to(dtype), y[:, None].to(dtype)


def sphere_points(n: int, d: int, gen: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` points uniform on the sphere of radius √d in R^d (|x|²/d = 1: unit input variance per coordinate,
    the convention of the infinite-width kernels)."""
    if n < 1 or d < 1:
        raise BadInput("n, d", (n, d), "positive integers")
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return (x / x.norm(dim=1, keepdim=True) * math.sqrt(d)).to(dtype)


def sphere_target(x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A smooth two-direction target on the sphere of radius √d: sin(2 u·x/√d) + (v·x)²/d − 1/d."""
    d = x.shape[1]
    return torch.sin(2 * x @ u / math.sqrt(d)) + (x @ v) ** 2 / d - 1.0 / d


@dataclass
class RegressionTask:
    """Train and test inputs and targets of a regression problem."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def sphere_regression(n_train: int, n_test: int, d: int, gen: torch.Generator) -> RegressionTask:
    """Inputs uniform on the sphere of radius √d, targets :func:`sphere_target` along two random unit
    directions (drawn after the inputs, from the same generator); targets have shape (n,)."""
    x = sphere_points(n_train + n_test, d, gen)
    u, v = (torch.randn(d, generator=gen, dtype=torch.float64) for _ in range(2))
    y = sphere_target(x, u / u.norm(), v / v.norm())
    return RegressionTask(x[:n_train], y[:n_train], x[n_train:], y[n_train:])
