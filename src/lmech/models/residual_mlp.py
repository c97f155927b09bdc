r"""A residual MLP whose width, depth and parametrization are arguments.

.. math::
   h_0 = W_{in} x, \qquad
   h_{l} = h_{l-1} + m\,W^{(2)}_l\,\varphi\big(W^{(1)}_l\,N(h_{l-1})\big)\quad (l = 1..L), \qquad
   f(x) = W_{out}\,N(h_L)

with :math:`N` a LayerNorm (``norm="pre"``, the pre-norm block of transformers) or the identity
(``norm="none"``), :math:`\varphi` the activation, and :math:`m = (L/L_{base})^{-\alpha}` the branch
multiplier of the parametrization (1 for SP and μP; Depth-μP α = ½, Yang et al. 2023, arXiv
2310.02244; CompleteP α = 1, Dey et al. 2025, arXiv 2505.01618). Each block is a residual branch
with two layers, as in a transformer's MLP. Built with the standard init
(:mod:`lmech.models.init`) from ``seed`` and put in ``parametrization`` relative to
``base_width``/``base_depth`` (:func:`lmech.models.base_shapes.self_parametrize`); ``model.param_table``
is the side table and ``model.param_groups(lr, optimizer)`` the optimizer groups.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from lmech.errors import BadInput
from lmech.models.base_shapes import self_parametrize
from lmech.models.init import standard_init_
from lmech.models.mlp import ACTIVATIONS
from lmech.param import ParamTable

__all__ = ["ResidualMLP"]


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise BadInput(name, value, f"an integer >= {minimum}")
    return int(value)


class Block(nn.Module):
    """One residual branch: W2 φ(W1 N(h)) (the multiplier is applied by :class:`ResidualMLP`)."""

    def __init__(self, width: int, norm: str, activation: str, device):
        super().__init__()
        self.norm = nn.LayerNorm(width, device=device) if norm == "pre" else nn.Identity()
        self.fc1 = nn.Linear(width, width, device=device)
        self.fc2 = nn.Linear(width, width, device=device)
        self.act = ACTIVATIONS[activation]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(h))))


class ResidualMLP(nn.Module):
    """The residual MLP of the module docstring."""

    def __init__(self, in_features: int, out_features: int, *, width: int, depth: int,
                 parametrization: str = "sp", norm: str = "pre", activation: str = "relu",
                 base_width: int | None = None, base_depth: int | None = None, seed: int = 0,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        in_features, out_features = _positive_int("in_features", in_features), _positive_int("out_features",
                                                                                               out_features)
        width, depth = _positive_int("width", width), _positive_int("depth", depth, 0)
        base_width = width if base_width is None else _positive_int("base_width", base_width)
        base_depth = max(depth, 1) if base_depth is None else _positive_int("base_depth", base_depth)
        if norm not in ("pre", "none"):
            raise BadInput("norm", norm, "'pre' (pre-norm LayerNorm) or 'none' (norm-free)")
        if activation not in ACTIVATIONS:
            raise BadInput("activation", activation, f"one of {sorted(ACTIVATIONS)}")
        self.width, self.depth, self.norm_kind = width, depth, norm
        build_device = "meta"
        self.input = nn.Linear(in_features, width, device=build_device)
        self.blocks = nn.ModuleList(Block(width, norm, activation, build_device) for _ in range(depth))
        self.norm = nn.LayerNorm(width, device=build_device) if norm == "pre" else nn.Identity()
        self.readout = nn.Linear(width, out_features, device=build_device)
        self.branch_multiplier = 1.0
        self.param_table: ParamTable | None = None
        if str(device) == "meta":
            return

        def build(w: int, dev: str) -> nn.Module:
            return ResidualMLP(in_features, out_features, width=w, depth=depth, norm=norm, activation=activation,
                               device=dev)

        self.to_empty(device="cpu").to(dtype)  # built on meta: skip torch's default init, draw ours once
        standard_init_(self, torch.Generator().manual_seed(int(seed)))
        p = self_parametrize(self, build, parametrization, base_width, max(depth, 1) / base_depth,
                             branches=[f"blocks.{i}" for i in range(depth)])
        self.param_table = p.table
        self.branch_multiplier = p.table.branch_multiplier
        self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input(x)
        for block in self.blocks:
            h = h + self.branch_multiplier * block(h)
        return self.readout(self.norm(h))

    def param_groups(self, lr: float, optimizer: str = "adam", weight_decay: float = 0.0,
                     eps: float | None = 1e-8) -> list[dict]:
        """Optimizer groups with this model's parametrization scales (:meth:`ParamTable.param_groups`)."""
        return self.param_table.param_groups(self, lr, optimizer, weight_decay, eps)
