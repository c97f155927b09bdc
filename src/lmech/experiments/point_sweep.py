"""A law's measurement split into independent points and run through the sweep machinery.

Some laws measure a grid of independent trainings (``mu-transfer``: one network per parametrization and
width, each trained over its whole learning-rate grid). Such a law names the tuple-valued fields of its
config along which it splits (its *axes*): a point is the same config with one value on each axis
(``widths=(64,)``, ``parametrizations=("mup",)``), itself a valid run of the same law.

* :func:`split` lists the point configs of a config (the product of its axes' values, in order);
* :func:`run_points` computes them as a sweep of the law (:class:`lmech.sweeps.SweepSpec` →
  :func:`lmech.sweeps.plan` → :func:`lmech.sweeps.run_sweep`) on a local process pool or a Ray cluster,
  each point a run in the store. Points already finished there are skipped, so an interrupted
  measurement resumes where it stopped, and the same points written by hand
  (``lmech sweep NAME --grid "widths=64;256" ...``) are found and reused. Each point's series are read
  back from the store.

The law then assembles the points' series exactly as if it had computed them in process: a point's
numbers depend only on its own config, never on where it ran.

A law may call :func:`run_points` several times (``catapult``: one sweep per bisection round). With
``executor="ray"`` and no ``ray_address`` each call would start and stop its own local Ray (about a minute
each on a loaded machine); inside :func:`points_session` (which :func:`lmech.experiments.runner.compute`
opens around every measurement) the first call that has points to compute starts one local Ray, the
following calls reuse it, and leaving the session shuts it down, also on an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lmech.config import spec
from lmech.errors import BadInput
from lmech.experiments.base import RunConfig

__all__ = ["EXECUTORS", "INLINE", "PointFailed", "PointsConfig", "config_text", "points_session", "run_points",
           "split"]

EXECUTORS = ("inline", "local", "ray")
#: run in process: the fields of :class:`PointsConfig` as every point has them
INLINE = {"executor": "inline", "workers": 0, "ray_address": "", "store": ""}


@dataclass(frozen=True)
class PointsConfig(RunConfig):
    """The fields that say where a split measurement's points run (a law's config inherits them)."""

    executor: str = spec("inline", "where the points (one training each) run: inline (this process), local (a "
                         "process pool) or ray; local/ray keep each point in the store and resume", choices=EXECUTORS)
    workers: int = spec(0, "worker processes for executor=local/ray (0: one per core)", min=0, max=256)
    ray_address: str = spec("", "Ray cluster address for executor=ray (empty: start a local Ray)")
    store: str = spec("", "run store for the points with executor=local/ray (empty: $LMECH_STORE or ./lab)")


class PointFailed(RuntimeError):
    """A point of a split measurement failed (its traceback is in the store)."""


def split(config: RunConfig, axes: Sequence[str], fixed: Mapping[str, Any] | None = None) -> list[RunConfig]:
    """The point configs of ``config``: one per combination of its ``axes``' values (tuple fields), each
    with that single value on every axis, in product order; ``fixed`` overrides other fields of every point."""
    for axis in axes:
        if not isinstance(getattr(config, axis, None), tuple):
            raise BadInput("axes", axis, f"a tuple-valued field of {type(config).__name__}")
    combos = itertools.product(*[[(axis, (value,)) for value in getattr(config, axis)] for axis in axes])
    return [dataclasses.replace(config, **dict(combo), **dict(fixed or {})) for combo in combos]


def config_text(value: Any) -> str:
    """A config value as the command line writes it (:func:`lmech.config.parse_value` reads it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(config_text(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


#: the open :func:`points_session`'s state ({"ray": its local Ray executor, once a call needed one}); None outside
_SESSION: dict[str, Any] | None = None


@contextlib.contextmanager
def points_session() -> Iterator[None]:
    """One local Ray for every :func:`run_points` call inside the block (``executor="ray"``, no address).

    Started lazily, by the first call with points to compute (none if every point is already in the store),
    with that call's ``workers``; reused by the later calls; shut down when the block is left, normally, on an
    error or on KeyboardInterrupt. A Ray that was already running when the first call came (a notebook's, a
    cluster joined by address) is left alone. A session opened inside another one is the outer one.
    """
    global _SESSION
    if _SESSION is not None:
        yield
        return
    _SESSION = {"ray": None}
    try:
        yield
    finally:
        ray_executor, _SESSION = _SESSION["ray"], None
        if ray_executor is not None:
            ray_executor.shutdown()


def _executor(kind: str, workers: int, ray_address: str) -> Any:
    """The executor of one :func:`run_points` call: the session's local Ray where one is open."""
    from lmech.sweeps import make_executor
    from lmech.sweeps.executors import RayExecutor

    if kind != "ray" or ray_address or _SESSION is None:
        return make_executor(kind, workers or None, ray_address or None)
    if _SESSION["ray"] is None:
        _SESSION["ray"] = RayExecutor(None, workers or None, keep=True)
    return _SESSION["ray"]


def run_points(name: str, config: RunConfig, axes: Sequence[str], *, executor: str, store: str = "",
               workers: int = 0, ray_address: str = "", fixed: Mapping[str, Any] | None = None
               ) -> list[tuple[RunConfig, dict[str, pd.DataFrame]]]:
    """Compute the points of ``config`` (:func:`split`) as a sweep of law ``name``; their configs and series.

    ``executor`` is ``"local"`` (a process pool of ``workers``, 0 = one per core) or ``"ray"`` (the cluster
    at ``ray_address``, or a local Ray instance: the :func:`points_session`'s, where one is open); ``store``
    the run store the points are kept in ("" = ``$LMECH_STORE`` or ``./lab``). Raises :class:`PointFailed`
    naming the first point that failed.
    """
    from lmech.store import RunStore
    from lmech.sweeps import SweepSpec, plan, run_sweep

    points = split(config, axes, fixed)
    base = points[0]
    # every field as the point has it (the axes with the whole config's values, which the grid replaces)
    overrides = tuple(f"{f.name}={config_text(getattr(config if f.name in axes else base, f.name))}"
                      for f in dataclasses.fields(base) if f.name not in ("seed", "device"))
    grid = tuple(f"{axis}=" + ";".join(config_text(value) for value in getattr(config, axis)) for axis in axes)
    sweep = plan(SweepSpec(name, overrides=overrides, seed=config.seed, device=config.device, grid=grid))
    by_config = {p.config: p for p in sweep.points}
    missing = [pc for pc in points if pc not in by_config]
    if missing:  # the text round trip must give back exactly the points' configs (same run ids)
        raise BadInput("config", missing[0], "values that survive the command line's text form")
    runs = RunStore(store) if store else RunStore()
    run_sweep(sweep, runs, _executor(executor, workers, ray_address), figures=False)
    out = []
    for pc in points:
        point = by_config[pc]
        rec = runs.read(name, point.run_id, full=True)
        if rec is None or not rec.finished:
            why = "missing" if rec is None else (rec.status_info.get("error") or rec.damage or rec.status)
            raise PointFailed(f"{name} point {point.label or point.values} (run {point.run_id}) did not finish: "
                              f"{why}")
        out.append((pc, {series: rec.series(series) for series in rec.series_names()}))
    return out
