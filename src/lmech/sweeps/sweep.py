"""The sweep driver: plan every config of a sweep up front, compute the missing runs, store each as it arrives.

A :class:`SweepSpec` is the sweep as the user wrote it (experiment, base config overrides, grid axes,
random-search ranges, seeds); :func:`plan` turns it into a :class:`Sweep`, the full list of validated
configs and their run ids, raising :class:`~lmech.errors.BadInput` before any work if any axis or any
combination is invalid. :func:`run_sweep` skips every run already finished in the store (done or
diverged: resume after any interruption), hands the rest to an executor (local processes or Ray)
and writes each result into the store, from this process only, as soon as it arrives. Failed runs
keep their traceback and are retried by the next run of the same sweep.

The sweep id is a hash of its set of run ids; the spec and its run ids are stored in
``<store>/sweeps/<sweep_id>.json``.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmech.config import MAX_SEED, apply_overrides, to_dict
from lmech.errors import BadInput
from lmech.experiments.base import RunConfig
from lmech.experiments.runner import ComputedRun, store_run
from lmech.store import RunStore, StoreError, files, run_id
from lmech.sweeps.grid import MAX_RUNS, Axis, Range, parse_axis, parse_range, sample


@dataclass(frozen=True)
class SweepSpec:
    """A sweep as written on the command line or in a TOML file (all values as text, as typed).

    ``overrides`` are ``key=value`` strings applied to the base config (default, or quick if
    ``quick``) after ``seed``/``device``; ``grid`` are axes ``key=SPEC``; ``ranges`` with ``random`` > 0
    draw that many random points (seeded by ``sweep_seed``); ``seeds`` > 0 adds the axis
    ``seed = base seed + 0 .. seeds-1``.
    """

    experiment: str
    quick: bool = False
    overrides: tuple[str, ...] = ()
    seed: int | None = None
    device: str | None = None
    grid: tuple[str, ...] = ()
    random: int = 0
    ranges: tuple[str, ...] = ()
    seeds: int = 0
    sweep_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its validated config, run id, and the values the sweep varied."""

    run_id: str
    config: RunConfig
    values: dict[str, Any]
    label: str


@dataclass
class Sweep:
    """A planned sweep: every config validated, with run ids (duplicates removed)."""

    spec: SweepSpec
    points: list[SweepPoint]
    scales: dict[str, str]  # varied key -> list | lin | log | random-lin | random-log | random-choice

    @property
    def sweep_id(self) -> str:
        """Content hash of the experiment and the set of run ids: the same runs make the same sweep,
        however they were written (command line or file, ``1e-2`` or ``0.01``, axes in any order)."""
        canonical = json.dumps([self.spec.experiment, sorted(p.run_id for p in self.points)])
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def experiment(self) -> str:
        return self.spec.experiment

    def __len__(self) -> int:
        return len(self.points)


def plan(spec: SweepSpec) -> Sweep:
    """Validate ``spec`` and build every config of the sweep (BadInput, naming the problem, if any is invalid).

    Order: random points (outermost), then the grid axes in the order given, then seeds (innermost).
    """
    from lmech import experiments

    exp = experiments.get(spec.experiment)
    base = exp.quick_config() if spec.quick else exp.default_config()
    head = {k: v for k, v in (("seed", spec.seed), ("device", spec.device)) if v is not None}
    base = apply_overrides(apply_overrides(base, head), list(spec.overrides))
    cls = type(base)
    if not 0 <= spec.random <= MAX_RUNS:
        raise BadInput("--random", spec.random, f"a number of random points from 0 to {MAX_RUNS:,}")
    if not 0 <= spec.seeds <= MAX_RUNS:
        raise BadInput("--seeds", spec.seeds, f"a number of seeds from 0 to {MAX_RUNS:,}")
    if not 0 <= spec.sweep_seed <= MAX_SEED:
        raise BadInput("--sweep-seed", spec.sweep_seed, f"a seed from 0 to {MAX_SEED}")
    if spec.ranges and spec.random == 0:
        raise BadInput("--range", spec.ranges[0], "--random N > 0 as well (how many points to draw)")
    if spec.random and not spec.ranges:
        raise BadInput("--random", spec.random, "at least one --range KEY=lin:a:b|log:a:b|v1,v2 to draw from")
    axes: list[Axis] = [parse_axis(cls, text) for text in spec.grid]
    ranges: list[Range] = [parse_range(cls, text) for text in spec.ranges]
    keys = [a.key for a in axes] + [r.key for r in ranges]
    if spec.seeds:
        if base.seed + spec.seeds - 1 > MAX_SEED:
            raise BadInput("--seeds", spec.seeds, f"seeds base + 0 .. N-1 within {MAX_SEED} (base seed {base.seed})")
        axes.append(Axis("seed", tuple(base.seed + i for i in range(spec.seeds)), "list", f"seeds={spec.seeds}"))
        keys.append("seed")
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        what = "--seeds with a seed axis" if repeated == ["seed"] and spec.seeds else "each key in one axis only"
        raise BadInput("sweep axis", repeated[0], f"{what} (`{repeated[0]}` is varied twice)")
    total = max(spec.random, 1) * math.prod(len(a.values) for a in axes)
    if total > MAX_RUNS:
        raise BadInput("sweep size", f"{total:,} runs", f"at most {MAX_RUNS:,} runs in one sweep (split it)")
    draws = sample(ranges, spec.random, spec.sweep_seed) if spec.random else [{}]
    grid = list(itertools.product(*[[(a.key, v) for v in a.values] for a in axes]))
    points: list[SweepPoint] = []
    seen: set[str] = set()
    for draw in draws:
        for combo in grid:
            values = {**draw, **dict(combo)}
            try:
                config = apply_overrides(base, values)
            except BadInput as exc:
                where = " ".join(f"{k}={v}" for k, v in values.items())
                raise BadInput(exc.name, exc.value, f"{exc.expected} (in the sweep point {where})") from None
            rid = run_id(exp.name, to_dict(config))
            if rid not in seen:
                seen.add(rid)
                points.append(SweepPoint(rid, config, values, exp.label(config)))
    scales = {a.key: a.scale for a in axes} | {r.key: f"random-{r.scale}" for r in ranges}
    return Sweep(spec, points, scales)


