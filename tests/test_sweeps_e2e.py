"""Sweeps end to end: a sweep SIGKILLed mid-way resumes exactly; Ray computes what local processes compute."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from lmech.store import RunStore
from lmech.sweeps import LocalExecutor, RayExecutor, SweepSpec, plan, run_sweep

# 12 deep-linear runs of ~0.5-1 s each (3 init scales x 4 seeds), no figures
_SWEEP = ["sweep", "deep-linear", "--set", "stage_init_scales=", "--set", "steps=1500", "--grid",
          "init_scale=log:1e-4:1e-2:3", "--seeds", "4", "--workers", "2", "--no-figures"]


def _finished(store: Path) -> dict[str, float]:
    """run id -> the time its finished status was written, for every run stored as finished."""
    return {r.run_id: r.status_info["finished"] for r in RunStore(store).runs("deep-linear")}


def test_sweep_killed_midway_resumes_with_exactly_the_missing_runs(tmp_path, lmech_cmd, subprocess_env):
    store = tmp_path / "lab"
    cmd = lmech_cmd + _SWEEP + ["--store", str(store)]
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    try:
        while len(_finished(store)) < 3:
            assert proc.poll() is None, "the sweep ended before it could be interrupted"
            assert time.time() < deadline, "no run finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and every worker, at once
        proc.wait()
    before = _finished(store)  # the driver is dead: the store no longer changes
    total = 12
    assert 3 <= len(before) < total, len(before)

    rerun = subprocess.run(cmd + ["--json"], env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    everything = {r["run_id"] for r in report["runs"]}
    assert len(everything) == total and report["total"] == total
    # the rerun skipped every run that had finished and computed exactly the others, once each
    assert set(report["skipped_ids"]) == set(before)
    assert set(report["computed_ids"]) == everything - set(before)
    assert report["computed"] + report["skipped"] == total
    after = _finished(store)
    assert set(after) == everything  # exactly the full set, no more, no less
    assert {rid: after[rid] for rid in before} == before  # finished runs were not rewritten
    assert all(RunStore(store).get(rid).status == "done" for rid in everything)
    partial = store / ".partial" / "deep-linear"
    assert not partial.exists() or not any(partial.iterdir())  # no half-written run left behind
    assert len(RunStore(store).table("deep-linear")) == total


def test_ray_executor_gives_the_results_of_the_local_executor(tmp_path):
    pytest.importorskip("ray")
    sweep = plan(SweepSpec("deep-linear", overrides=("stage_init_scales=", "steps=300"),
                           grid=("depth=2,3",), seeds=2))
    local, ray = RunStore(tmp_path / "local"), RunStore(tmp_path / "ray")
    run_sweep(sweep, local, LocalExecutor(workers=2), figures=False)
    report = run_sweep(sweep, ray, RayExecutor(workers=2), figures=False)
    assert set(report.computed) == {p.run_id for p in sweep.points} and report.counts()["done"] == 4
    for p in sweep.points:
        a, b = local.get(p.run_id), ray.get(p.run_id)
        assert a.config == b.config and a.status == b.status == "done"
        assert a.summary == b.summary and a.verdicts == b.verdicts  # exactly, not approximately
        assert a.series_names() == b.series_names() == ["modes", "modes_half_time"]
        for kind in ("series", "prediction"):
            for name in a.series_names(kind):
                pd.testing.assert_frame_equal(a.series(name, kind), b.series(name, kind), check_exact=True)
        assert a.meta["worker"] != b.meta["worker"]  # really computed in different processes


def test_a_law_measured_in_rounds_starts_one_local_ray_and_stops_it_on_ctrl_c(tmp_path, toys, monkeypatch):
    """``toy-rounds`` runs each round as a Ray sweep (as ``catapult`` bisects): one local Ray serves every round
    of a measurement, started by the first round with points to compute, shut down at the end, Ctrl-C included."""
    ray = pytest.importorskip("ray")
    from lmech.experiments import get
    from lmech.experiments.point_sweep import INLINE
    from lmech.experiments.runner import compute

    tests = str(Path(__file__).resolve().parent)  # the Ray workers import sweep_toys too
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, *filter(None, [os.environ.get("PYTHONPATH")])]))
    calls = {"init": 0, "shutdown": 0}
    real_init, real_shutdown = ray.init, ray.shutdown

    def counted(name, real):
        def call(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(ray, "init", counted("init", real_init))
    monkeypatch.setattr(ray, "shutdown", counted("shutdown", real_shutdown))
    law, store = get("toy-rounds"), RunStore(tmp_path / "lab")
    config = toys.RoundsConfig(lrs=(0.1, 0.2), rounds=3, interrupt_after=2, executor="ray", workers=1,
                               store=str(store.root))
    with pytest.raises(KeyboardInterrupt):  # after rounds 1 (lr 0.1, 0.2) and 2 (0.2, 0.4), both on one Ray
        compute(law, config)
    assert calls == {"init": 1, "shutdown": 1} and not ray.is_initialized()
    assert sorted(r.config["lrs"][0] for r in store.runs("toy-rounds")) == [0.1, 0.2, 0.4]

    config = dataclasses.replace(config, rounds=2, interrupt_after=0)
    _, measured, verdicts, _ = compute(law, config)  # every point is in the store: no Ray is started at all
    assert calls == {"init": 1, "shutdown": 1} and [v.status for v in verdicts] == ["holds"]
    inline = compute(law, dataclasses.replace(config, **INLINE))[1]  # the points Ray computed, read back
    pd.testing.assert_frame_equal(measured.series["loss"], inline.series["loss"], check_exact=True)
