r"""Gradient flow of a network, solved as an ODE: the continuous-time reference for gradient descent.

Gradient flow is :math:`\dot\theta = -\nabla_\theta L(\theta)`. Gradient descent with step size
:math:`\eta` is its forward-Euler discretization, so step :math:`k` of GD should sit at flow time
:math:`t = \eta k` while the sharpness stays well below :math:`2/\eta` (Cohen et al. 2021,
arXiv 2103.00065, Sec. 3: GD tracks the flow until it reaches the edge of stability). The ODE is solved
with an adaptive Runge–Kutta method (SciPy ``solve_ivp``, RK45 by default) on the flattened parameters in
float64, with the gradient from ``torch.func.grad``; the tolerances are the caller's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate
from torch import Tensor, nn

from lmech.errors import BadInput


@dataclass
class FlowSolution:
    """Losses (and optionally parameters) of the gradient-flow solution at the requested times."""

    times: np.ndarray
    losses: np.ndarray
    params: np.ndarray | None
    evaluations: int  # number of gradient evaluations the solver used


def gradient_flow(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], inputs: Tensor, targets: Tensor,
                  times, *, rtol: float = 1e-7, atol: float = 1e-10, method: str = "RK45",
                  keep_params: bool = False) -> FlowSolution:
    """Solve :math:`\\dot\\theta = -\\nabla L(\\theta)` from the model's current parameters.

    ``times`` (increasing, starting at or after 0) are flow times at which the loss is reported; the
    model itself is not modified. Computation is in float64 on the CPU whatever the model's dtype.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or len(times) == 0 or times[0] < 0 or np.any(np.diff(times) < 0):
        raise BadInput("times", times[:5].tolist() if times.ndim == 1 else times.shape,
                       "a non-empty increasing 1-D array of flow times >= 0")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise BadInput("model", type(model).__name__, "a module with parameters that require grad")
    shapes = [p.shape for n, p in model.named_parameters() if p.requires_grad]
    sizes = [int(np.prod(s)) for s in shapes]
    buffers = {n: b.detach().to("cpu", torch.float64) for n, b in model.named_buffers()}
    x = inputs.detach().to("cpu", torch.float64)
    y = targets.detach().to("cpu", torch.float64)
    theta0 = torch.cat([p.detach().reshape(-1).to("cpu", torch.float64)
                        for p in model.parameters() if p.requires_grad])

    def unpack(vec: Tensor) -> dict[str, Tensor]:
        return {n: t.reshape(s) for n, t, s in zip(names, torch.split(vec, sizes), shapes)}

    def loss_of(vec: Tensor) -> Tensor:
        params = unpack(vec)
        return loss_fn(torch.func.functional_call(model_cpu, {**params, **buffers}, (x,)), y)

    model_cpu = copy.deepcopy(model).to("cpu", torch.float64)
    grad_fn = torch.func.grad(loss_of)
    count = 0

    def rhs(_t: float, theta: np.ndarray) -> np.ndarray:
        nonlocal count
        count += 1
        return -grad_fn(torch.from_numpy(theta)).numpy()

    sol = integrate.solve_ivp(rhs, (0.0, float(times[-1])), theta0.numpy(), method=method, t_eval=times,
                              rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"gradient-flow ODE failed: {sol.message}")
    with torch.no_grad():
        losses = np.array([float(loss_of(torch.from_numpy(col.copy()))) for col in sol.y.T])
    return FlowSolution(times=sol.t, losses=losses, params=sol.y.T.copy() if keep_params else None,
                        evaluations=count)

