"""A deep linear network f(x) = W_L ⋯ W_1 x (Saxe, McClelland & Ganguli 2014, arXiv 1312.6120).

The network is a stack of bias-free ``nn.Linear`` layers. ``init_decoupled_`` gives Saxe et al.'s
"decoupled" initial condition (their section 2): every layer aligned with the teacher's singular
vectors through Haar-random hidden rotations R_l, each mode i carrying strength a0 = u0^{1/L} in every
layer, so that the product W_L⋯W_1 = Σ_i u0 a_i b_iᵀ and the network is balanced
(W_{l+1}ᵀ W_{l+1} = W_l W_lᵀ). An optional isotropic perturbation makes the start generic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lmech.data.synthetic import random_orthogonal
from lmech.errors import BadInput


class DeepLinear(nn.Module):
    """Depth-L linear network with layer widths ``dims = [d_in, h_1, ..., h_{L-1}, d_out]``."""

    def __init__(self, dims: Sequence[int], dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        super().__init__()
        if len(dims) < 3:
            raise BadInput("dims", tuple(dims), "at least [d_in, hidden, d_out] (depth >= 2)")
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=False, dtype=dtype, device=device) for a, b in zip(dims[:-1], dims[1:]))

    @property
    def depth(self) -> int:
        return len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def product(self) -> torch.Tensor:
        """The end-to-end map W = W_L ⋯ W_1, shape (d_out, d_in)."""
        w = self.layers[0].weight
        for layer in self.layers[1:]:
            w = layer.weight @ w
        return w

    def balancedness(self) -> list[torch.Tensor]:
        """D_l = W_{l+1}ᵀ W_{l+1} − W_l W_lᵀ for each pair of adjacent layers (conserved by gradient flow,
        Arora et al. 2018, arXiv 1802.06509, Theorem 1)."""
        ws = [layer.weight for layer in self.layers]
        return [b.T @ b - a @ a.T for a, b in zip(ws[:-1], ws[1:])]

    @torch.no_grad()
    def init_decoupled_(self, left: torch.Tensor, right: torch.Tensor, u0: float | torch.Tensor,
                        gen: torch.Generator, noise: float = 0.0) -> DeepLinear:
        """Set the decoupled, balanced initial condition with mode strength ``u0`` on each mode.

        ``left`` (d_out, r) and ``right`` (d_in, r) are the teacher's singular vectors a_i, b_i. Layer l
        maps mode i through the i-th columns of random rotations of the hidden spaces with scale
        a0 = u0^{1/L}. ``noise`` adds a Gaussian perturbation of per-entry std noise·a0/√fan_in to every
        layer (0 = exactly decoupled).
        """
        r = left.shape[1]
        hidden = [layer.out_features for layer in self.layers[:-1]]
        if min(hidden) < r:
            raise BadInput("hidden", min(hidden), f">= the number of modes {r}")
        u0 = torch.as_tensor(u0, dtype=torch.float64).expand(r)
        if torch.any(u0 <= 0):
            raise BadInput("init_scale", u0.tolist(), "positive mode strengths")
        a0 = torch.diag(u0 ** (1.0 / self.depth))
        frames = [right] + [random_orthogonal(h, gen)[:, :r] for h in hidden] + [left]
        for layer, inp, out in zip(self.layers, frames[:-1], frames[1:]):
            w = out.to(torch.float64) @ a0 @ inp.to(torch.float64).T
            if noise > 0:
                scale = noise * a0.diagonal().mean() / layer.in_features ** 0.5
                w = w + scale * torch.randn(w.shape, generator=gen, dtype=torch.float64)
            layer.weight.copy_(w.to(layer.weight.dtype))
        return self
