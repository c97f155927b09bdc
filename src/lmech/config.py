"""Typed, validated experiment configs.

Every experiment declares its config as a frozen dataclass whose fields carry their own rules in
``field(metadata=...)``: a ``help`` text, ``choices`` or a ``min``/``max`` range. ``validate`` checks a
config against those rules and raises :class:`lmech.errors.BadInput` naming the field, the bad value
and what is allowed (scikit-learn's style); ``apply_overrides`` parses ``key=value`` strings from the
command line against the field types. The same rules serve the CLI, sweeps and notebooks.

Supported field types: ``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]``,
``tuple[float, ...]`` and ``tuple[str, ...]``. Integers parse exactly (``9007199254740993`` stays itself,
``1e3`` is 1000, ``2.5`` is refused), never through a float; ``-0`` and ``-0.0`` are ``0`` and ``0.0``, so
one computation has one run id.

Bounds on what one run may ask of the machine (a CPU with a few GiB to spare) are the constants below:
every numeric field declares a ``max`` and every law's ``check()`` keeps the sizes its fields imply
(parameters of a network, elements of one array, rows of a stored series, training steps) under them,
so an impossible config is refused before any work, not after it has exhausted memory or time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from lmech.errors import BadInput

#: A seed is a signed 64-bit integer (an int64 column of the runs table; derived seeds add small offsets
#: and stay below torch's 2**64 limit).
MAX_SEED = 2**63 - 1
#: Entries of any tuple-valued field (widths, learning rates, sizes, ...).
MAX_ITEMS = 64
#: Training steps of one run (and of one segment of it); a step of the smallest model takes ~50 µs.
MAX_STEPS = 10**7
#: Hidden width of one layer.
MAX_WIDTH = 2**16
#: Parameters of one network: 2**27 = 134 M numbers, 1 GiB in float64 (gradients and optimizer state as much).
MAX_PARAMETERS = 2**27
#: Elements of one array a run builds (a kernel matrix, a Jacobian, Lanczos vectors): 1 GiB in float64.
MAX_ELEMENTS = 2**27
#: Rows of one stored series (Parquet; a pandas frame of a few columns: about 0.5 GiB at the bound).
MAX_ROWS = 10**7
#: Digits of an integer written on the command line (anything longer is beyond every bound above).
_MAX_DIGITS = 100

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def spec(default: Any, help: str, *, choices: Iterable | None = None, min: float | None = None,
         max: float | None = None, min_exclusive: bool = False, max_items: int = MAX_ITEMS) -> Any:
    """A dataclass field with its validation rules (``help``, ``choices``, ``min``/``max``; for a tuple,
    ``max_items`` entries at most)."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "min": min,
            "max": max, "min_exclusive": min_exclusive, "max_items": max_items}
    if isinstance(default, (list, dict, set)):
        raise TypeError("config defaults must be immutable: use a tuple")
    return dataclasses.field(default=default, metadata=meta)


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of a config dataclass (resolved once per class: ``get_type_hints``
    evaluates every annotation string, about 2 ms a call, and a grid parses each of its values)."""
    return dict(_field_types(cls))


@functools.lru_cache(maxsize=256)
def _field_types(cls: type) -> dict[str, Any]:
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
        return _parse_int(text)
    if tp is float:
        return float(text) + 0.0  # -0.0 is 0.0
    if tp is str:
        return text
    raise TypeError(f"unsupported config field type {tp!r}")


def _parse_int(text: str) -> int:
    """An integer from its text, exactly: ``42``, ``-0``, ``1e3``, ``2.0`` (never through a float)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not number.is_finite() or number.adjusted() > _MAX_DIGITS or number != number.to_integral_value():
        raise ValueError(text)
    return int(number)


def check_budget(name: str, value: Any, amount: int | float, limit: int | float, what: str) -> None:
    """Refuse ``name=value`` (:class:`BadInput`) when ``amount``, the size it implies, exceeds ``limit``.

    ``what`` names the size (e.g. ``"parameters of the widest network (depth·width²)"``); the message gives
    the amount and the bound, one of this module's constants.
    """
    if amount > limit:
        raise BadInput(name, value, f"a value for which the {what} stay within {limit:,} (here {amount:,.4g})")


def mlp_parameters(in_features: int, width: int, depth: int, out_features: int = 1) -> int:
    """Parameters of an MLP with ``depth`` hidden layers of ``width`` (weights and biases), exactly:
    in·w + (depth − 1)·w² + w·out + depth·w + out. The size a law's ``check()`` bounds by MAX_PARAMETERS."""
    return in_features * width + (depth - 1) * width * width + width * out_features + depth * width + out_features


def _check_type(name: str, tp: Any, value: Any) -> Any:
    """Coerce a Python value to the field type where that loses nothing; else BadInput."""
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        if not isinstance(value, (tuple, list)):
            raise BadInput(name, value, _type_name(tp))
        if len(value) > MAX_ITEMS * 16:  # checked against the field's own max_items in validate
            raise BadInput(name, f"<{len(value)} values>", f"at most {MAX_ITEMS} values")
        return tuple(_check_type(name, inner, v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise BadInput(name, value, "true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInput(name, value, "an integer")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise BadInput(name, value, "an integer")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadInput(name, value, "a number")
        try:
            return float(value) + 0.0  # -0.0 is 0.0: one computation, one run id
        except OverflowError:
            raise BadInput(name, value, "a finite number") from None
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
        if isinstance(value, tuple) and len(value) > meta.get("max_items", MAX_ITEMS):
            raise BadInput(f.name, value if len(value) <= 8 else f"<{len(value)} values>",
                           f"at most {meta.get('max_items', MAX_ITEMS)} values")
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
        if repr(value) != repr(getattr(config, f.name)) or type(value) is not type(getattr(config, f.name)):
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