@dataclass
class SweepEvent:
    """One finished run of a running sweep, as passed to ``on_run``."""

    point: SweepPoint
    run: ComputedRun
    path: Path
    done: int
    total: int
    failures: int


@dataclass
class SweepReport:
    """What a sweep did: runs skipped (already finished), computed (by status), and where it is stored."""

    sweep_id: str
    experiment: str
    total: int
    skipped: list[str] = field(default_factory=list)
    computed: dict[str, str] = field(default_factory=dict)  # run_id -> status
    errors: dict[str, str] = field(default_factory=dict)  # run_id -> error of a failed run
    wall_s: float = 0.0
    spec_path: Path | None = None
    executor: str = ""

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "diverged": 0, "failed": 0}
        for status in self.computed.values():
            out[status] = out.get(status, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"sweep_id": self.sweep_id, "experiment": self.experiment, "total": self.total,
                "skipped": len(self.skipped), "computed": len(self.computed), **self.counts(),
                "skipped_ids": self.skipped, "computed_ids": self.computed, "errors": self.errors,
                "wall_s": self.wall_s, "spec": str(self.spec_path) if self.spec_path else None,
                "executor": self.executor}


def sweep_dir(store: RunStore) -> Path:
    """Where sweep specs and summary figures live: ``<store>/sweeps``."""
    return store.root / "sweeps"


def write_spec(store: RunStore, sweep: Sweep) -> Path:
    """Store the sweep's spec and run ids as ``<store>/sweeps/<sweep_id>.json``; return the path."""
    path = sweep_dir(store) / f"{sweep.sweep_id}.json"
    files.write_json(path, {"sweep_id": sweep.sweep_id, "spec": sweep.spec.to_dict(), "scales": sweep.scales,
                            "runs": [{"run_id": p.run_id, "values": p.values} for p in sweep.points],
                            "created": time.time()})
    return path


def pending(sweep: Sweep, store: RunStore, force: bool = False) -> tuple[list[SweepPoint], list[SweepPoint]]:
    """Split the sweep into (runs to compute, runs already finished in ``store``)."""
    if force:
        return list(sweep.points), []
    todo, finished = [], []
    for p in sweep.points:
        (finished if store.is_finished(sweep.experiment, p.run_id) else todo).append(p)
    return todo, finished


def run_sweep(sweep: Sweep, store: RunStore, executor: Any, *, force: bool = False, figures: bool = True,
              on_run: Callable[[SweepEvent], None] | None = None,
              on_start: Callable[[int, int], None] | None = None) -> SweepReport:
    """Compute the sweep's missing runs with ``executor`` and store each one as it arrives.

    ``executor`` is a :class:`~lmech.sweeps.executors.LocalExecutor` or
    :class:`~lmech.sweeps.executors.RayExecutor` (anything with ``run(tasks) -> iterator of
    ComputedRun``). ``on_start(to_compute, skipped)`` is called once before work, ``on_run(event)``
    after each run is stored. Finished runs are skipped unless ``force``. Ctrl-C stops the executor;
    every run stored so far stays, and a rerun resumes.
    """
    from lmech.sweeps.executors import Task

    start = time.time()
    report = SweepReport(sweep.sweep_id, sweep.experiment, len(sweep), executor=getattr(executor, "name", ""))
    todo, finished = pending(sweep, store, force)
    if todo and hasattr(executor, "start"):
        executor.start()  # e.g. join the Ray cluster: a wrong address fails here, before anything is written
    report.spec_path = write_spec(store, sweep)
    report.skipped = [p.run_id for p in finished]
    if on_start is not None:
        on_start(len(todo), len(finished))
    by_id = {p.run_id: p for p in todo}
    tasks: Iterable[Task] = [Task(sweep.experiment, to_dict(p.config), p.label, figures) for p in todo]
    failures = 0
    results = executor.run(tasks)
    unstored: dict[str, str] = {}
    try:
        for run in results:
            point = by_id[run.run_id]
            try:
                path = store_run(store, run, force=force)
            except OSError as exc:  # disk full, store gone read-only: keep what is stored, start nothing new
                unstored[run.run_id] = str(exc)
                stop = getattr(executor, "stop_submitting", None)
                if stop is not None:
                    stop()
                continue
            report.computed[run.run_id] = run.status
            if run.status == "failed":
                failures += 1
                report.errors[run.run_id] = run.error or "failed"
            if on_run is not None:
                on_run(SweepEvent(point, run, path, len(report.computed), len(todo), failures))
    finally:  # stops the workers at once on Ctrl-C or any error here
        close = getattr(results, "close", None)
        if close is not None:
            close()
    report.wall_s = time.time() - start
    if unstored:
        first = next(iter(unstored.values()))
        raise StoreError(errno.EIO, f"{len(unstored)} computed runs could not be stored ({first}); the "
                         f"{len(report.computed)} runs stored before are kept, the sweep stopped starting new "
                         "runs: make room and rerun it to compute the rest")
    return report


__all__ = ["Sweep", "SweepEvent", "SweepPoint", "SweepReport", "SweepSpec", "pending", "plan", "run_sweep",
           "sweep_dir", "write_spec"]
