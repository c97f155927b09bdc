"""The HTML law book: one self-contained file (figures embedded as base64 PNG).

It opens with which configs ran (the quick or the full law book, or others) and the verdict table,
then gives each run its law's statement, citation, the prediction-vs-measurement figures, every
verdict (agreement, tolerance and the reason for the tolerance; an inconclusive criterion with the
reason it was not tested), how long it took, the command that replays it, the config and run id.

A sweep's report (:func:`write_sweep_report`) opens with the sweep's summary figure and a table of its
runs ordered by the swept values.

The page reads on a phone: tables become one card per row below 700 px, long identifiers wrap, and
nothing is wider than the screen (checked in a real browser by ``tests/test_report_browser.py``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from lmech.report.format import tolerance as _tolerance
from lmech.report.format import value as _value
from lmech.store import RunRecord, RunStore
from lmech.store.files import read_json, write_bytes
from lmech.verdicts import verdict_status, worst


def fmt(value: Any, digits: int = 4) -> str:
    """Compact text for a number, a list of numbers (the first 6, then a count) or anything else."""
    return _value(value, digits, max_items=6)


def verdict_word(status: str, state: str | None) -> tuple[str, str]:
    """The verdict text and CSS class of a run (``status``) or criterion judged ``state`` (holds,
    violated, inconclusive; None when there is no verdict)."""
    if status == "failed":
        return "failed", "other"
    if state is None:
        return "no verdict", "other"
    return state, state


def config_kind(rec: RunRecord) -> dict[str, str]:
    """Which config a run used: ``{"book": "quick"|"full"|"custom"|"unknown", "entry": label, "text": ...}``.

    A run whose config equals a law-book entry's (seed and device aside) is that entry; otherwise it is
    a custom config. A law that is not registered here (a plugin not loaded) is ``unknown``.
    """
    from lmech import experiments
    from lmech.config import to_dict

    if rec.experiment not in experiments.names():
        return {"book": "unknown", "entry": "", "text": "a law not loaded here"}
    exp = experiments.get(rec.experiment)
    mine = {k: v for k, v in rec.config.items() if k not in ("seed", "device")}
    seed = rec.config.get("seed")
    for book, quick in (("quick", True), ("full", False)):
        for label, config in exp.lawbook(quick=quick):
            theirs = {k: v for k, v in to_dict(config).items() if k not in ("seed", "device")}
            if theirs == mine:
                entry = f" entry {label}" if label else ""
                return {"book": book, "entry": label, "text": f"{book} law book{entry}, seed {seed}"}
    return {"book": "custom", "entry": "", "text": f"custom config, seed {seed}"}


def replay_command(rec: RunRecord) -> str:
    """The command that recomputes this run."""
    return f"lmech run --replay {rec.run_id}"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or math.isnan(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def _books_text(kinds: Sequence[dict[str, str]]) -> str:
    books = [k["book"] for k in kinds]
    if not books:
        return "no runs"
    names = {"quick": "the quick law-book configs (as lmech check runs them)",
             "full": "the full law-book configs (lmech check --full: the published settings scaled to a CPU)",
             "custom": "custom configs", "unknown": "configs of laws not loaded here"}
    if len(set(books)) == 1:
        return f"All {len(books)} runs used {names[books[0]]}."
    parts = [f"{books.count(b)} {names[b]}" for b in ("quick", "full", "custom", "unknown") if b in books]
    return "Runs used " + "; ".join(parts) + "."


def _run_context(rec: RunRecord) -> dict[str, Any]:
    """Everything the template shows about one run."""
    anchor = f"run-{rec.run_id}"
    run_word, run_css = verdict_word(rec.status, rec.verdict)
    kind = config_kind(rec)
    verdicts = []
    for v in rec.verdicts:
        word, css = verdict_word(rec.status, verdict_status(v))
        verdicts.append({"key": v.get("key", ""), "quantity": v["quantity"], "predicted": fmt(v["predicted"]),
                         "measured": fmt(v["measured"]), "agreement": fmt(v["agreement"]),
                         "tolerance": _tolerance(v["tolerance"]), "verdict": word, "css": css,
                         "why": v.get("why") or "", "inconclusive": v.get("inconclusive") or ""})
    figures = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in rec.figures()]
    env_info = {k: rec.meta.get(k) for k in ("lmech", "torch", "numpy", "python", "platform", "device_name",
                                              "threads", "host")}
    w = worst(rec.verdicts)
    return {"anchor": anchor, "experiment": rec.experiment, "label": rec.meta.get("label", ""),
            "statement": rec.meta.get("law", ""), "citation": rec.meta.get("citation", ""),
            "verdict": run_word, "css": run_css, "figures": figures, "verdicts": verdicts, "kind": kind,
            "duration": _duration(rec.status_info.get("duration_s")), "run_id": rec.run_id,
            "replay": replay_command(rec), "error": rec.status_info.get("traceback"),
            "diverged_at": rec.status_info.get("diverged_at"),
            "held": sum(verdict_status(v) == "holds" for v in rec.verdicts), "total": len(rec.verdicts),
            "worst": None if w is None else {"key": w.get("key", ""), "agreement": fmt(w["agreement"]),
                                              "tolerance": _tolerance(w["tolerance"])},
            "config": json.dumps({"config": rec.config, "environment": env_info, "status": rec.status_info},
                                 indent=2, default=str)}


def render(records: Sequence[RunRecord], store: str = "", *, title: str = "lmech law book",
           sweep: dict[str, Any] | None = None) -> str:
    """The law-book HTML for these runs (a sweep's when ``sweep`` is given: see :func:`write_sweep_report`)."""
    env = Environment(loader=PackageLoader("lmech.report", "templates"), autoescape=select_autoescape(["html"]))
    runs = [_run_context(rec) for rec in records]
    counts = {"holds": 0, "violated": 0, "inconclusive": 0, "other": 0}
    for run in runs:
        for v in run["verdicts"]:
            counts[v["css"]] += 1
        if not run["verdicts"]:
            counts["other"] += 1
    total_s = sum(r.status_info.get("duration_s") or 0.0 for r in records)
    return env.get_template("lawbook.html").render(
        title=title, generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"), store=store, runs=runs,
        books=_books_text([r["kind"] for r in runs]), total_time=_duration(total_s), sweep=sweep,
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


def _sort_key(value: Any) -> tuple:
    """Numbers in numeric order, then everything else as text."""
    if isinstance(value, bool):
        return (1, str(value))
    if isinstance(value, (int, float)):
        return (0, float(value))
    if isinstance(value, (list, tuple)):
        return (2, tuple(_sort_key(v) for v in value))
    return (1, str(value))


def sweep_records(store: RunStore, sweep_id: str) -> tuple[dict[str, Any], list[RunRecord]]:
    """A stored sweep's spec (``<store>/sweeps/<id>.json``, a unique prefix is enough) and its finished runs,
    ordered by the swept values (the grid's axes in the order given, seeds innermost)."""
    from lmech.errors import BadInput

    folder = store.root / "sweeps"
    found = sorted(folder.glob(f"{sweep_id}*.json")) if folder.is_dir() else []
    if len(found) != 1:
        known = ", ".join(p.stem for p in sorted(folder.glob("*.json"))) if folder.is_dir() else ""
        raise BadInput("--sweep", sweep_id, f"the id (or a unique prefix) of a sweep in {folder}"
                       + (f": {known}" if known else " (none stored)"))
    spec = read_json(found[0])
    keys = list(spec.get("scales", {}))
    keys = [k for k in keys if k != "seed"] + (["seed"] if "seed" in keys else [])
    values = {r["run_id"]: r.get("values", {}) for r in spec.get("runs", [])}
    order = sorted(values, key=lambda rid: tuple(_sort_key(values[rid].get(k)) for k in keys))
    records = [r for r in (store.get(rid) for rid in order) if r is not None]
    return {**spec, "keys": keys, "values": values}, records


def write_sweep_report(store: RunStore, sweep_id: str, out: Path | None = None) -> Path:
    """Write a sweep's report (default ``<store>/sweeps/<sweep_id>.html``): its summary figure
    (``<store>/sweeps/<sweep_id>.png``, drawn by ``lmech sweep``), a table of its runs ordered by the swept
    values (each with its verdict, criteria held and worst criterion), then every run as in the law book."""
    spec, records = sweep_records(store, sweep_id)
    sid = spec["sweep_id"]
    figure = store.root / "sweeps" / f"{sid}.png"
    rows = []
    for rec in records:
        ctx = _run_context(rec)
        rows.append({"anchor": ctx["anchor"], "values": [fmt(spec["values"][rec.run_id].get(k)) for k in spec["keys"]],
                     "verdict": ctx["verdict"], "css": ctx["css"], "held": ctx["held"], "total": ctx["total"],
                     "worst": ctx["worst"], "duration": ctx["duration"], "status": rec.status,
                     "diverged_at": ctx["diverged_at"]})
    sweep = {"id": sid, "experiment": spec.get("spec", {}).get("experiment", ""), "keys": spec["keys"], "rows": rows,
             "figure": base64.b64encode(figure.read_bytes()).decode() if figure.exists() else None,
             "spec": json.dumps(spec.get("spec", {}), indent=2, default=str)}
    out = Path(out) if out is not None else store.root / "sweeps" / f"{sid}.html"
    title = f"lmech sweep {sid}: {sweep['experiment']}"
    write_bytes(out, render(records, str(store.root), title=title, sweep=sweep).encode())
    return out


__all__ = ["config_kind", "fmt", "render", "sweep_records", "verdict_word", "write_report", "write_sweep_report"]
