r"""Learning dynamics of deep linear networks (Saxe, McClelland & Ganguli 2014, arXiv 1312.6120).

Setting. Inputs are whitened, :math:`\frac1n \sum_\mu x_\mu x_\mu^\top = I`; targets are
:math:`y = Mx` with :math:`M = \sum_i s_i a_i b_i^\top`; the network is :math:`W = W_L\cdots W_1`.
From the decoupled, balanced initial condition (every layer aligned with the teacher's singular
vectors, each mode with strength :math:`u_i(0) = u_0`), gradient flow keeps the modes decoupled and
the mode strength :math:`u_i = a_i^\top W b_i` obeys the scalar equation

.. math::  \tau \frac{du}{dt} = L\, u^{2-2/L}\,(s - u)

(Saxe et al. 2014 eq. 6 for L = 2; the depth-L reduction follows from each layer carrying
:math:`u^{1/L}`, see Arora et al. 2018, arXiv 1802.06509, eq. 7, and the learningmechanics.pub
tutorial). For L = 2 it integrates in closed form (Saxe et al. eq. 7):

.. math::  u(t) = \frac{s\,e^{2st/\tau}}{e^{2st/\tau} - 1 + s/u_0},
   \qquad t_{1/2} = \frac{\tau}{2s}\ln\!\left(\frac{s}{u_0} - 1\right).

The time constant :math:`\tau`. Gradient descent with learning rate :math:`\eta` on the loss

.. math::  \mathcal L = \frac{h}{2}\, R\!\left[\lVert y_\mu - W x_\mu\rVert^2\right],

where :math:`R` is the mean over the n examples (``reduction="mean"``) or their sum
(``reduction="sum"``) and :math:`h = 1` with the ½ (``half=True``) or :math:`h = 2` without it,
has gradient :math:`\partial\mathcal L/\partial W_l = -c\,W_{>l}^\top (M - W) W_{<l}^\top` with
:math:`c = h` for the mean and :math:`c = h\,n` for the sum (whitened inputs). One step of GD is
therefore one Euler step of length :math:`c\eta` of the flow above with :math:`\tau = 1`; equivalently
:math:`\tau = 1/(c\,\eta)` **measured in steps**: step k sits at dimensionless time
:math:`t/\tau = c\,\eta\,k`. The continuum limit needs :math:`c\eta s_{\max} \ll 1`: the discrete map
grows a small mode by :math:`(1 + c\eta s)^2` per step instead of :math:`e^{2c\eta s}`, so half-learning
times are late by a relative :math:`\approx c\eta s/2`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import integrate

from lmech.errors import BadInput


def loss_scale(n_samples: int, reduction: str = "mean", half: bool = True) -> float:
    """The factor c of the module docstring: gradient = c × (gradient of ½·mean squared error)."""
    if reduction not in ("mean", "sum"):
        raise BadInput("reduction", reduction, "'mean' or 'sum'")
    if n_samples < 1:
        raise BadInput("n_samples", n_samples, "a positive integer")
    return (1.0 if half else 2.0) * (n_samples if reduction == "sum" else 1.0)


def time_constant(lr: float, n_samples: int, reduction: str = "mean", half: bool = True) -> float:
    r"""Saxe et al.'s :math:`\tau` in units of GD steps: :math:`\tau = 1/(c\,\eta)` (module docstring)."""
    if not lr > 0:
        raise BadInput("lr", lr, "a positive learning rate")
    return 1.0 / (loss_scale(n_samples, reduction, half) * lr)


def _check(s: np.ndarray, u0: np.ndarray, depth: int) -> None:
    if depth < 2 or int(depth) != depth:
        raise BadInput("depth", depth, "an integer >= 2")
    if np.any(s <= 0):
        raise BadInput("singular_values", s.tolist(), "positive values")
    if np.any(u0 <= 0) or np.any(u0 >= s / 2):
        raise BadInput("u0", u0.tolist(), "initial mode strengths in (0, s_i/2)")


def _modes(s: Sequence[float] | float, u0: Sequence[float] | float) -> tuple[np.ndarray, np.ndarray]:
    s = np.atleast_1d(np.asarray(s, dtype=np.float64))
    u0 = np.broadcast_to(np.asarray(u0, dtype=np.float64), s.shape).copy()
    return s, u0


