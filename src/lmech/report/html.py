"""The HTML law book: one self-contained file (figures embedded as base64 PNG).

It opens with the verdict table, then gives each run its law's statement, citation, the
prediction-vs-measurement figures, every verdict (agreement and tolerance), the config and run id.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from lmech.store import RunRecord, RunStore
from lmech.store.files import write_bytes
from lmech.verdicts import verdict_status


def fmt(value: Any, digits: int = 4) -> str:
    """Compact text for a number, a list of numbers or anything else."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        inner = [fmt(v, digits) for v in value[:6]]
        return "[" + ", ".join(inner) + (", …" if len(value) > 6 else "") + "]"
    return str(value)


def verdict_word(status: str, state: str | None) -> tuple[str, str]:
    """The verdict text and CSS class of a run (``status``) or criterion judged ``state`` (holds,
    violated, inconclusive; None when there is no verdict)."""
    if status == "failed":
        return "failed", "other"
    if state is None:
        return "no verdict", "other"
    return state, state


def _tolerance(tol: Any) -> str:
    return f"in [{fmt(tol[0])}, {fmt(tol[1])}]" if isinstance(tol, list) else f"≤ {fmt(tol)}"


def render(records: Sequence[RunRecord], store: str = "") -> str:
    """The law-book HTML for these runs."""
    env = Environment(loader=PackageLoader("lmech.report", "templates"), autoescape=select_autoescape(["html"]))
    table, runs = [], []
    counts = {"holds": 0, "violated": 0, "inconclusive": 0, "other": 0}
    for rec in records:
        anchor = f"run-{rec.run_id}"
        run_word, run_css = verdict_word(rec.status, rec.verdict)
        verdicts = []
        for v in rec.verdicts:
            word, css = verdict_word(rec.status, verdict_status(v))
            counts[css] += 1
            if css == "inconclusive" and v.get("inconclusive"):
                word = f"inconclusive: {v['inconclusive']}"
            row = {"quantity": v["quantity"], "predicted": fmt(v["predicted"]), "measured": fmt(v["measured"]),
                   "agreement": fmt(v["agreement"]), "tolerance": _tolerance(v["tolerance"]), "verdict": word,
                   "css": css}
            verdicts.append(row)
            table.append({**row, "law": rec.experiment, "label": rec.meta.get("label", ""), "anchor": anchor,
                          "run_id": rec.run_id})
        if not rec.verdicts:
            counts["other"] += 1
            table.append({"law": rec.experiment, "label": rec.meta.get("label", ""), "quantity": "—",
                          "agreement": "—", "tolerance": "—", "verdict": run_word, "css": run_css,
                          "anchor": anchor, "run_id": rec.run_id})
        figures = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in rec.figures()]
        env_info = {k: rec.meta.get(k) for k in ("lmech", "torch", "numpy", "python", "platform", "device_name",
                                                  "threads", "host")}
        runs.append({"anchor": anchor, "experiment": rec.experiment, "label": rec.meta.get("label", ""),
                     "statement": rec.meta.get("law", ""), "citation": rec.meta.get("citation", ""),
                     "verdict": run_word, "css": run_css, "figures": figures, "verdicts": verdicts,
                     "run_id": rec.run_id, "error": rec.status_info.get("traceback"),
                     "config": json.dumps({"config": rec.config, "environment": env_info,
                                           "status": rec.status_info}, indent=2, default=str)})
    return env.get_template("lawbook.html").render(
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"), store=store, table=table, runs=runs,
        verdict_count=counts["holds"] + counts["violated"] + counts["inconclusive"], holds_count=counts["holds"],
        violated_count=counts["violated"], inconclusive_count=counts["inconclusive"], other_count=counts["other"])


def write_report(store: RunStore, out: Path | None = None, run_ids: Sequence[str] | None = None) -> Path:
    """Write the report of ``run_ids`` (default: the last law-book check, else every run) to ``out``.

    ``out`` defaults to ``<store>/report.html``. Written atomically.
    """
    if run_ids is None:
        run_ids = store.lawbook()
    if run_ids is None:
        records = store.runs()
    else:
        records = [r for r in (store.get(rid) for rid in run_ids) if r is not None]
    out = Path(out) if out is not None else store.root / "report.html"
    write_bytes(out, render(records, str(store.root)).encode())
    return out
