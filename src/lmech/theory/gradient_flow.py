r"""Gradient flow of a network, solved as an ODE: the continuous-time reference for gradient descent.

Gradient flow is :math:`\dot\theta = -\nabla_\theta L(\theta)`. Gradient descent with step size
:math:`\eta` is its forward-Euler discretization, so step :math:`k` of GD should sit at flow time
:math:`t = \eta k` while the sharpness stays well below :math:`2/\eta` (Cohen et al. 2021,
arXiv 2103.00065, Sec. 3: GD tracks the flow until it reaches the edge of stability). The ODE is solved
with an adaptive Runge–Kutta method (SciPy ``solve_ivp``, RK45 by default) on the flattened parameters in
float64, with the gradient by autograd on a private float64 copy of the model; the tolerances are the
caller's.
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
    model_cpu = copy.deepcopy(model).to("cpu", torch.float64)
    params = [p for p in model_cpu.parameters() if p.requires_grad]
    if not params:
        raise BadInput("model", type(model).__name__, "a module with parameters that require grad")
    x = inputs.detach().to("cpu", torch.float64)
    y = targets.detach().to("cpu", torch.float64)
    theta0 = torch.cat([p.detach().reshape(-1) for p in params])
    count = 0

    def load(theta: np.ndarray) -> None:
        # a private float64 copy of the model carries θ: plain autograd on it is 2-10x faster than
        # torch.func.grad over functional_call at these sizes (one graph, no functional re-dispatch)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.tensor(theta, dtype=torch.float64), params)

    def rhs(_t: float, theta: np.ndarray) -> np.ndarray:
        nonlocal count
        count += 1
        load(theta)
        loss = loss_fn(model_cpu(x), y)
        return -torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).numpy()

    sol = integrate.solve_ivp(rhs, (0.0, float(times[-1])), theta0.numpy(), method=method, t_eval=times,
                              rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"gradient-flow ODE failed: {sol.message}")
    losses = []
    for col in sol.y.T:
        load(col)
        with torch.no_grad():
            losses.append(float(loss_fn(model_cpu(x), y)))
    return FlowSolution(times=sol.t, losses=np.asarray(losses), params=sol.y.T.copy() if keep_params else None,
                        evaluations=count)