def two_layer_closed_form(t: np.ndarray, s: Sequence[float] | float, u0: Sequence[float] | float) -> np.ndarray:
    r"""Saxe et al. 2014 eq. 7: :math:`u(t) = s e^{2st}/(e^{2st} - 1 + s/u_0)` at times ``t`` (units of τ).

    Returns an array of shape (len(t), number of modes). Evaluated as
    :math:`s / (1 + (s/u_0 - 1) e^{-2st})` to avoid overflow.
    """
    s, u0 = _modes(s, u0)
    t = np.asarray(t, dtype=np.float64)[:, None]
    return s / (1.0 + (s / u0 - 1.0) * np.exp(-2.0 * s * t))


def mode_ode(t: np.ndarray, s: Sequence[float] | float, u0: Sequence[float] | float, depth: int,
             rtol: float = 1e-11, atol: float = 1e-13) -> np.ndarray:
    r"""Integrate :math:`du/dt = L u^{2-2/L}(s-u)` (τ = 1) numerically, per mode.

    Integrated in :math:`y = \ln u`, where the equation reads :math:`dy/dt = L u^{1-2/L}(s-u)` and stays
    smooth across the many decades a small initial condition spans (DOP853, tolerances as given).
    Returns shape (len(t), modes).
    """
    s, u0 = _modes(s, u0)
    _check(s, u0, depth)
    t = np.asarray(t, dtype=np.float64)
    power = 1.0 - 2.0 / depth

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        u = np.exp(y)
        return depth * u**power * (s - u)

    sol = integrate.solve_ivp(rhs, (0.0, float(t.max())), np.log(u0), t_eval=t, method="DOP853",
                              rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"mode ODE failed: {sol.message}")
    return np.exp(sol.y.T)


def mode_trajectories(t: np.ndarray, s: Sequence[float] | float, u0: Sequence[float] | float,
                      depth: int) -> np.ndarray:
    """Mode strengths u_i(t) (t in units of τ): the closed form for depth 2, the ODE otherwise."""
    s_arr, u0_arr = _modes(s, u0)
    _check(s_arr, u0_arr, depth)
    if depth == 2:
        return two_layer_closed_form(t, s_arr, u0_arr)
    return mode_ode(t, s_arr, u0_arr, depth)


def half_learning_time(s: Sequence[float] | float, u0: Sequence[float] | float, depth: int) -> np.ndarray:
    r"""Time (units of τ) at which mode i reaches half its target, :math:`u_i = s_i/2`.

    Depth 2: :math:`t_{1/2} = \ln(s/u_0 - 1)/(2s)` (from eq. 7). Depth L: the quadrature
    :math:`t_{1/2} = \int_{\ln u_0}^{\ln(s/2)} \frac{dy}{L\,u^{1-2/L}(s-u)}`, :math:`u = e^y`
    (independent of the ODE integration).
    """
    s, u0 = _modes(s, u0)
    _check(s, u0, depth)
    if depth == 2:
        return np.log(s / u0 - 1.0) / (2.0 * s)
    power = 1.0 - 2.0 / depth
    out = []
    for si, ui in zip(s, u0):
        val, _err = integrate.quad(lambda y, si=si: 1.0 / (depth * np.exp(y) ** power * (si - np.exp(y))),
                                   np.log(ui), np.log(si / 2.0), epsabs=0.0, epsrel=1e-12, limit=200)
        out.append(val)
    return np.asarray(out)


def mode_loss(u: np.ndarray, s: Sequence[float]) -> np.ndarray:
    r"""The ½-mean squared error carried by the modes: :math:`\frac12\sum_i (s_i - u_i)^2` per time row
    (whitened inputs make the loss :math:`\frac12\lVert M - W\rVert_F^2`)."""
    return 0.5 * np.sum((np.asarray(s)[None, :] - np.asarray(u)) ** 2, axis=-1)


def crossing_time(t: np.ndarray, u: np.ndarray, level: float) -> float:
    """First time the sampled curve ``u(t)`` reaches ``level``, by linear interpolation; NaN if never."""
    t, u = np.asarray(t, dtype=np.float64), np.asarray(u, dtype=np.float64)
    above = np.nonzero(u >= level)[0]
    if len(above) == 0:
        return float("nan")
    k = above[0]
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (level - u[k - 1]) * (t[k] - t[k - 1]) / (u[k] - u[k - 1]))
