"""The run store: content-addressed ids, atomic writes, nothing half-written survives a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from lmech.store import RunStore, files, run_id


def test_run_id_is_a_content_hash():
    a = run_id("deep-linear", {"seed": 0, "lr": 0.005, "depth": 2})
    assert a == run_id("deep-linear", {"depth": 2, "lr": 0.005, "seed": 0})  # key order is irrelevant
    assert a != run_id("deep-linear", {"seed": 1, "lr": 0.005, "depth": 2})  # the seed is part of the id
    assert a != run_id("other", {"seed": 0, "lr": 0.005, "depth": 2})
    assert len(a) == 16 and int(a, 16) >= 0


def _finish_run(store: RunStore, seed: int, status: str = "done") -> str:
    handle = store.begin("toy", {"seed": seed, "width": 8}, {"label": f"seed={seed}"})
    for step in range(3):
        handle.append("train", {"step": step, "loss": 1.0 / (step + 1)})
    handle.write_series("theory", pd.DataFrame({"step": [0, 1, 2], "loss": [1.0, 0.5, 0.33]}), "prediction")
    handle.write_json("summary.json", {"final_loss": 1 / 3, "holds": True})
    handle.write_json("verdict.json", [{"law": "toy", "holds": True, "agreement": 0.01}])
    handle.finish(status)
    return handle.run_id


def test_store_roundtrip_table_and_query(tmp_path):
    store = RunStore(tmp_path / "lab")
    ids = [_finish_run(store, seed) for seed in range(3)]
    assert {r.run_id for r in store.runs()} == set(ids)
    rec = store.get(ids[0][:8])  # a unique prefix is enough
    assert rec.status == "done" and rec.config == {"seed": 0, "width": 8}
    pd.testing.assert_frame_equal(rec.series("train"), pd.DataFrame({"step": [0, 1, 2],
                                                                     "loss": [1.0, 0.5, 1.0 / 3]}))
    assert rec.meta["torch"] and rec.meta["python"] and rec.meta["lmech"]  # versions recorded
    table = store.table()
    assert len(table) == 3 and {"seed", "width", "final_loss", "status"} <= set(table.columns)
    out = store.query("select count(*) as n, avg(seed) as s from runs where status = 'done'")
    assert out["n"].iloc[0] == 3 and out["s"].iloc[0] == pytest.approx(1.0)
    assert not (tmp_path / "lab" / ".partial" / "toy").exists() or not any((tmp_path / "lab" / ".partial" / "toy").iterdir())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_unfinished_run_is_invisible_and_a_dead_attempt_is_removed_on_the_next_start(tmp_path):
    store = RunStore(tmp_path / "lab")
    handle = store.begin("toy", {"seed": 5, "width": 8}, {})
    handle.append("train", {"step": 0, "loss": 1.0})
    handle.flush()
    assert store.runs() == [] and store.get(handle.run_id) is None  # a running run never lists as finished
    assert [r["run_id"] for r in store.running()] == [handle.run_id]
    assert not store.is_finished("toy", handle.run_id)
    rid = _finish_run(store, 5)  # a second attempt completes in its own folder, beside the live first one
    assert rid == handle.run_id and store.is_finished("toy", rid)
    assert [r["run_id"] for r in store.running()] == [rid]  # the first attempt's process (this one) lives
    # the first attempt's process dies (its folder now names a dead pid): the next start removes it
    dead = handle.path.with_name(f"{rid}.{_dead_pid()}.0000")
    handle.path.rename(dead)
    assert RunStore(tmp_path / "lab").recover()["removed"] == 1
    assert store.running() == [] and store.is_finished("toy", rid)


def test_failed_run_keeps_traceback_and_is_replaced_by_success(tmp_path):
    store = RunStore(tmp_path / "lab")
    handle = store.begin("toy", {"seed": 1, "width": 8}, {})
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        handle.fail(exc)
    rec = store.get(handle.run_id)
    assert rec.status == "failed" and "RuntimeError: boom" in rec.status_info["traceback"]
    assert not store.is_finished("toy", handle.run_id)  # a failed run is retried
    _finish_run(store, 1)
    assert store.get(handle.run_id).status == "done" and len(store.runs()) == 1


_WRITER = """
import sys, itertools
from pathlib import Path
from lmech.store import files
target = Path(sys.argv[1])
for i in itertools.count():
    files.write_json(target, {"i": i, "payload": "x" * 2_000_000})
"""


def test_atomic_write_survives_sigkill(tmp_path):
    # A process rewriting a 2 MB JSON file in a loop is SIGKILLed at arbitrary moments: the file must
    # always parse and hold a complete payload (old or new), never a truncated one.
    target = tmp_path / "state.json"
    files.write_json(target, {"i": -1, "payload": "x" * 2_000_000})
    for delay in (0.05, 0.13, 0.29):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = json.loads(target.read_text())
        assert len(data["payload"]) == 2_000_000


_SLOW_RUN = ["run", "deep-linear", "--set", "depth=3", "--set", "init_scale=1e-4", "--set", "stage_init_scales=",
             "--seed", "7"]


def test_run_killed_midway_leaves_no_half_run_and_rerun_completes(tmp_path, lmech_cmd, subprocess_env):
    store = tmp_path / "lab"
    cmd = lmech_cmd + _SLOW_RUN + ["--store", str(store)]
    partial = store / ".partial" / "deep-linear"
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (partial.exists() and any(partial.glob("*/config.json"))):
        time.sleep(0.05)
    time.sleep(0.5)  # well inside training
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    runs = RunStore(store)
    assert runs.runs() == []  # nothing lists as a run, finished or not
    assert len(runs.running()) == 1  # the leftover is visible only as an abandoned attempt
    done = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    recs = runs.runs()
    assert len(recs) == 1 and recs[0].status == "done"
    assert {"config.json", "status.json", "summary.json", "verdict.json"} <= {p.name for p in recs[0].path.iterdir()}
    assert runs.running() == []  # the leftover was discarded, not merged


def test_run_id_follows_the_data_files_content_not_its_name(tmp_path):
    """A config naming a data file (data=FILE) gets an id from the file's bytes: the same bytes give the same
    id (under another name too), an edit in place gives a new id (never a stale cache hit), and a data= value
    naming no file (a built-in dataset, a missing file) leaves the id a function of the config alone."""
    import numpy as np

    f = tmp_path / "mine.npz"
    np.savez(f, x=np.zeros((4, 2)), y=np.zeros(4))
    config = {"seed": 0, "data": str(f)}
    first = run_id("eos", config)
    assert run_id("eos", dict(config)) == first
    assert run_id("eos", {"seed": 0, "data": f"{f}#x=x,y=y"}) != first  # another config value
    copy = tmp_path / "copy.npz"
    copy.write_bytes(f.read_bytes())
    assert run_id("eos", {"seed": 0, "data": str(copy)}) != first  # the name is part of the config
    before = f.stat().st_mtime_ns
    np.savez(f, x=np.ones((4, 2)), y=np.zeros(4))
    os.utime(f, ns=(before + 10**9, before + 10**9))
    assert run_id("eos", config) != first
    plain = {"seed": 0, "data": "sphere"}
    assert run_id("eos", plain) == run_id("eos", dict(plain))
    missing = {"seed": 0, "data": str(tmp_path / "gone.npz")}
    assert run_id("eos", missing) == run_id("eos", dict(missing))
