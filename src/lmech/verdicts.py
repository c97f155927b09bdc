"""The states of a verdict and of a run judged by several verdicts.

A criterion of a law *holds* (its agreement is within tolerance), is *violated* (it is not), or is
*inconclusive*: a precondition of the criterion was not met (the edge of stability was never reached
within the step budget, a grid had no lazy point, an Adam run started above its threshold, ...), so the
run neither supports nor refutes it. Inconclusive is never a pass: ``lmech check`` fails on it, since a
law book must test its laws. A run is violated if any of its criteria is, else inconclusive if any is,
else it holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

VERDICT_STATES = ("holds", "violated", "inconclusive")


def verdict_status(verdict: Any) -> str:
    """The state of one verdict: a :class:`~lmech.experiments.base.Verdict` or its stored dict form.

    Verdicts stored before the inconclusive state existed carry only ``holds``.
    """
    status = verdict.get("status") if isinstance(verdict, dict) else getattr(verdict, "status", None)
    if status in VERDICT_STATES:
        return status
    holds = verdict.get("holds") if isinstance(verdict, dict) else getattr(verdict, "holds", False)
    return "holds" if holds else "violated"


def overall_status(verdicts: Iterable[Any]) -> str | None:
    """The state of a run from its verdicts (None when it has none)."""
    states = {verdict_status(v) for v in verdicts}
    if not states:
        return None
    for state in ("violated", "inconclusive"):
        if state in states:
            return state
    return "holds"


def _field(verdict: Any, name: str) -> Any:
    return verdict.get(name) if isinstance(verdict, dict) else getattr(verdict, name, None)


def exceedance(verdict: Any) -> float:
    """How far a criterion's agreement has gone towards (past) its tolerance: at most 1 within it.

    For ``agreement <= tol``: ``agreement / tol``; for a band ``[lo, hi]``: the distance from its centre
    over its half-width. NaN agreement (never holds) is ``inf``.
    """
    a, tol = _field(verdict, "agreement"), _field(verdict, "tolerance")
    try:
        a = float(a)
    except (TypeError, ValueError):
        return math.inf
    if math.isnan(a):
        return math.inf
    if isinstance(tol, (list, tuple)):
        lo, hi = float(tol[0]), float(tol[1])
        half = (hi - lo) / 2
        return abs(a - (lo + hi) / 2) / half if half > 0 else (0.0 if a == lo else math.inf)
    tol = float(tol)
    if tol > 0:
        return a / tol
    return 0.0 if a <= tol else math.inf


def worst(verdicts: Iterable[Any]) -> Any | None:
    """The criterion that decides a run's state: a violated one farthest past its tolerance, else an
    inconclusive one, else the one closest to its tolerance (None without verdicts)."""
    items = list(verdicts)
    if not items:
        return None
    rank = {"violated": 0, "inconclusive": 1, "holds": 2}
    return min(items, key=lambda v: (rank[verdict_status(v)], -exceedance(v)))


__all__ = ["VERDICT_STATES", "exceedance", "overall_status", "verdict_status", "worst"]
