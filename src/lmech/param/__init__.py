"""Parametrizations as data: init scale and forward multiplier of each parameter, and the kernel gains
they imply. ``lmech.models`` builds finite networks from them and ``lmech.theory.kernels`` composes
infinite-width kernels from the same numbers."""

from lmech.param.parametrization import (
    NTK,
    PARAMETRIZATIONS,
    STANDARD,
    DenseScales,
    KernelGains,
    Parametrization,
    get_parametrization,
)

__all__ = [
    "NTK",
    "PARAMETRIZATIONS",
    "STANDARD",
    "DenseScales",
    "KernelGains",
    "Parametrization",
    "get_parametrization",
]
