"""Execute one experiment run: predict, measure, judge, draw, and store the lot.

Two halves, used by ``lmech run``, ``lmech check`` and every sweep:

* :func:`compute_run` predicts, measures, judges and draws with no store involved and returns a
  :class:`ComputedRun`: everything the store needs (series, summary, verdicts, figure PNG bytes,
  status, traceback), picklable, so a sweep worker on another process or machine can send it back;
* :func:`store_run` writes a :class:`ComputedRun` into a :class:`~lmech.store.RunStore` (the run is
  built in the store's ``.partial`` area and moved into place only when complete).

:func:`execute` is the two in sequence for one run in this process. With a store, a run whose id is
already finished (done or diverged) is read back instead of recomputed (``force=True`` recomputes);
an interrupted run leaves nothing that lists as finished.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
import time
import traceback as _traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmech.config import to_dict, validate
from lmech.devices import describe_device, resolve_device
from lmech.experiments.base import Experiment, NullProgress, Progress, Result, RunConfig, Verdict
from lmech.store import RunHandle, RunStore, run_id
from lmech.store import files as _files
from lmech.verdicts import overall_status


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
        return self.verdict == "holds"

    @property
    def verdict(self) -> str:
        """``holds``, ``violated`` or ``inconclusive`` (see :func:`~lmech.experiments.base.overall_status`);
        ``failed`` for a crashed run, ``no verdict`` for a finished run without verdicts."""
        if self.status not in ("done", "diverged"):
            return "failed" if self.status == "failed" else self.status
        return overall_status(self.verdicts) or "no verdict"


@dataclass
class ComputedRun:
    """A run computed but not yet stored: what :func:`store_run` writes.

    ``status`` is ``done``, ``diverged`` (``measurement.diverged_at`` is set) or ``failed`` (``error``
    and ``traceback`` are set). ``figures`` maps PNG file names to their bytes; ``meta`` holds what
    the computing process knows about itself (label, law, device name, host, threads). ``exception``
    is the live exception of a failed run in this process; :meth:`portable` drops it (and the
    in-memory ``arrays`` of the results) before the run is sent between processes.
    """

    experiment: str
    run_id: str
    label: str
    config: dict[str, Any]
    status: str
    meta: dict[str, Any] = field(default_factory=dict)
    prediction: Result | None = None
    measurement: Result | None = None
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    started: float = 0.0
    duration_s: float = 0.0
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def diverged_at(self) -> int | None:
        return self.measurement.diverged_at if self.measurement is not None else None

    def portable(self) -> ComputedRun:
        """A copy fit to send between processes: no live exception, results without ``arrays``."""
        def strip(r: Result | None) -> Result | None:
            return None if r is None else Result(series=r.series, summary=r.summary, diverged_at=r.diverged_at)

        return dataclasses.replace(self, prediction=strip(self.prediction), measurement=strip(self.measurement),
                                   exception=None)

    def outcome(self, path: Path | None = None) -> RunOutcome:
        """The :class:`RunOutcome` of this run (stored at ``path`` if given)."""
        figures = [path / "figures" / name for name in self.figures] if path is not None else []
        return RunOutcome(self.experiment, self.run_id, self.label, self.status, self.config,
                          verdicts=self.verdicts, summary=self.summary, figures=figures, path=path,
                          error=self.error, traceback=self.traceback, duration_s=self.duration_s,
                          prediction=self.prediction, measurement=self.measurement)


def _summary(prediction: Result, measurement: Result, verdicts: list[Verdict]) -> dict[str, Any]:
    summary = {**{f"pred_{k}": v for k, v in prediction.summary.items()}, **measurement.summary}
    for v in verdicts:
        summary[v.key] = v.agreement
    summary["holds"] = all(v.holds for v in verdicts) if verdicts else None
    summary["verdict"] = overall_status(verdicts)
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
    from lmech.experiments.point_sweep import points_session

    progress = progress or NullProgress()
    with torch_threads(experiment.threads):
        prediction = experiment.predict(config)
        with points_session():  # a law measured in several sweeps keeps one local Ray for all of them
            measurement = experiment.measure(config, progress)
        verdicts = list(experiment.verdict(config, prediction, measurement))
    figures: list[Path] = []
    if figures_dir is not None:
        figures_dir.mkdir(parents=True, exist_ok=True)
        try:
            figures = list(experiment.figures(config, prediction, measurement, figures_dir))
        except Exception as exc:
            if measurement.diverged_at is None:
                raise
            # A diverged run is a result: figures draw what exists, and a drawing that fails on the cut
            # series never turns the result into a crash (the error is kept in the summary).
            figures = sorted(figures_dir.glob("*.png"))
            measurement.summary["figure_error"] = f"{type(exc).__name__}: {exc}"
    return prediction, measurement, verdicts, figures


def run_meta(experiment: Experiment, config: RunConfig, label: str) -> dict[str, Any]:
    """What a run records about where and how it ran (stored in its ``config.json``)."""
    return {"label": label, "law": experiment.law, "citation": experiment.citation,
            "device_name": describe_device(config.device), "threads": experiment.threads,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def compute_run(experiment: Experiment, config: RunConfig, *, label: str | None = None,
                progress: Progress | None = None, figures: bool = True) -> ComputedRun:
    """Validate ``config``, then predict, measure, judge and draw it; never touches a store.

    A crash inside the experiment gives a ``failed`` run with its traceback (the exception is kept in
    ``exception``); a NaN/inf loss gives a ``diverged`` run. Ctrl-C (KeyboardInterrupt) propagates.
    """
    config = validate(config)
    resolve_device(config.device)
    cfg = to_dict(config)
    rid = run_id(experiment.name, cfg)
    label = experiment.label(config) if label is None else label
    run = ComputedRun(experiment.name, rid, label, cfg, "running", meta=run_meta(experiment, config, label),
                      started=time.time())
    figures_dir = Path(tempfile.mkdtemp(prefix="lmech-figures-")) if figures else None
    if progress is None:  # a worker process: report to the driver's progress folder, if it set one
        from lmech.progress import progress_from_env

        progress = progress_from_env(rid)
    try:
        prediction, measurement, verdicts, paths = compute(experiment, config, progress, figures_dir)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        run.traceback, run.exception = _traceback.format_exc(), exc
    else:
        run.status = "diverged" if measurement.diverged_at is not None else "done"
        run.prediction, run.measurement = prediction, measurement
        run.summary = _summary(prediction, measurement, verdicts)
        run.verdicts = [{**v.to_dict(), "run_id": rid, "label": label} for v in verdicts]
        run.figures = {p.name: Path(p).read_bytes() for p in paths}
    finally:
        if figures_dir is not None:
            shutil.rmtree(figures_dir, ignore_errors=True)
    run.duration_s = time.time() - run.started
    return run


def store_run(store: RunStore, run: ComputedRun, handle: RunHandle | None = None, *, force: bool = False) -> Path:
    """Write ``run`` into ``store`` and return its final folder.

    ``handle`` is a run already begun (``store.begin``) for this run id; without one the run is
    begun here (``force``: it replaces a finished run already in place). Series go to Parquet, summary
    and verdicts to JSON, figures to ``figures/``; the status (with the computing process's start time
    and duration, the diverged step or the traceback), then the checksum manifest are written last and
    the folder moved into place atomically. A write error (disk full, read-only store) removes the
    attempt and raises :class:`~lmech.store.StoreError`.
    """
    if run.status not in ("done", "diverged", "failed"):
        raise ValueError(f"only a finished run can be stored, not one with status {run.status!r}")
    if handle is None:
        handle = store.begin(run.experiment, run.config, run.meta, force=force)
    elif handle.run_id != run.run_id:
        raise ValueError(f"handle is for run {handle.run_id}, not {run.run_id}")
    timing = {"started": run.started, "duration_s": run.duration_s}
    if run.status == "failed":
        return handle.finish("failed", error=run.error, traceback=run.traceback, **timing)
    try:
        for name, frame in run.measurement.series.items():
            handle.write_series(name, frame, "series")
        for name, frame in run.prediction.series.items():
            handle.write_series(name, frame, "prediction")
        handle.write_json("summary.json", run.summary)
        handle.write_json("verdict.json", run.verdicts)
        for name, data in run.figures.items():
            _files.write_bytes(handle.figures_dir / name, data)
    except OSError as exc:
        handle.abandon()
        raise store._error("write", exc) from exc
    return handle.finish(run.status, diverged_at=run.diverged_at, **timing)


def execute(experiment: Experiment, config: RunConfig, *, store: RunStore | None = None,
            progress: Progress | None = None, force: bool = False, label: str | None = None,
            reraise: bool = False) -> RunOutcome:
    """Run ``experiment`` at ``config`` (validated first) and record it in ``store``.

    A crash inside the experiment is recorded as a ``failed`` run with its traceback (re-raised if
    ``reraise``); a NaN/inf loss is a ``diverged`` run, a result like any other. Ctrl-C removes the
    attempt's folder in ``.partial`` and propagates (a SIGKILL leaves it, invisible to listings, until
    the next start removes it). With ``force`` the new run replaces a finished one in place.
    """
    config = validate(config)
    resolve_device(config.device)
    cfg = to_dict(config)
    rid = run_id(experiment.name, cfg)
    label = experiment.label(config) if label is None else label
    rec = store.read(experiment.name, rid, full=True) if store is not None and not force else None
    if rec is not None and rec.finished:  # a damaged or failed run is recomputed
        return RunOutcome(experiment.name, rid, rec.meta.get("label", label), rec.status, cfg,
                          verdicts=rec.verdicts, summary=rec.summary, figures=rec.figures(), path=rec.path,
                          cached=True, duration_s=rec.status_info.get("duration_s", 0.0))

    handle = (store.begin(experiment.name, cfg, run_meta(experiment, config, label), force=force)
              if store is not None else None)
    try:
        run = compute_run(experiment, config, label=label, progress=progress)
    except BaseException:  # Ctrl-C: this attempt's folder goes (the next start would remove it anyway)
        if handle is not None:
            handle.abandon()
        raise
    if handle is not None:
        outcome = run.outcome(store_run(store, run, handle))
    else:  # no store: the figures still land on disk, in a temporary folder
        outcome = run.outcome()
        if run.figures:
            outdir = Path(tempfile.mkdtemp(prefix="lmech-figures-"))
            for name, data in run.figures.items():
                (outdir / name).write_bytes(data)
            outcome.figures = [outdir / name for name in run.figures]
    if reraise and run.exception is not None:
        raise run.exception
    return outcome


__all__ = ["ComputedRun", "RunOutcome", "compute", "compute_run", "execute", "run_meta", "store_run", "torch_threads"]
