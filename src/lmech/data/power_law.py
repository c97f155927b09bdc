r"""Gaussian data with power-law spectra: the features and targets of :mod:`lmech.theory.scaling`.

* :func:`power_law_features`: ψ ∈ R^M with E ψψᵀ = diag(λ) (the N = ∞ student sees ψ itself);
* :func:`random_projection`: the student's A ∈ R^{N×M}, i.i.d. N(0, 1);
* :func:`regression_samples`: samples of the student's features x = Aψ/√N and of the target y = w*·ψ,
  drawn directly in the eigenbasis of the projected covariance K = AΛAᵀ/N (O(N) per sample instead of
  the O(NM) of building ψ and projecting it). x and y are jointly Gaussian, so with K = V diag(μ) Vᵀ the
  rotated features u = Vᵀx are independent N(0, μ_i) and y = θ·u + ε with ε ~ N(0, 2L_N) independent of
  u, θ and L_N the best student's coefficients and loss (:func:`lmech.theory.scaling.regression_eigensystem`).
  Gradient descent and SGD commute with the rotation (w ↦ Vᵀw), so training on (u, y) is training on
  (x, y), sample for sample in distribution.

Normal draws are made in float32 from an explicit ``torch.Generator`` and used in float64 (a draw's
24-bit mantissa is far below any effect measured here; float32 draws are ~4× faster); every
computation on them is float64.
"""

from __future__ import annotations

import numbers

import torch

from lmech.errors import BadInput

__all__ = ["normals", "power_law_features", "random_projection", "regression_samples"]


def normals(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Standard normal draws of ``shape`` (float32 draws from ``gen``, returned as float64)."""
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(torch.float64)


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise BadInput(name, value, "a positive integer")
    return int(value)


def power_law_features(n: int, eigenvalues: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``n`` samples (rows) of ψ with independent coordinates ψ_k ~ N(0, λ_k): (n, M) float64."""
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    if lam.ndim != 1 or lam.numel() == 0 or bool((lam < 0).any()):
        raise BadInput("eigenvalues", tuple(lam.shape), "a non-empty 1-D tensor of variances >= 0")
    return normals((_count("n", n), lam.numel()), gen) * lam.sqrt()


def random_projection(n: int, m: int, gen: torch.Generator) -> torch.Tensor:
    """A ∈ R^{n×m} with i.i.d. N(0, 1) entries (float64)."""
    return normals((_count("n", n), _count("m", m)), gen)


def regression_samples(count: int, mu: torch.Tensor, theta: torch.Tensor, floor, gen: torch.Generator
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` samples (u, y) in the eigenbasis of the features' covariance (module docstring).

    ``mu`` (..., n) eigenvalues (zeros pad unused coordinates), ``theta`` (..., n) best coefficients,
    ``floor`` (...) the best loss L_N. Returns u (..., count, n) with u_i ~ N(0, μ_i) and
    y (..., count) = u·θ + √(2 L_N) ξ.
    """
    mu = torch.as_tensor(mu, dtype=torch.float64)
    theta = torch.as_tensor(theta, dtype=torch.float64)
    floor = torch.as_tensor(floor, dtype=torch.float64)
    if mu.shape != theta.shape or mu.ndim < 1 or floor.shape != mu.shape[:-1]:
        raise BadInput("theta", tuple(theta.shape), f"the shape of mu {tuple(mu.shape)}, floor of shape "
                       f"{tuple(mu.shape[:-1])}")
    count = _count("count", count)
    lead = tuple(mu.shape[:-1])
    u = normals(lead + (count, mu.shape[-1]), gen) * mu.clamp(min=0).sqrt().unsqueeze(-2)
    noise = normals(lead + (count,), gen) * (2 * floor.clamp(min=0)).sqrt().unsqueeze(-1)
    return u, (u * theta.unsqueeze(-2)).sum(-1) + noise
