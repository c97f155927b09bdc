"""Execute one experiment run: predict, measure, judge, draw, and store the lot.

``execute`` is what ``lmech run``, ``lmech check`` and every sweep worker call. With a store, a run
whose id is already finished (done or diverged) is read back instead of recomputed (``force=True``
recomputes); the run is written in the store's ``.partial`` area and moved into place only when it
has finished, so an interrupted run leaves nothing that lists as finished.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmech.config import to_dict, validate
from lmech.devices import describe_device, resolve_device
from lmech.experiments.base import Experiment, NullProgress, Progress, Result, RunConfig, Verdict
from lmech.store import RunStore, run_id


@dataclass
class RunOutcome:
    """What a run produced (or, when ``cached``, what the store already held)."""

    experiment: str
    run_id: str
    label: str
    status: str
    config: dict[str, Any]
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    path: Path | None = None
    cached: bool = False
    error: str | None = None
    traceback: str | None = None
    duration_s: float = 0.0
    prediction: Result | None = None
    measurement: Result | None = None

    @property
    def holds(self) -> bool:
        return self.status in ("done", "diverged") and bool(self.verdicts) and all(
            v["holds"] for v in self.verdicts)


def _summary(prediction: Result, measurement: Result, verdicts: list[Verdict]) -> dict[str, Any]:
    summary = {**{f"pred_{k}": v for k, v in prediction.summary.items()}, **measurement.summary}
    for v in verdicts:
        summary[v.key] = v.agreement
    summary["holds"] = all(v.holds for v in verdicts) if verdicts else None
    if measurement.diverged_at is not None:
        summary["diverged_at"] = measurement.diverged_at
    return summary


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def compute(experiment: Experiment, config: RunConfig, progress: Progress | None = None,
            figures_dir: Path | None = None) -> tuple[Result, Result, list[Verdict], list[Path]]:
    """Predict, measure, judge and (if ``figures_dir``) draw, with no store involved."""
    progress = progress or NullProgress()
    with torch_threads(experiment.threads):
        prediction = experiment.predict(config)
        measurement = experiment.measure(config, progress)
        verdicts = list(experiment.verdict(config, prediction, measurement))
    figures: list[Path] = []
    if figures_dir is not None:
        figures_dir.mkdir(parents=True, exist_ok=True)
        figures = list(experiment.figures(config, prediction, measurement, figures_dir))
    return prediction, measurement, verdicts, figures


def execute(experiment: Experiment, config: RunConfig, *, store: RunStore | None = None,
            progress: Progress | None = None, force: bool = False, label: str | None = None,
            reraise: bool = False) -> RunOutcome:
    """Run ``experiment`` at ``config`` (validated first) and record it in ``store``.

    A crash inside the experiment is recorded as a ``failed`` run with its traceback (re-raised if
    ``reraise``); a NaN/inf loss is a ``diverged`` run, a result like any other. Ctrl-C leaves the
    partial run behind in ``.partial`` (invisible to listings) and propagates.
    """
    config = validate(config)
    resolve_device(config.device)
    cfg = to_dict(config)
    rid = run_id(experiment.name, cfg)
    label = experiment.label(config) if label is None else label
    if store is not None and not force and store.is_finished(experiment.name, rid):
        rec = store.get(rid)
        return RunOutcome(experiment.name, rid, rec.meta.get("label", label), rec.status, cfg,
                          verdicts=rec.verdicts, summary=rec.summary, figures=rec.figures(), path=rec.path,
                          cached=True, duration_s=rec.status_info.get("duration_s", 0.0))

    meta = {"label": label, "law": experiment.law, "citation": experiment.citation, "device_name": describe_device(config.device), "threads": experiment.threads}
    handle = store.begin(experiment.name, cfg, meta) if store is not None else None
    figures_dir = handle.figures_dir if handle is not None else Path(tempfile.mkdtemp(prefix="lmech-figures-"))
    start = time.time()
    try:
        prediction, measurement, verdicts, figures = compute(experiment, config, progress, figures_dir)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        import traceback as tb

        outcome = RunOutcome(experiment.name, rid, label, "failed", cfg, error=f"{type(exc).__name__}: {exc}",
                             traceback=tb.format_exc(), duration_s=time.time() - start)
        if handle is not None:
            outcome.path = handle.fail(exc)
        if reraise:
            raise
        return outcome

    status = "diverged" if measurement.diverged_at is not None else "done"
    summary = _summary(prediction, measurement, verdicts)
    verdict_dicts = [{**v.to_dict(), "run_id": rid, "label": label} for v in verdicts]
    outcome = RunOutcome(experiment.name, rid, label, status, cfg, verdicts=verdict_dicts, summary=summary,
                         figures=figures, duration_s=time.time() - start, prediction=prediction,
                         measurement=measurement)
    if handle is not None:
        for name, frame in measurement.series.items():
            handle.write_series(name, frame, "series")
        for name, frame in prediction.series.items():
            handle.write_series(name, frame, "prediction")
        handle.write_json("summary.json", summary)
        handle.write_json("verdict.json", verdict_dicts)
        final = handle.finish(status, diverged_at=measurement.diverged_at)
        outcome.path = final
        outcome.figures = [final / "figures" / p.name for p in figures]
    return outcome


__all__ = ["RunOutcome", "compute", "execute"]
