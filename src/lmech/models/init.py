r"""The standard (SP) initialization of lmech's reference models, drawn from an explicit generator.

Every ``nn.Linear`` and convolution weight :math:`W_{ij} \sim \mathcal N(0, g^2/\text{fan\_in})`
(LeCun/He normal: the fan-in scaling of the standard parametrization, TP V Table 3 grey entries,
``g`` the gain), biases 0, ``nn.Embedding`` tables :math:`\mathcal N(0, 1)`, normalization gains 1 and
biases 0. The draws happen on the CPU in ``named_parameters()`` order from ``generator``, so a seed gives
the same network on every device; :func:`lmech.param.parametrize` then rescales this init to the
requested parametrization.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["standard_init_"]


@torch.no_grad()
def standard_init_(model: nn.Module, generator: torch.Generator, gain: float = 1.0) -> nn.Module:
    """Draw every parameter of ``model`` in place (module docstring); returns ``model``."""
    for module in model.modules():
        for pname, param in module.named_parameters(recurse=False):
            if param.device.type == "meta":
                continue
            if isinstance(module, nn.Embedding):
                std = 1.0
            elif pname == "weight" and param.ndim >= 2:
                std = gain / math.sqrt(param[0].numel())
            elif pname == "weight" and param.ndim == 1:  # a normalization gain
                param.fill_(1.0)
                continue
            else:
                param.zero_()
                continue
            draw = torch.randn(param.shape, generator=generator, dtype=torch.float64)
            param.copy_(draw.mul_(std))  # float64 product rounded once to the parameter's dtype
    return model
