"""Parametrizations as data.

* :func:`parametrize` puts any ``nn.Module`` in a width/depth parametrization relative to a base
  model (SP, NTK, μP in TP V's Table 3 and Table 8 forms, mean-field, Depth-μP, CompleteP: the
  presets of :mod:`lmech.param.presets`), keeping the scales in a side table keyed by parameter name
  (:class:`ParamTable`) that yields optimizer parameter groups;
* :class:`Parametrization` (``"ntk"``/``"standard"``) gives a dense layer's init scale and forward
  multiplier and the kernel gains they imply: ``lmech.models.mlp`` builds finite networks from them
  and ``lmech.theory.kernels`` composes infinite-width kernels from the same numbers.
"""

from lmech.param.apply import Parametrized, ScaledLinear, parametrize
from lmech.param.optim import AdamAtan2, make_optimizer
from lmech.param.parametrization import (
    NTK,
    PARAMETRIZATIONS,
    STANDARD,
    DenseScales,
    KernelGains,
    Parametrization,
    get_parametrization,
)
from lmech.param.presets import NAMES as PRESET_NAMES
from lmech.param.presets import PRESETS, ROLES, Preset, get_preset
from lmech.param.table import Entry, ParamTable

__all__ = [
    "NTK",
    "PARAMETRIZATIONS",
    "PRESETS",
    "PRESET_NAMES",
    "ROLES",
    "STANDARD",
    "AdamAtan2",
    "DenseScales",
    "Entry",
    "KernelGains",
    "ParamTable",
    "Parametrization",
    "Parametrized",
    "Preset",
    "ScaledLinear",
    "get_parametrization",
    "get_preset",
    "make_optimizer",
    "parametrize",
]
