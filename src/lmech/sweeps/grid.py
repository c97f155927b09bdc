"""Sweep axes: grids of values and random-search ranges over the fields of a config.

A grid axis is written ``key=SPEC`` where ``SPEC`` is

* an explicit list ``v1,v2,...`` (for a tuple-valued field, the tuples are separated by ``;``:
  ``singular_values=3,1;2,1``);
* ``lin:a:b:n``: ``n`` values evenly spaced from ``a`` to ``b`` inclusive (``numpy.linspace``);
* ``log:a:b:n``: ``n`` values evenly spaced in log from ``a`` to ``b`` inclusive
  (``numpy.geomspace``; ``0 < a < b``).

A random-search range (``--range``) is ``key=lin:a:b`` (uniform on [a, b]), ``key=log:a:b``
(log-uniform on [a, b]) or an explicit list ``v1,v2,...`` (a uniform choice). Integer fields get
rounded values (duplicates dropped). Generated floats are rounded to 12 significant digits so that
the values, and so the run ids, are the same on every machine.

Every value is parsed against the field's declared type (:func:`lmech.config.parse_value`); a bad
spec raises :class:`~lmech.errors.BadInput` naming the flag, the key and the problem. A sweep holds at
most :data:`MAX_RUNS` runs: an axis, a number of seeds or of random points beyond it is refused before
any value is generated.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmech.config import field_types, parse_value
from lmech.errors import BadInput

SCALES = ("list", "lin", "log")
#: Runs of one sweep (each a folder in the store; its configs are all built and validated up front).
MAX_RUNS = 100_000


@dataclass(frozen=True)
class Axis:
    """One grid axis: a config field, its values (typed) and how they are spaced."""

    key: str
    values: tuple[Any, ...]
    scale: str  # list | lin | log
    text: str


@dataclass(frozen=True)
class Range:
    """One random-search range: uniform (``lin``) or log-uniform (``log``) on [lo, hi], or a choice."""

    key: str
    scale: str  # lin | log | choice
    lo: float = 0.0
    hi: float = 0.0
    choices: tuple[Any, ...] = ()
    integer: bool = False
    text: str = ""


def _round(x: float) -> float:
    return float(f"{x:.12g}")


def _split(flag: str, text: str) -> tuple[str, str]:
    if "=" not in text:
        raise BadInput(flag, text, "KEY=VALUES (e.g. depth=2,3 or lr=log:1e-3:1e-1:5)")
    key, body = text.split("=", 1)
    return key.strip(), body.strip()


def _check_key(flag: str, cls: type, key: str) -> Any:
    types = field_types(cls)
    if key not in types:
        raise BadInput(f"{flag} key", key, f"a field of {cls.__name__}: {', '.join(sorted(types))}")
    return types[key]


def _numeric(flag: str, key: str, tp: Any, text: str) -> None:
    if tp not in (int, float):
        raise BadInput(f"{flag} {key}", text, f"an explicit list: `{key}` is not a number field, so ranges "
                       "(lin:/log:) do not apply")


def _endpoints(flag: str, key: str, text: str, parts: list[str], scale: str) -> tuple[float, float]:
    try:
        a, b = float(parts[0]), float(parts[1])
    except ValueError:
        raise BadInput(f"{flag} {key}", text, f"{scale}:a:b with numbers a and b") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise BadInput(f"{flag} {key}", text, "finite endpoints")
    if not a < b:
        raise BadInput(f"{flag} {key}", text, f"a range {scale}:a:b with a < b (got a={a:g}, b={b:g}: "
                       f"{'empty' if a == b else 'reversed'})")
    if scale == "log" and a <= 0:
        raise BadInput(f"{flag} {key}", text, f"log:a:b with 0 < a < b (got a={a:g}: the log of a "
                       "non-positive number is undefined)")
    return a, b


def _typed(cls: type, key: str, tp: Any, values: list[float], flag: str, text: str) -> tuple[Any, ...]:
    out: list[Any] = []
    for v in values:
        v = int(round(v)) if tp is int else _round(v)
        if v not in out:
            out.append(v)
    return tuple(parse_value(cls, key, repr(v)) for v in out)


def parse_axis(cls: type, text: str, flag: str = "--grid") -> Axis:
    """Parse one grid axis ``key=SPEC`` against config class ``cls`` (see the module docstring)."""
    key, body = _split(flag, text)
    tp = _check_key(flag, cls, key)
    if not body:
        raise BadInput(f"{flag} {key}", body, "at least one value (an explicit list, lin:a:b:n or log:a:b:n)")
    head = body.split(":", 1)[0]
    if head in ("lin", "log") and ":" in body:
        _numeric(flag, key, tp, body)
        parts = body.split(":")[1:]
        if len(parts) != 3:
            raise BadInput(f"{flag} {key}", body, f"{head}:a:b:n (start, stop, number of values)")
        a, b = _endpoints(flag, key, body, parts, head)
        try:
            n = float(parts[2])
        except ValueError:
            n = float("nan")
        if not (n.is_integer() and 1 <= n <= MAX_RUNS):
            raise BadInput(f"{flag} {key}", body, f"{head}:a:b:n with a whole number 1 <= n <= {MAX_RUNS:,} of "
                           f"values (got n={parts[2]})")
        raw = np.linspace(a, b, int(n)) if head == "lin" else np.geomspace(a, b, int(n))
        if head == "log":  # the endpoints exactly as written
            raw[0], raw[-1] = a, b
        if tp is int and (a != round(a) or b != round(b)):
            raise BadInput(f"{flag} {key}", body, f"integer endpoints: `{key}` is an integer field")
        return Axis(key, _typed(cls, key, tp, list(raw), flag, body), head, f"{key}={body}")
    tuple_field = typing.get_origin(tp) is tuple
    items = body.split(";") if tuple_field else body.split(",")
    items = [i.strip() for i in items]
    if any(i == "" for i in items) and not tuple_field:
        raise BadInput(f"{flag} {key}", body, "a comma-separated list of values with none empty")
    values: list[Any] = []
    for item in items:
        try:
            value = parse_value(cls, key, item)
        except BadInput as exc:
            raise BadInput(f"{flag} {key}", item, exc.expected) from None
        if value not in values:
            values.append(value)
    return Axis(key, tuple(values), "list", f"{key}={body}")


def parse_range(cls: type, text: str, flag: str = "--range") -> Range:
    """Parse one random-search range ``key=lin:a:b``, ``key=log:a:b`` or ``key=v1,v2,...``."""
    key, body = _split(flag, text)
    tp = _check_key(flag, cls, key)
    if not body:
        raise BadInput(f"{flag} {key}", body, "lin:a:b, log:a:b or a list of values")
    head = body.split(":", 1)[0]
    if head in ("lin", "log", "uniform", "loguniform") and ":" in body:
        scale = {"uniform": "lin", "loguniform": "log"}.get(head, head)
        _numeric(flag, key, tp, body)
        parts = body.split(":")[1:]
        if len(parts) != 2:
            raise BadInput(f"{flag} {key}", body, f"{head}:a:b (the range to draw from)")
        a, b = _endpoints(flag, key, body, parts, scale)
        return Range(key, scale, a, b, integer=tp is int, text=f"{key}={body}")
    axis = parse_axis(cls, text, flag)
    return Range(key, "choice", choices=axis.values, text=axis.text)


def sample(ranges: list[Range], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` random points drawn from ``ranges`` with ``numpy.random.default_rng(seed)``.

    Uniform draws are ``a + (b - a) u``, log-uniform draws ``exp(log a + (log b - log a) u)`` with
    ``u ~ U[0, 1)``; integer fields are rounded. The same (ranges, n, seed) always gives the same points,
    so an interrupted random search resumes onto the same runs.
    """
    rng = np.random.default_rng(seed)
    points: list[dict[str, Any]] = []
    for _ in range(n):
        point: dict[str, Any] = {}
        for r in ranges:
            u = float(rng.random())
            if r.scale == "choice":
                point[r.key] = r.choices[min(int(u * len(r.choices)), len(r.choices) - 1)]
                continue
            if r.scale == "lin":
                v = r.lo + (r.hi - r.lo) * u
            else:
                v = math.exp(math.log(r.lo) + (math.log(r.hi) - math.log(r.lo)) * u)
            point[r.key] = int(round(v)) if r.integer else _round(v)
        points.append(point)
    return points


__all__ = ["Axis", "Range", "parse_axis", "parse_range", "sample"]
