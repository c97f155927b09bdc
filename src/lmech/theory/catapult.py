r"""The catapult mechanism's solvable model: gradient descent on the two-layer linear "uv" network.

Lewkowycz, Bahri, Dyer, Sohl-Dickstein & Gur-Ari 2020 (arXiv 2003.02218, Sec. 2). The network is
:math:`f = v^\top u\, x/\sqrt{n}` with :math:`u, v \in \mathbb{R}^n`, trained by gradient descent with step
:math:`\eta` on one example :math:`(x, y) = (1, y)` with the loss :math:`L = \tfrac12 (f - y)^2`. Its tangent
kernel is the scalar :math:`\lambda = (\lVert u\rVert^2 + \lVert v\rVert^2)/n` (for one example and the
½-squared loss, the Gauss–Newton curvature itself). Gradient descent on :math:`(u, v)` closes exactly on
the pair :math:`(f, \lambda)`: with the residual :math:`r = f - y`,

.. math::
    f_{t+1} = f_t - \eta r_t \lambda_t + \frac{\eta^2 r_t^2 f_t}{n}, \qquad
    \lambda_{t+1} = \lambda_t + \frac{\eta r_t}{n}\,(\eta r_t \lambda_t - 4 f_t),

for every width :math:`n` (no approximation: :func:`uv_step`). At :math:`y = 0` these are the paper's
:math:`f_{t+1} = f_t(1 - \eta\lambda_t + \eta^2 f_t^2/n)` and
:math:`\lambda_{t+1} = \lambda_t + \eta f_t^2 (\eta\lambda_t - 4)/n`. Three phases follow (Sec. 2.1):

* :math:`\eta < 2/\lambda_0`, **lazy**: :math:`|1 - \eta\lambda_0| < 1`, the residual decays and, at large
  :math:`n`, :math:`\lambda` barely moves (:math:`O(f_0^2/n)`);
* :math:`2/\lambda_0 < \eta < 4/\lambda_0`, **catapult**: :math:`f` grows, which makes
  :math:`\lambda` fall (:math:`\eta\lambda - 4 < 0`) until :math:`\eta\lambda < 2`; then :math:`f` decays, and the
  run ends with curvature below :math:`2/\eta`;
* :math:`\eta > 4/\lambda_0`, **divergent**: :math:`\lambda` grows with :math:`f` and both blow up.

:func:`lazy_catapult_boundary` and :func:`uv_max_lr` are the two boundaries; for wide ReLU networks the
paper measures :math:`\eta_{max} \approx 12/\lambda_0` (Sec. 3, :data:`RELU_MAX_FACTOR`), which no closed form
gives.
"""

from __future__ import annotations

import math

import numpy as np

from lmech.errors import BadInput

__all__ = ["LAZY_FACTOR", "RELU_MAX_FACTOR", "UV_MAX_FACTOR", "lazy_catapult_boundary", "uv_max_lr", "uv_phase",
           "uv_step", "uv_trajectory"]

#: η·λ0 at the lazy/catapult boundary: the linearized dynamics' stability edge 2/λ0 (Sec. 2.1).
LAZY_FACTOR = 2.0
#: η·λ0 at the catapult/divergence boundary of the uv model, η_max = 4/λ0 (Sec. 2.1).
UV_MAX_FACTOR = 4.0
#: η·λ0 at which the paper measures wide ReLU networks to diverge, η_max ≈ 12/λ0 (Sec. 3; measured, not derived).
RELU_MAX_FACTOR = 12.0


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise BadInput(name, value, "a positive finite number")
    return value


def lazy_catapult_boundary(lam0: float) -> float:
    """The critical step 2/λ0 above which the lazy phase ends (Lewkowycz et al. 2020, Sec. 2.1)."""
    return LAZY_FACTOR / _positive("lam0", lam0)


def uv_max_lr(lam0: float) -> float:
    """The uv model's maximal step η_max = 4/λ0 (Lewkowycz et al. 2020, Sec. 2.1): above it GD diverges."""
    return UV_MAX_FACTOR / _positive("lam0", lam0)


def uv_phase(lr_factor: float) -> str:
    """The uv model's large-width phase at η·λ0 = ``lr_factor``: "lazy" (< 2), "catapult" (< 4) or "diverged"."""
    c = _positive("lr_factor", lr_factor)
    return "lazy" if c < LAZY_FACTOR else ("catapult" if c < UV_MAX_FACTOR else "diverged")


def uv_step(f: float, lam: float, lr: float, width: int, target: float = 0.0) -> tuple[float, float]:
    r"""One gradient-descent step of the uv model in closed form: :math:`(f_t, \lambda_t) \to (f_{t+1},
    \lambda_{t+1})` (module docstring; Lewkowycz et al. 2020, Sec. 2, the update equations of :math:`f` and
    :math:`\lambda`, here for any target :math:`y`). Exact for every width ``n``."""
    r = f - target
    return (f - lr * r * lam + lr * lr * r * r * f / width,
            lam + lr * r / width * (lr * r * lam - 4.0 * f))


def uv_trajectory(f0: float, lam0: float, lr: float, width: int, steps: int, target: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(f_t, λ_t) for t = 0 … ``steps`` by :func:`uv_step` (float64; values past an overflow are inf/NaN)."""
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise BadInput("width", width, "a positive integer")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise BadInput("steps", steps, "a non-negative integer")
    _positive("lr", lr)
    f, lam = np.empty(steps + 1), np.empty(steps + 1)
    f[0], lam[0] = f0, lam0
    with np.errstate(all="ignore"):
        for t in range(steps):
            f[t + 1], lam[t + 1] = uv_step(float(f[t]), float(lam[t]), lr, int(width), target)
    return f, lam
