"""Typed, validated experiment configs.

Every experiment declares its config as a frozen dataclass whose fields carry their own rules in
``field(metadata=...)``: a ``help`` text, ``choices`` or a ``min``/``max`` range. ``validate`` checks a
config against those rules and raises :class:`lmech.errors.BadInput` naming the field, the bad value
and what is allowed (scikit-learn's style); ``apply_overrides`` parses ``key=value`` strings from the
command line against the field types. The same rules serve the CLI, sweeps and notebooks.

Supported field types: ``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]``,
``tuple[float, ...]`` and ``tuple[str, ...]``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from lmech.errors import BadInput

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def spec(default: Any, help: str, *, choices: Iterable | None = None, min: float | None = None,
         max: float | None = None, min_exclusive: bool = False) -> Any:
    """A dataclass field with its validation rules (``help``, ``choices``, ``min``/``max``)."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "min": min,
            "max": max, "min_exclusive": min_exclusive}
    if isinstance(default, (list, dict, set)):
        raise TypeError("config defaults must be immutable: use a tuple")
    return dataclasses.field(default=default, metadata=meta)


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return f"a comma-separated list of {typing.get_args(tp)[0].__name__}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def parse_value(cls: type, key: str, text: str) -> Any:
    """Parse the command-line text of field ``key`` of config class ``cls`` into its declared type."""
    types = field_types(cls)
    if key not in types:
        raise BadInput("key", key, f"a field of {cls.__name__}: {', '.join(sorted(types))}")
    tp = types[key]
    try:
        return _parse(tp, text.strip())
    except ValueError:
        raise BadInput(key, text, _type_name(tp)) from None


def _parse(tp: Any, text: str) -> Any:
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        parts = [p for p in text.strip("()[]").split(",") if p.strip()]
        return tuple(_parse(inner, p.strip()) for p in parts)
    if tp is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(text)
    if tp is int:
        value = float(text)
        if not value.is_integer():
            raise ValueError(text)
        return int(value)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    raise TypeError(f"unsupported config field type {tp!r}")


def _check_type(name: str, tp: Any, value: Any) -> Any:
    """Coerce a Python value to the field type where that loses nothing; else BadInput."""
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        if not isinstance(value, (tuple, list)):
            raise BadInput(name, value, _type_name(tp))
        return tuple(_check_type(name, inner, v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise BadInput(name, value, "true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise BadInput(name, value, "an integer")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInput(name, value, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise BadInput(name, value, "a string")
        return value
    return value


def validate(config: Any) -> Any:
    """Check every field of ``config`` against its type and rules; return it (types normalized).

    Raises :class:`BadInput` for the first bad field. After the per-field rules, the config's own
    ``check()`` method (if it defines one) runs for rules that involve several fields.
    """
    types = field_types(type(config))
    updates = {}
    for f in dataclasses.fields(config):
        value = _check_type(f.name, types[f.name], getattr(config, f.name))
        meta = f.metadata
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise BadInput(f.name, value, "a finite number")
            if meta.get("choices") is not None and item not in meta["choices"]:
                raise BadInput(f.name, value, f"one of {', '.join(map(str, meta['choices']))}")
            lo, hi = meta.get("min"), meta.get("max")
            if lo is not None and (item < lo or (meta.get("min_exclusive") and item == lo)):
                rng = f"> {lo}" if meta.get("min_exclusive") else f">= {lo}"
                raise BadInput(f.name, value, f"a value {rng}" + (f" and <= {hi}" if hi is not None else ""))
            if hi is not None and item > hi:
                raise BadInput(f.name, value, f"a value <= {hi}" + (f" and >= {lo}" if lo is not None else ""))
        if value != getattr(config, f.name) or type(value) is not type(getattr(config, f.name)):
            updates[f.name] = value
    if updates:
        config = dataclasses.replace(config, **updates)
    check = getattr(config, "check", None)
    if callable(check):
        check()
    return config


def apply_overrides(config: Any, overrides: Mapping[str, Any] | Iterable[str]) -> Any:
    """A copy of ``config`` with fields replaced, then validated.

    ``overrides`` is a mapping of field -> value, or an iterable of ``"key=value"`` strings (the
    CLI's ``--set``), parsed against the field types.
    """
    cls = type(config)
    types = field_types(cls)
    values: dict[str, Any] = {}
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if key not in types:
                raise BadInput("key", key, f"a field of {cls.__name__}: {', '.join(sorted(types))}")
            values[key] = parse_value(cls, key, value) if isinstance(value, str) and types[key] is not str \
                else value
    else:
        for item in overrides:
            if "=" not in item:
                raise BadInput("--set", item, "key=value")
            key, text = item.split("=", 1)
            values[key.strip()] = parse_value(cls, key.strip(), text)
    return validate(dataclasses.replace(config, **values))


def to_dict(config: Any) -> dict[str, Any]:
    """The config as a plain JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config of class ``cls`` from :func:`to_dict`'s output, validated."""
    types = field_types(cls)
    unknown = set(data) - set(types)
    if unknown:
        raise BadInput(sorted(unknown)[0], data[sorted(unknown)[0]], f"one of {', '.join(sorted(types))}")
    return validate(cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}))


def describe(cls: type) -> list[tuple[str, str, Any, str]]:
    """Rows (name, type, default, help) for every field: the CLI's per-experiment help."""
    types = field_types(cls)
    rows = []
    for f in dataclasses.fields(cls):
        extra = ""
        if f.metadata.get("choices"):
            extra = f" (one of {', '.join(map(str, f.metadata['choices']))})"
        rows.append((f.name, _type_name(types[f.name]), f.default, f.metadata.get("help", "") + extra))
    return rows
