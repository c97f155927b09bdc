r"""Parametrizations of a dense layer as data: the standard (SP) and the NTK parametrization.

A dense layer maps :math:`x \in \mathbb{R}^{n_{in}}` to :math:`z = m_W\, W x + m_b\, b`, where the
trainable parameters start at :math:`W_{ij} \sim \mathcal N(0, s_W^2)`, :math:`b_i \sim \mathcal N(0,
s_b^2)`, and the multipliers :math:`m_W, m_b` are constants of the forward pass (not trained). A
parametrization is the rule that turns the user's ``weight_std`` :math:`\sigma_w`, ``bias_std``
:math:`\sigma_b` and the fan-in :math:`n_{in}` into :math:`(s_W, m_W, s_b, m_b)`:

=================  ==========================  ==========  ==========  ==========
name               :math:`s_W`                 :math:`m_W` :math:`s_b` :math:`m_b`
=================  ==========================  ==========  ==========  ==========
``"ntk"``          1                           σ_w/√n_in   1           σ_b
``"standard"``     σ_w/√n_in                   1           σ_b         1
=================  ==========================  ==========  ==========  ==========

(NTK parametrization: Jacot et al. 2018, arXiv 1806.07572, p. 3; standard parametrization as in
Sohl-Dickstein et al. 2020, arXiv 2001.07301, with their width multiplier s = 1.) Both give the same
function at initialization; they differ in the gradients, hence in the neural tangent kernel.

Kernel gains. Let :math:`q(x,x') = \frac{1}{n_{in}}\sum_j x_j x'_j` be the per-unit covariance of the
layer's input and :math:`\Theta_{in}` its per-unit tangent kernel (from the parameters below). Over the
random initialization, and for :math:`n_{in}\to\infty` in the backward term,

.. math::
   \mathbb E[z_i z'_i] = \underbrace{(m_W s_W)^2 n_{in}}_{g_W}\, q + \underbrace{(m_b s_b)^2}_{g_b},
   \qquad
   \Theta_{out} = \underbrace{m_W^2 n_{in}}_{t_W}\, q + \underbrace{m_b^2}_{t_b} + g_W\, \Theta_{in}.

The first two terms of :math:`\Theta_{out}` are the gradients of the layer's own W and b (unit
learning rate per parameter), the last one backpropagates through W. In NTK parametrization
:math:`g_W = t_W = \sigma_w^2`, :math:`g_b = t_b = \sigma_b^2`, independent of the width. In standard
parametrization :math:`g_W = \sigma_w^2`, :math:`g_b = \sigma_b^2` but :math:`t_W = n_{in}`, :math:`t_b = 1`:
the NTK grows with the widths, and the kernel of an SP network needs its finite widths. This is
neural-tangents' convention for ``parameterization='standard'`` (``stax.Dense`` with ``s=(1, 1)``:
``ntk = input_width * nngp + 1 + W_std**2 * ntk``), the NTK of Sohl-Dickstein et al. 2020 with base
widths equal to the actual widths.

A bias whose ``bias_std`` is ``None`` does not exist (no parameter, no gain). A bias with
``bias_std = 0`` exists: in SP it starts at zero and is trained (it adds :math:`t_b = 1` to the NTK);
in NTK parametrization its multiplier is 0 and it contributes nothing.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from lmech.errors import BadInput

__all__ = [
    "DenseScales",
    "KernelGains",
    "Parametrization",
    "NTK",
    "STANDARD",
    "PARAMETRIZATIONS",
    "get_parametrization",
]


@dataclass(frozen=True)
class DenseScales:
    """Init standard deviations and forward multipliers of one dense layer: z = m_W W x + m_b b.

    ``bias_init_std`` and ``bias_multiplier`` are None when the layer has no bias.
    """

    weight_init_std: float
    weight_multiplier: float
    bias_init_std: float | None
    bias_multiplier: float | None


@dataclass(frozen=True)
class KernelGains:
    r"""Coefficients of the dense-layer kernel recursion (module docstring).

    nngp_out = nngp_weight · q + nngp_bias;  ntk_out = ntk_weight · q + ntk_bias + nngp_weight · ntk_in.
    """

    nngp_weight: float
    nngp_bias: float
    ntk_weight: float
    ntk_bias: float


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_stds(weight_std: float, bias_std: float | None) -> tuple[float, float | None]:
    if not _is_real(weight_std) or not (math.isfinite(weight_std) and weight_std >= 0):
        raise BadInput("weight_std", weight_std, "a finite number >= 0")
    if bias_std is not None and (not _is_real(bias_std) or not (math.isfinite(bias_std) and bias_std >= 0)):
        raise BadInput("bias_std", bias_std, "a finite number >= 0, or None for no bias")
    return float(weight_std), None if bias_std is None else float(bias_std)


def _check_fan_in(fan_in: int) -> int:
    if isinstance(fan_in, bool) or not isinstance(fan_in, numbers.Integral) or fan_in < 1:
        raise BadInput("fan_in", fan_in, "a positive integer")
    return int(fan_in)


@dataclass(frozen=True)
class Parametrization:
    """A dense-layer parametrization: ``"ntk"`` or ``"standard"`` (table in the module docstring)."""

    name: str

    def __post_init__(self):
        if self.name not in ("ntk", "standard"):
            raise BadInput("parametrization", self.name, "'ntk' or 'standard' (alias 'sp')")

    def dense(self, fan_in: int, weight_std: float, bias_std: float | None) -> DenseScales:
        """Init stds and multipliers of a dense layer with ``fan_in`` inputs."""
        fan_in = _check_fan_in(fan_in)
        weight_std, bias_std = _check_stds(weight_std, bias_std)
        has_bias = bias_std is not None
        if self.name == "ntk":
            return DenseScales(1.0, weight_std / math.sqrt(fan_in),
                               1.0 if has_bias else None, bias_std)
        return DenseScales(weight_std / math.sqrt(fan_in), 1.0, bias_std, 1.0 if has_bias else None)

    def kernel_gains(self, fan_in: int | None, weight_std: float, bias_std: float | None) -> KernelGains:
        """The gains g_W, g_b, t_W, t_b of the module docstring.

        ``fan_in`` is the width of the layer's input; it may be None (infinite) in NTK parametrization,
        whose gains do not depend on it, but must be a finite width in standard parametrization.
        """
        weight_std, bias_std = _check_stds(weight_std, bias_std)
        var_b = 0.0 if bias_std is None else bias_std**2
        if self.name == "ntk":
            return KernelGains(weight_std**2, var_b, weight_std**2, var_b)
        if fan_in is None:
            raise BadInput("width", None, "a positive integer: the NTK in standard parametrization grows "
                           "with the layer widths (Sohl-Dickstein et al. 2020), so they must be given")
        fan_in = _check_fan_in(fan_in)
        return KernelGains(weight_std**2, var_b, float(fan_in), 0.0 if bias_std is None else 1.0)


NTK = Parametrization("ntk")
STANDARD = Parametrization("standard")
PARAMETRIZATIONS = {"ntk": NTK, "standard": STANDARD, "sp": STANDARD}


def get_parametrization(parametrization: str | Parametrization) -> Parametrization:
    """The :class:`Parametrization` named ``parametrization`` ("ntk", "standard" or "sp")."""
    if isinstance(parametrization, Parametrization):
        return parametrization
    if not isinstance(parametrization, str) or parametrization.lower() not in PARAMETRIZATIONS:
        raise BadInput("parametrization", parametrization, "one of 'ntk', 'standard' (alias 'sp')")
    return PARAMETRIZATIONS[parametrization.lower()]
