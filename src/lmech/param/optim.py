r"""Optimizers on a parametrization's groups, and Adam-atan2 (Adam without ε).

Adam-atan2 (Everett et al. 2024, *Scaling Exponents Across Parameterizations and Optimizers*,
arXiv 2407.05872, §4.3) replaces Adam's :math:`\hat m/(\sqrt{\hat v}+\epsilon)` by
:math:`a\,\operatorname{atan2}(\hat m,\, b\sqrt{\hat v})`: bounded, defined at :math:`\hat v = 0`, and
invariant to the gradient's scale, so there is no ε to rescale with width. For
:math:`|\hat m| \ll b\sqrt{\hat v}` it is :math:`(a/b)\,\hat m/\sqrt{\hat v}`, Adam with ε = 0.
Weight decay is decoupled as in AdamW: :math:`\theta \leftarrow \theta(1-\eta\lambda)` before the step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lmech.errors import BadInput
from lmech.param.table import ParamTable

__all__ = ["AdamAtan2", "make_optimizer"]


class AdamAtan2(torch.optim.Optimizer):
    """Adam with the atan2 update (module docstring). ``a``, ``b``: the update's scale constants."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 0.0, a: float = 1.0, b: float = 1.0):
        if not (lr > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1 and weight_decay >= 0 and a > 0 and b > 0):
            raise BadInput("AdamAtan2", dict(lr=lr, betas=betas, weight_decay=weight_decay, a=a, b=b),
                           "lr > 0, betas in [0, 1), weight_decay >= 0, a > 0, b > 0")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, a=a, b=b))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                m_hat = m / (1 - beta1**t)
                denom = v.div(1 - beta2**t).sqrt_().mul_(group["b"])
                p.add_(torch.atan2(m_hat, denom), alpha=-group["lr"] * group["a"])
        return loss


def make_optimizer(model: nn.Module, table: ParamTable, name: str, lr: float, weight_decay: float = 0.0,
                   eps: float = 1e-8, **kwargs: Any) -> torch.optim.Optimizer:
    """``torch.optim.SGD``/``Adam``/``AdamW`` or :class:`AdamAtan2` on ``table.param_groups(model, ...)``.

    ``kwargs`` go to the optimizer's constructor (momentum, betas, ...).
    """
    key = name.lower() if isinstance(name, str) else name
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adam-atan2": AdamAtan2}
    if key not in classes:
        raise BadInput("optimizer", name, f"one of {', '.join(classes)}")
    if not math.isfinite(eps) or eps < 0:
        raise BadInput("eps", eps, "a finite number >= 0")
    groups = table.param_groups(model, lr, key, weight_decay, eps)
    return classes[key](groups, lr=lr, **kwargs)
