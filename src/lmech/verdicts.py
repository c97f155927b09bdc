"""The states of a verdict and of a run judged by several verdicts.

A criterion of a law *holds* (its agreement is within tolerance), is *violated* (it is not), or is
*inconclusive*: a precondition of the criterion was not met (the edge of stability was never reached
within the step budget, a grid had no lazy point, an Adam run started above its threshold, ...), so the
run neither supports nor refutes it. Inconclusive is never a pass: ``lmech check`` fails on it, since a
law book must test its laws. A run is violated if any of its criteria is, else inconclusive if any is,
else it holds.
"""

from __future__ import annotations

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


__all__ = ["VERDICT_STATES", "overall_status", "verdict_status"]
