"""The law book's registry: experiments by name."""

from __future__ import annotations

from lmech.errors import BadInput
from lmech.experiments.base import Experiment

_REGISTRY: dict[str, type[Experiment]] = {}


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator adding an experiment to the law book under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two experiments are named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove the experiment ``name`` from the law book (tests that register a toy law clean up with it)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """Every registered experiment name, in law-book order (registration order)."""
    return list(_REGISTRY)


def get(name: str) -> Experiment:
    """A fresh instance of the experiment ``name``; BadInput listing the known names otherwise."""
    if name not in _REGISTRY:
        raise BadInput("experiment", name, f"one of {', '.join(names())}")
    return _REGISTRY[name]()
