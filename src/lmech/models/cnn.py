r"""A small CNN for 8×8 images (scikit-learn digits), with width, depth and parametrization as arguments.

.. math::
   h_1 = \varphi(\mathrm{conv}_{3\times3}(x)), \qquad h_l = \varphi(\mathrm{conv}_{3\times3}(h_{l-1}))
   \ (l = 2..L), \qquad f(x) = W_{out}\,\overline{h_L}

with ``width`` channels in every convolution (zero padding 1, stride 1, so the 8×8 grid is kept),
:math:`\overline{h}` the global average over the grid and :math:`W_{out}` a linear readout to
``num_classes``. With ``pool=True`` a 2×2 max-pool (stride 2) follows every convolution but the last,
:math:`h_l = \mathrm{maxpool}_{2\times2}(\varphi(\mathrm{conv}(h_{l-1})))`, so that successive layers see the
image at halved resolutions (8×8, 4×4, 2×2, ...), as in the CNNs whose representations Kornblith et al.
2019 compare (there by stride-2 convolutions); the pools have no parameters, so the
state dict is the same either way. The first convolution is the input layer (its fan-in, ``in_channels``·9,
does not grow with width), the others hidden layers, the readout the output layer (TP V's roles). Built with
the standard init (:mod:`lmech.models.init`) from ``seed`` and put in ``parametrization`` relative
to ``base_width``.
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

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """The CNN of the module docstring; inputs (B, 64), (B, 8, 8) or (B, C, H, W)."""

    def __init__(self, *, width: int = 16, depth: int = 2, parametrization: str = "sp", in_channels: int = 1,
                 num_classes: int = 10, image_size: int = 8, activation: str = "relu", base_width: int | None = None,
                 pool: bool = False, seed: int = 0, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        for name, value, low in (("width", width, 1), ("depth", depth, 1), ("in_channels", in_channels, 1),
                                 ("num_classes", num_classes, 1), ("image_size", image_size, 1)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise BadInput(name, value, f"an integer >= {low}")
        if activation not in ACTIVATIONS:
            raise BadInput("activation", activation, f"one of {sorted(ACTIVATIONS)}")
        if not isinstance(pool, bool):
            raise BadInput("pool", pool, "True or False")
        if pool and image_size < 2 ** (depth - 1):
            raise BadInput("depth", depth, f"at most 1 + log2(image_size = {image_size}) with pool=True (each "
                           "pool halves the grid)")
        self.in_channels, self.image_size, self.pool, self.activation = in_channels, image_size, pool, activation
        self.act = ACTIVATIONS[activation]
        dev = "meta"
        self.input = nn.Conv2d(in_channels, width, 3, padding=1, device=dev)
        self.hidden = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, device=dev) for _ in range(depth - 1))
        self.readout = nn.Linear(width, num_classes, device=dev)
        self.param_table: ParamTable | None = None
        if str(device) == "meta":
            return

        def build(w: int, d: str) -> nn.Module:
            return SmallCNN(width=w, depth=depth, in_channels=in_channels, num_classes=num_classes,
                            image_size=image_size, activation=activation, pool=pool, device=d)

        self.to_empty(device="cpu").to(dtype)  # built on meta: skip torch's default init, draw ours once
        standard_init_(self, torch.Generator().manual_seed(int(seed)))
        self.param_table = self_parametrize(self, build, parametrization, width if base_width is None else base_width,
                                            1.0).table
        self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.in_channels, self.image_size, self.image_size)
        h = self.act(self.input(x))
        for conv in self.hidden:
            h = self.act(conv(self.downsample(h)))
        return self.readout(h.mean(dim=(2, 3)))

    def downsample(self, h: torch.Tensor) -> torch.Tensor:
        """What the next convolution reads of an activated layer: its 2×2 max-pool with ``pool``, else itself."""
        return torch.nn.functional.max_pool2d(h, 2) if self.pool else h

    def param_groups(self, lr: float, optimizer: str = "adam", weight_decay: float = 0.0,
                     eps: float | None = 1e-8) -> list[dict]:
        """Optimizer groups with this model's parametrization scales (:meth:`ParamTable.param_groups`)."""
        return self.param_table.param_groups(self, lr, optimizer, weight_decay, eps)
