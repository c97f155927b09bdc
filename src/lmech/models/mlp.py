r"""A fully connected network built from a layer-by-layer description.

The description is a sequence of layer specs, :class:`Dense` and :class:`Activation`; it is data, not a
module. :class:`MLP` builds the finite torch network from it, and
:func:`lmech.theory.kernels.kernels` composes the infinite-width NNGP and NTK from the very same specs
(the neural-tangents ``stax`` idea: one description, two readings, so the finite network and its kernel
cannot drift apart).

A :class:`Dense` layer with ``fan_in`` inputs computes :math:`z = m_W\,W x + m_b\,b` with
:math:`W_{ij} \sim \mathcal N(0, s_W^2)`, :math:`b_i \sim \mathcal N(0, s_b^2)`; the numbers
:math:`(s_W, m_W, s_b, m_b)` come from :mod:`lmech.param.parametrization`:

* NTK parametrization: :math:`z = \frac{\sigma_w}{\sqrt{n_{in}}} W x + \sigma_b b`, W and b standard
  normal (Jacot et al. 2018, arXiv 1806.07572);
* standard parametrization: :math:`z = W x + b`, :math:`W_{ij}\sim\mathcal N(0,\sigma_w^2/n_{in})`,
  :math:`b_i \sim \mathcal N(0,\sigma_b^2)` (Sohl-Dickstein et al. 2020, arXiv 2001.07301).

:func:`mlp_layers` writes the usual description: ``depth`` hidden layers (Dense then activation) and
one Dense readout, all with the same ``weight_std`` and ``bias_std``; :func:`mlp` builds it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.param.parametrization import DenseScales, Parametrization, get_parametrization

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Dense",
    "DenseLayer",
    "ActivationLayer",
    "MLP",
    "mlp_layers",
    "mlp",
]


def _leaky(negative_slope: float, positive_slope: float) -> Callable[[Tensor], Tensor]:
    def leaky_relu(x: Tensor) -> Tensor:
        return negative_slope * torch.clamp(x, max=0) + positive_slope * torch.clamp(x, min=0)

    return leaky_relu


#: Named elementwise activations (torch functions). ``relu``, ``leaky_relu``, ``erf`` and ``identity``
#: have closed-form kernels; the others are integrated by Gauss–Hermite quadrature.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": _leaky(0.01, 1.0),  # replaced per spec by the spec's slopes
    "erf": torch.erf,
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "gelu": F.gelu,  # the exact x·Φ(x) form
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "elu": F.elu,
    "sin": torch.sin,
    "cos": torch.cos,
}


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Activation:
    r"""An elementwise nonlinearity φ: a name of :data:`ACTIVATIONS` or an elementwise torch callable.

    ``leaky_relu`` is :math:`\varphi(x) = a\min(x,0) + b\max(x,0)` with ``negative_slope`` a and
    ``positive_slope`` b (defaults 0.01 and 1, torch's). A callable must act elementwise on float64
    tensors and be differentiable by autograd (its kernel uses φ and φ').
    """

    fn: str | Callable[[Tensor], Tensor] = "relu"
    negative_slope: float = 0.01
    positive_slope: float = 1.0

    def __post_init__(self):
        if isinstance(self.fn, str):
            if self.fn.lower() not in ACTIVATIONS:
                raise BadInput("activation", self.fn,
                               f"one of {sorted(ACTIVATIONS)} or an elementwise callable")
            object.__setattr__(self, "fn", self.fn.lower())
        elif not callable(self.fn):
            raise BadInput("activation", self.fn, f"one of {sorted(ACTIVATIONS)} or an elementwise callable")
        for name in ("negative_slope", "positive_slope"):
            if not _is_real(getattr(self, name)):
                raise BadInput(name, getattr(self, name), "a finite number")

    @property
    def name(self) -> str:
        """The activation's name, or the callable's ``__name__``."""
        return self.fn if isinstance(self.fn, str) else getattr(self.fn, "__name__", "callable")

    @property
    def function(self) -> Callable[[Tensor], Tensor]:
        """The torch function φ."""
        if self.fn == "leaky_relu":
            return _leaky(float(self.negative_slope), float(self.positive_slope))
        return ACTIVATIONS[self.fn] if isinstance(self.fn, str) else self.fn


@dataclass(frozen=True)
class Dense:
    """A dense layer with ``width`` outputs (None: infinite, for kernels only), see the module docstring.

    ``bias_std=None`` means no bias parameter at all.
    """

    width: int | None
    weight_std: float = 1.0
    bias_std: float | None = 0.0
    parametrization: str | Parametrization = "ntk"

    def __post_init__(self):
        if self.width is not None and (isinstance(self.width, bool) or not isinstance(
                self.width, numbers.Integral) or self.width < 1):
            raise BadInput("width", self.width, "a positive integer (or None: infinite, kernels only)")
        object.__setattr__(self, "parametrization", get_parametrization(self.parametrization))
        # validate the stds once, the same way the layer and the kernel will read them
        self.parametrization.dense(1, self.weight_std, self.bias_std)

    def scales(self, fan_in: int) -> DenseScales:
        """Init stds and multipliers of this layer when it has ``fan_in`` inputs."""
        return self.parametrization.dense(fan_in, self.weight_std, self.bias_std)


LayerSpec = Dense | Activation


class DenseLayer(nn.Module):
    """z = m_W · W x + m_b · b, with W of shape (out, in) as in ``nn.Linear``."""

    def __init__(self, in_features: int, spec: Dense, dtype: torch.dtype, device: str | torch.device):
        super().__init__()
        if spec.width is None:
            raise BadInput("width", None, "a positive integer to build a finite network")
        scales = spec.scales(in_features)
        self.in_features, self.out_features = in_features, int(spec.width)
        self.weight_init_std, self.weight_multiplier = scales.weight_init_std, scales.weight_multiplier
        self.bias_init_std, self.bias_multiplier = scales.bias_init_std, scales.bias_multiplier
        self.weight = nn.Parameter(torch.empty(self.out_features, in_features, dtype=dtype, device=device))
        self.bias = (None if scales.bias_init_std is None else
                     nn.Parameter(torch.empty(self.out_features, dtype=dtype, device=device)))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Draw W ~ N(0, s_W²) then b ~ N(0, s_b²) from ``generator`` (a CPU generator)."""
        for param, std in ((self.weight, self.weight_init_std), (self.bias, self.bias_init_std)):
            if param is not None:
                draw = torch.randn(param.shape, generator=generator, dtype=param.dtype)
                param.copy_(std * draw)

    def forward(self, x: Tensor) -> Tensor:
        z = self.weight_multiplier * F.linear(x, self.weight)
        if self.bias is not None:
            z = z + self.bias_multiplier * self.bias
        return z

    def extra_repr(self) -> str:
        bias = "none" if self.bias is None else f"std {self.bias_init_std:.4g} x {self.bias_multiplier:.4g}"
        return (f"in={self.in_features}, out={self.out_features}, "
                f"weight: std {self.weight_init_std:.4g} x {self.weight_multiplier:.4g}, bias: {bias}")


class ActivationLayer(nn.Module):
    """Applies the spec's elementwise φ."""

    def __init__(self, spec: Activation):
        super().__init__()
        self.spec = spec
        self.fn = spec.function

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.spec.name


class MLP(nn.Module):
    """The finite network of a description ``layers`` (Dense and Activation specs) on ``in_features``.

    Parameters are drawn in layer order, W then b, from a CPU generator seeded with ``seed`` and then
    moved to ``device``: the same seed gives the same network on every device.
    """

    def __init__(self, in_features: int, layers: Sequence[LayerSpec], *, seed: int = 0,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, numbers.Integral) or in_features < 1:
            raise BadInput("in_features", in_features, "a positive integer")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise BadInput("seed", seed, "an integer")
        layers = tuple(layers)
        if not layers or not all(isinstance(spec, (Dense, Activation)) for spec in layers):
            raise BadInput("layers", layers, "a non-empty sequence of Dense and Activation specs")
        self.spec = layers
        self.in_features = int(in_features)
        modules: list[nn.Module] = []
        width = self.in_features
        for spec in layers:
            if isinstance(spec, Dense):
                modules.append(DenseLayer(width, spec, dtype, "cpu"))
                width = int(spec.width)
            else:
                modules.append(ActivationLayer(spec))
        self.out_features = width
        self.layers = nn.Sequential(*modules)
        generator = torch.Generator().manual_seed(int(seed))
        for module in self.layers:
            if isinstance(module, DenseLayer):
                module.reset_parameters(generator)
        self.to(device)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 0:
        raise BadInput("depth", depth, "an integer >= 0 (the number of hidden layers)")
    return int(depth)


def mlp_layers(depth: int, width: int | None, activation: str | Callable | Activation = "relu",
               weight_std: float = 1.0, bias_std: float | None = 0.0,
               parametrization: str | Parametrization = "ntk",
               out_features: int = 1) -> tuple[LayerSpec, ...]:
    """The description of a fully connected network: ``depth`` × (Dense(width), Activation), Dense(out).

    ``width`` may be None (infinite) when the description is only read by the kernels in NTK
    parametrization. Every Dense layer has the same ``weight_std``, ``bias_std`` and parametrization.
    """
    depth = _check_depth(depth)
    act = activation if isinstance(activation, Activation) else Activation(activation)
    hidden = [Dense(width, weight_std, bias_std, parametrization), act]
    return tuple(hidden * depth) + (Dense(out_features, weight_std, bias_std, parametrization),)


def mlp(in_features: int, width: int, depth: int, activation: str | Callable | Activation = "relu",
        weight_std: float = 1.0, bias_std: float | None = 0.0, parametrization: str | Parametrization = "ntk",
        *, out_features: int = 1, seed: int = 0, dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu") -> MLP:
    """A finite MLP of the given ``width`` built from :func:`mlp_layers` (same arguments), seeded."""
    if width is None:
        raise BadInput("width", None, "a positive integer to build a finite network")
    return MLP(in_features, mlp_layers(depth, width, activation, weight_std, bias_std, parametrization,
                                       out_features), seed=seed, dtype=dtype, device=device)
