"""Numbers and values as text, the same in the terminal and in the report.

Integers print as integers (``2500``, never ``2.5e+03``); floats with 4 significant digits (``5.329e-16``
keeps its exponent: a conservation check at 1e-16 against a tolerance of 1e-7 is the point); lists in
full unless a caller asks for a cap; a tolerance as ``≤ x`` or ``in [lo, hi]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def number(value: Any, digits: int = 4) -> str:
    """One number: an int as itself, a float to ``digits`` significant digits, NaN as ``nan``."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value.is_integer() and abs(value) < 1e7:  # 2500.0 reads as 2500, 1e-2 stays 0.01
        return str(int(value))
    return f"{value:.{digits}g}"


def value(v: Any, digits: int = 4, max_items: int | None = None) -> str:
    """Compact text for a number, a list of numbers (in full unless ``max_items``) or anything else."""
    if v is None:
        return "None"
    if isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
        return number(v, digits)
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        shown = v if max_items is None or len(v) <= max_items else v[:max_items]
        inner = ", ".join(value(x, digits, max_items) for x in shown)
        more = f", … ({len(v)} in all)" if len(shown) < len(v) else ""
        return f"({inner}{more})" if isinstance(v, tuple) else f"[{inner}{more}]"
    return str(v)


def tolerance(tol: Any) -> str:
    """``≤ tol`` for a number, ``in [lo, hi]`` for a pair."""
    if isinstance(tol, (list, tuple)):
        return f"in [{number(tol[0])}, {number(tol[1])}]"
    return f"≤ {number(tol)}"


__all__ = ["number", "tolerance", "value"]
