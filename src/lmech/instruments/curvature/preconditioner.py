r"""The diagonal preconditioner of an adaptive optimizer and the preconditioned operator
:math:`P^{-1/2} A P^{-1/2}` whose top eigenvalue is the preconditioned sharpness (Cohen et al. 2022,
arXiv 2207.14484, Sec. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lmech.errors import BadInput
from lmech.instruments.curvature.operators import CurvatureOperator

__all__ = ["PreconditionedOperator", "optimizer_preconditioner"]


class PreconditionedOperator(CurvatureOperator):
    r"""The symmetric preconditioned operator :math:`P^{-1/2} A P^{-1/2}` for a diagonal :math:`P`.

    Its eigenvalues are those of :math:`P^{-1} A`, the matrix that governs the stability of a
    preconditioned step :math:`\theta \leftarrow \theta - \eta P^{-1} \nabla\mathcal{L}` (Cohen et
    al. 2022, arXiv 2207.14484, Sec. 2: "preconditioned sharpness").
    """

    def __init__(self, operator: CurvatureOperator, diagonal: Tensor):
        if not isinstance(diagonal, Tensor) or diagonal.shape != (operator.shape[0],):
            raise BadInput(
                "diagonal", getattr(diagonal, "shape", diagonal), f"a tensor of shape ({operator.shape[0]},)"
            )
        if not bool((diagonal > 0).all()):
            raise BadInput("diagonal", "tensor with non-positive entries", "a strictly positive diagonal P")
        super().__init__(operator.shape[0], operator.dtype, operator.device)
        self.operator = operator
        self.inv_sqrt = diagonal.to(dtype=operator.dtype, device=operator.device).rsqrt()

    def _matmat(self, matrix: Tensor) -> Tensor:
        scale = self.inv_sqrt[:, None]
        before = self.operator.num_matvecs
        out = scale * (self.operator @ (scale * matrix))
        self.operator.num_matvecs = before  # counted once, here
        return out


def _step_count(state: dict) -> float:
    step = state.get("step", 0)
    return float(step.item() if isinstance(step, Tensor) else step)


def optimizer_preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> Tensor:
    r"""The diagonal preconditioner :math:`P` of an Adam-type optimizer, flat over ``params``.

    As ``torch.optim`` computes its step (Cohen et al. 2022, arXiv 2207.14484, eq. 2):

    * Adam / AdamW: :math:`P = \sqrt{\hat v} + \epsilon`, :math:`\hat v = v/(1-\beta_2^t)` (AMSGrad:
      the running maximum of :math:`v`);
    * RMSprop: :math:`P = \sqrt{v} + \epsilon` (centered: :math:`\sqrt{v - m^2} + \epsilon`).

    When parameter groups have different learning rates :math:`\eta_g`, the ratio
    :math:`\eta_0/\eta_g` to the first group's rate is folded into :math:`P`, so that the step is
    :math:`\eta_0 P^{-1}\nabla\mathcal{L}` with one scalar rate :math:`\eta_0`.
    """
    kinds = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)
    if not isinstance(optimizer, kinds):
        raise BadInput("optimizer", type(optimizer).__name__, "torch.optim.Adam, AdamW or RMSprop")
    lr0 = float(optimizer.param_groups[0]["lr"])
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    parts = []
    for p in params:
        group = group_of.get(id(p))
        if group is None:
            raise BadInput("optimizer", type(optimizer).__name__, "an optimizer holding every trainable parameter")
        state = optimizer.state.get(p, {})
        if not state or _step_count(state) == 0:
            raise BadInput("optimizer", type(optimizer).__name__, "an optimizer that has taken at least one step")
        eps = float(group["eps"])
        if isinstance(optimizer, torch.optim.RMSprop):
            v = state["square_avg"]
            if group.get("centered", False):
                v = v - state["grad_avg"] ** 2
            diag = v.sqrt() + eps
        else:
            v = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
            bias2 = 1 - float(group["betas"][1]) ** _step_count(state)
            diag = (v / bias2).sqrt() + eps
        parts.append((diag * (lr0 / float(group["lr"]))).reshape(-1))
    return torch.cat(parts).detach()
