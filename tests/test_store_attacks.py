"""The run store under attack (issue 12): concurrent writers, damaged files, kills in the replace window,
file-system errors and untrusted SQL. Each test reproduces one reported attack.

The promises tested here are written in DESIGN.md ("The run store's promises") and in the docstring of
``lmech.store.runstore``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lmech.cli import main
from lmech.store import RunStore, files


def _toy_store(tmp_path: Path, lrs=(0.1, 0.2, 0.3)) -> tuple[RunStore, list[str]]:
    from lmech import experiments

    store = RunStore(tmp_path / "lab")
    exp = experiments.get("toy-quadratic")
    ids = [experiments.execute(exp, exp.Config(lr=lr), store=store).run_id for lr in lrs]
    return store, ids


def _leftovers(root: Path) -> list[str]:
    """Temporary files anywhere, and attempt folders or trashed copies under .partial."""
    tmp = [str(p) for p in root.rglob("*") if ".tmp-" in p.name]
    partial = root / ".partial"
    attempts = [str(p) for p in partial.glob("*/*")] if partial.exists() else []
    trash = [str(p) for p in (partial / ".trash").glob("*/*")] if (partial / ".trash").exists() else []
    return tmp + [a for a in attempts if "/.trash/" not in a] + trash


# -- 1. two writers of one run ------------------------------------------------------------------
# One interpreter imports lmech once, then forks the writers: two processes per run, started together, each
# doing what `lmech run` does (runner.execute) and reporting "run_id status" on its own pipe (or a traceback).
_RUNNER = textwrap.dedent("""
    import os, sys, traceback
    import sweep_toys  # noqa: F401  (registers toy-quadratic)
    from lmech import experiments
    from lmech.store import RunStore
    exp = experiments.get("toy-quadratic")
    for steps in map(int, sys.argv[2:]):  # one trial per run, one after the other
        writers = []
        for _ in range(2):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                try:
                    outcome = experiments.execute(exp, exp.Config(sleep=1.5, steps=steps), store=RunStore(sys.argv[1]))
                    os.write(write, f"{outcome.run_id} {outcome.status}".encode())
                    code = 0
                except BaseException:
                    os.write(write, traceback.format_exc().encode())
                    code = 1
                os._exit(code)
            os.close(write)
            writers.append((pid, read))
        for pid, read in writers:
            with os.fdopen(read, "rb") as fh:
                text = fh.read().decode()
            print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), text.replace(chr(10), " | "), flush=True)
""")


def test_concurrent_writers_of_one_run_end_with_one_complete_run_and_no_error(tmp_path, toy_env):
    store = tmp_path / "lab"
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(store), "10", "11"], env=toy_env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert len(lines) == 4 and all(line[0] == "0" and line[2] == "done" for line in lines), proc.stdout
    for trial in (lines[:2], lines[2:]):  # the two writers of one run wrote one run
        assert len({line[1] for line in trial}) == 1
    runs = RunStore(store).verify()
    assert len(runs) == 2 and all(r.finished for r in runs), [(r.run_id, r.damage) for r in runs]
    assert all((r.path / "config.json").exists() for r in runs)
    assert _leftovers(store) == []


def test_concurrent_sweeps_of_one_grid_end_complete_and_without_error(tmp_path, lmech_cmd, toy_env):
    store = tmp_path / "lab"
    cmd = lmech_cmd + ["sweep", "toy-quadratic", "--grid", "lr=0.1,0.2,0.3", "--set", "sleep=0.7", "--workers", "1",
                       "--no-figures", "--store", str(store)]
    procs = [subprocess.Popen(cmd, env=toy_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any("Traceback" in e for e in errs)
    runs = RunStore(store).verify()
    assert len(runs) == 3 and all(r.finished for r in runs), [(r.run_id, r.damage) for r in runs]
    assert _leftovers(store) == []


def test_a_duplicate_finishing_second_keeps_the_run_in_place_and_a_forced_one_replaces_it(tmp_path):
    store = RunStore(tmp_path / "lab")
    first = store.begin("toy", {"seed": 0}, {})
    second = store.begin("toy", {"seed": 0}, {})
    assert first.path != second.path  # each attempt its own folder
    for handle, value in ((first, 1), (second, 2)):
        handle.write_json("summary.json", {"x": value})
        handle.write_json("verdict.json", [])
    path = first.finish("done")
    assert second.finish("done") == path
    assert store.get(first.run_id).summary == {"x": 1}  # the complete run in place was kept
    forced = store.begin("toy", {"seed": 0}, {}, force=True)
    forced.write_json("summary.json", {"x": 3})
    forced.write_json("verdict.json", [])
    forced.finish("done")
    assert store.get(first.run_id, full=True).summary == {"x": 3} and store.get(first.run_id).finished
    failed = store.begin("toy", {"seed": 0}, {}, force=True)
    failed.fail(RuntimeError("boom"))
    assert store.get(first.run_id).status == "done"  # a failure never replaces a finished result
    assert _leftovers(tmp_path / "lab") == []


# -- 2. damaged files -----------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    path.write_bytes(bytes(255 - b for b in path.read_bytes()))  # same size, other bytes


DAMAGE = {
    "truncated status.json": lambda run: _truncate(run / "status.json"),
    "null status.json": lambda run: (run / "status.json").write_text("null"),
    "missing config.json": lambda run: (run / "config.json").unlink(),
    "truncated parquet": lambda run: _truncate(run / "series" / "loss.parquet"),
    "garbage parquet": lambda run: _garble(run / "series" / "loss.parquet"),
    "deleted parquet": lambda run: (run / "series" / "loss.parquet").unlink(),
    "deleted verdict.json": lambda run: (run / "verdict.json").unlink(),
    "forged summary.json": lambda run: (run / "summary.json").write_text('{"final_loss": 0.0, "holds": true}'),
    "deleted manifest": lambda run: (run / "manifest.json").unlink(),
    "truncated figure": lambda run: _truncate(next((run / "figures").glob("*.png"))),
    "garbage prediction": lambda run: _garble(run / "prediction" / "loss.parquet"),
}

SAME_SIZE = {"garbage parquet", "garbage prediction"}  # found by checksums: show, verify, before any reuse

READS = [["runs"], ["runs", "list", "--json"], ["runs", "list", "--all-columns"],
         ["runs", "query", "select run_id, status from runs"], ["report"], ["report", "--all"]]


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_run_is_listed_as_damaged_and_recomputed(tmp_path, toys, capsys, case):
    from lmech import experiments

    store, ids = _toy_store(tmp_path)
    victim = store.root / "toy-quadratic" / ids[1]
    DAMAGE[case](victim)
    for argv in READS + [["runs", "show", ids[1]], ["runs", "show", ids[0]]]:
        assert main([*argv, "--store", str(store.root)]) == 0, argv  # never a traceback, never a crash
    capsys.readouterr()
    main(["runs", "list", "--json", "--store", str(store.root)])
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    if case not in SAME_SIZE:  # listings check sizes and the JSON files' checksums; the rest, every checksum
        assert rows[ids[1]]["status"] == "damaged" and rows[ids[1]]["damage"]
    assert store.get(ids[1], full=True).status == "damaged"
    assert rows[ids[0]]["status"] == rows[ids[2]]["status"] == "done"  # the others are untouched
    assert not store.is_finished("toy-quadratic", ids[1])
    assert main(["runs", "verify", "--store", str(store.root)]) == 5
    assert ids[1] in capsys.readouterr().out
    exp = experiments.get("toy-quadratic")
    outcome = experiments.execute(exp, exp.Config(lr=0.2), store=store)  # a rerun recomputes it
    assert not outcome.cached and outcome.verdict == "holds"
    assert store.is_finished("toy-quadratic", ids[1]) and all(r.finished for r in store.verify())
    assert _leftovers(store.root) == []


def test_a_deleted_verdict_is_never_reported_as_a_violated_law(tmp_path, toys):
    from lmech import experiments

    store, ids = _toy_store(tmp_path, lrs=(0.1,))
    (store.root / "toy-quadratic" / ids[0] / "verdict.json").unlink()
    exp = experiments.get("toy-quadratic")
    outcome = experiments.execute(exp, exp.Config(lr=0.1), store=store)
    assert outcome.verdict == "holds" and not outcome.cached


def test_stray_folders_and_copies_never_break_the_listing(tmp_path, toys, capsys):
    store, ids = _toy_store(tmp_path)
    root = store.root
    stray = root / "toy-quadratic" / "0123456789abcdef"
    stray.mkdir()
    (stray / "status.json").write_text('{"status": "done"}')
    (root / "other-law" / "deadbeefdeadbeef").mkdir(parents=True)
    (root / "other-law" / "deadbeefdeadbeef" / "status.json").write_text("null")
    shutil.copytree(root / "toy-quadratic" / ids[0], root / "toy-quadratic" / f"{ids[0]}-copy")
    for argv in READS:
        assert main([*argv, "--store", str(root)]) == 0, argv
    assert store.get(ids[0]).run_id == ids[0] and store.get(ids[0]).finished  # an exact id is never ambiguous
    records = {r.path.name: r for r in store.runs()}
    assert records[f"{ids[0]}-copy"].status == "damaged" and "copied" in records[f"{ids[0]}-copy"].damage
    assert records["0123456789abcdef"].status == "damaged"
    assert records["deadbeefdeadbeef"].status == "damaged"
    capsys.readouterr()
    assert main(["runs", "verify", "--repair", "--store", str(root)]) == 0
    assert sorted(r.run_id for r in store.runs()) == sorted(ids)  # the damaged folders moved aside
    assert len(list((root / ".damaged").glob("*/*"))) == 3
    assert main(["runs", "verify", "--store", str(root)]) == 0


def test_a_sweep_recomputes_a_damaged_run(tmp_path, toys):
    from lmech.sweeps import LocalExecutor, SweepSpec, plan, run_sweep

    store, ids = _toy_store(tmp_path, lrs=(0.1, 0.2))
    (store.root / "toy-quadratic" / ids[0] / "series" / "loss.parquet").unlink()
    sweep = plan(SweepSpec("toy-quadratic", grid=("lr=0.1,0.2",)))
    report = run_sweep(sweep, store, LocalExecutor(1))
    assert report.skipped == [ids[1]] and list(report.computed) == [ids[0]]
    assert all(r.finished for r in store.verify())


# -- 3. a kill in the replace window --------------------------------------------------------------
_REPLACER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import lmech.store.runstore as rs
    from lmech.store import RunStore

    root, mode = Path(sys.argv[1]), sys.argv[2]
    store = RunStore(root)
    final = None

    def kill_after(fn):
        def wrapped(*args, **kwargs):
            result = fn(*args, **kwargs)
            if final is not None and result is not False and final in {Path(str(a)) for a in args[:2]}:
                os.kill(os.getpid(), signal.SIGKILL)  # between the steps of a replacement
            return result
        return wrapped

    os.rename, os.replace = kill_after(os.rename), kill_after(os.replace)
    if hasattr(rs, "_exchange"):
        rs._exchange = (lambda a, b: False) if mode == "no-exchange" else kill_after(rs._exchange)
    try:
        handle = store.begin("toy", {"seed": 0}, {}, force=True)
    except TypeError:  # a store without force= always replaced
        handle = store.begin("toy", {"seed": 0}, {})
    handle.write_json("summary.json", {"version": "new"})
    handle.write_json("verdict.json", [])
    final = root / "toy" / handle.run_id
    handle.finish("done")
    print("not killed")
""")


@pytest.mark.parametrize("mode", ["exchange", "no-exchange"])
def test_a_kill_in_the_replace_window_loses_no_run(tmp_path, subprocess_env, mode):
    root = tmp_path / "lab"
    store = RunStore(root)
    old = store.begin("toy", {"seed": 0}, {})
    old.write_json("summary.json", {"version": "old"})
    old.write_json("verdict.json", [])
    final = old.finish("done")
    proc = subprocess.run([sys.executable, "-c", _REPLACER, str(root), mode], env=subprocess_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stdout + proc.stderr  # killed between the steps
    if mode == "exchange":  # at every instant, the old run or the new one is in place, whole
        rec = RunStore(root).get(final.name, full=True)
        assert rec is not None and rec.finished and rec.summary["version"] in ("old", "new")
    restart = RunStore(root)
    restart.recover()  # the next start repairs what the kill left
    rec = restart.get(final.name, full=True)
    assert rec is not None and rec.finished and rec.summary == {"version": "new"}
    assert _leftovers(root) == [] and len(restart.runs()) == 1


def test_a_killed_promotion_is_completed_on_the_next_start(tmp_path, subprocess_env):
    root = tmp_path / "lab"
    script = textwrap.dedent("""
        import os, signal, sys
        from pathlib import Path
        from lmech.store import RunStore
        store = RunStore(Path(sys.argv[1]))
        handle = store.begin("toy", {"seed": 1}, {})
        handle.write_json("summary.json", {"v": 1})
        handle.write_json("verdict.json", [])
        store._promote = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # complete, never moved
        handle.finish("done")
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(root)], env=subprocess_env, timeout=120)
    assert proc.returncode == -9
    store = RunStore(root)
    assert store.runs() == []
    assert store.recover()["promoted"] == 1
    assert [r.summary for r in store.runs()] == [{"v": 1}] and _leftovers(root) == []


# -- 5. file-system errors ------------------------------------------------------------------------
def _fail_writes(monkeypatch, code: int) -> None:
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "fsync", refuse)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_store_exits_5_and_leaks_nothing(tmp_path, toys, monkeypatch, capsys, code):
    root = tmp_path / "lab"
    root.mkdir()
    _fail_writes(monkeypatch, code)
    assert main(["run", "toy-quadratic", "--store", str(root)]) == 5
    err = capsys.readouterr().err
    assert os.strerror(code) in err and "Traceback" not in err
    assert _leftovers(root) == []
    monkeypatch.undo()
    assert RunStore(root).runs() == []


def test_a_store_path_that_is_a_file_exits_5_with_a_clear_message(tmp_path, toys, capsys):
    path = tmp_path / "lab"
    path.write_text("not a store")
    for argv in (["run", "toy-quadratic"], ["runs"], ["runs", "show", "abc"], ["runs", "query", "select 1"],
                 ["runs", "verify"], ["report"], ["report", "--all"],
                 ["sweep", "toy-quadratic", "--grid", "lr=0.1,0.2", "--workers", "1"]):
        assert main([*argv, "--store", str(path)]) == 5, argv
        assert "is a file, not a folder" in capsys.readouterr().err
    assert path.read_text() == "not a store"


def test_report_out_a_folder_exits_5_and_leaks_nothing(tmp_path, toys, capsys):
    store, _ = _toy_store(tmp_path, lrs=(0.1,))
    target = tmp_path / "out"
    target.mkdir()
    assert main(["report", "--store", str(store.root), "--out", str(target)]) == 5
    assert "Traceback" not in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_a_sweep_on_a_filling_disk_keeps_its_finished_runs_and_exits_5(tmp_path, toys, monkeypatch, capsys,
                                                                        lmech_cmd, toy_env):
    import lmech.sweeps.sweep as sweep_module

    root = tmp_path / "lab"
    real_store_run, stored = sweep_module.store_run, []

    def store_run(store, run, *args, **kwargs):
        path = real_store_run(store, run, *args, **kwargs)
        stored.append(run.run_id)
        if len(stored) == 2:  # the disk is full from here on
            _fail_writes(monkeypatch, errno.ENOSPC)
        return path

    monkeypatch.setattr(sweep_module, "store_run", store_run)
    argv = ["sweep", "toy-quadratic", "--grid", "lr=0.1,0.2,0.3,0.4,0.5,0.6", "--workers", "1", "--no-figures",
            "--store", str(root)]
    assert main(argv) == 5
    err = capsys.readouterr().err
    assert "could not be stored" in err and "No space left" in err
    monkeypatch.undo()
    store = RunStore(root)
    assert sorted(r.run_id for r in store.verify() if r.finished) == sorted(stored)
    assert _leftovers(root) == []
    # the rerun (a new command, as the user would type it) computes exactly the missing runs. In this test
    # process the fork server may date from an earlier test with another environment: a fresh process is
    # the scenario the store promises.
    rerun = subprocess.run(lmech_cmd + argv[:-2] + ["--store", str(root), "--json"], env=toy_env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["skipped"] == 2 and report["computed"] == 4


# -- 6. untrusted SQL -------------------------------------------------------------------------------
def test_untrusted_sql_reaches_no_file_network_or_setting(tmp_path, toys, capsys):
    store, ids = _toy_store(tmp_path, lrs=(0.1,))
    summary = store.root / "toy-quadratic" / ids[0] / "summary.json"
    before = summary.read_bytes()
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    attacks = [f"select * from read_csv('{secret}')", "select * from read_csv('/etc/passwd')",
               f"select * from glob('{tmp_path}/*')", f"copy (select 1 as x) to '{tmp_path / 'written.csv'}'",
               f"copy (select 0.0 as final_loss) to '{summary}' (format json)",
               f"attach '{tmp_path / 'attached.db'}' as other", "install httpfs", "load httpfs",
               "select * from read_csv('https://example.invalid/data.csv')",
               "set enable_external_access = true", "set lock_configuration = false",
               f"select * from read_parquet('{store.root}/*/*/series/*.parquet')",
               f"export database '{tmp_path / 'exported'}'"]
    for sql in attacks:
        assert main(["runs", "query", sql, "--store", str(store.root)]) == 2, sql
    assert not (tmp_path / "written.csv").exists() and not (tmp_path / "attached.db").exists()
    assert not (tmp_path / "exported").exists() and summary.read_bytes() == before
    capsys.readouterr()
    assert main(["runs", "query", "select run_id, final_loss from runs", "--json", "--store", str(store.root)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in rows] == ids and rows[0]["final_loss"] > 0


# -- 9. report --all reads each run by id, never scanning the store per id ------------------------
def test_report_all_reads_each_run_a_bounded_number_of_times(tmp_path, monkeypatch):
    import lmech.store.runstore as rs

    root = tmp_path / "lab"
    store = RunStore(root)
    for seed in range(40):
        handle = store.begin("toy", {"seed": seed}, {"label": str(seed)})
        handle.write_json("summary.json", {"x": seed})
        handle.write_json("verdict.json", [])
        handle.finish("done")
    loads, scans = [], []
    real_load, real_dirs = rs.load_run, RunStore._run_dirs
    monkeypatch.setattr(rs, "load_run", lambda path, full=False: loads.append(path) or real_load(path, full))
    monkeypatch.setattr(RunStore, "_run_dirs", lambda self: scans.append(1) or real_dirs(self))
    start = time.perf_counter()
    assert main(["report", "--all", "--store", str(root)]) == 0
    assert len(scans) <= 1 and len(loads) <= 2 * 40, (len(scans), len(loads))  # linear, not quadratic
    assert time.perf_counter() - start < 60


# -- 4. a diverged run is a result, even when its figure code fails on the cut series -------------
def test_a_diverged_run_whose_figures_fail_is_stored_as_diverged(tmp_path):
    from dataclasses import dataclass

    import pandas as pd

    from lmech.config import spec
    from lmech.experiments.base import Experiment, Result, RunConfig
    from lmech.experiments.runner import execute

    @dataclass(frozen=True)
    class BlowUpConfig(RunConfig):
        steps: int = spec(20, "steps", min=1, max=100)

    class BlowUp(Experiment):
        name, law, citation, Config = "blow-up", "x_t = 10^t overflows", "test", BlowUpConfig

        def quick_config(self):
            return BlowUpConfig()

        def predict(self, config):
            return Result(summary={"rate": 10.0})

        def measure(self, config, progress=None):
            losses = [1e30 ** t if t < 11 else float("inf") for t in range(12)]  # inf at t = 11
            return Result(series={"loss": pd.DataFrame({"step": range(11), "loss": losses[:11]})}, diverged_at=11)

        def verdict(self, config, prediction, measurement):
            return [self.make_verdict("k", "q", 1.0, float("nan"), float("nan"), 1.0, why="test")]

        def figures(self, config, prediction, measurement, outdir):
            (outdir / "first.png").write_bytes(b"\x89PNG drawn before the failure")
            raise ValueError("cannot draw past the divergence")

    outcome = execute(BlowUp(), BlowUpConfig(), store=RunStore(tmp_path / "lab"))
    assert outcome.status == "diverged" and outcome.error is None, outcome.traceback
    assert "ValueError" in outcome.summary["figure_error"]
    assert [p.name for p in outcome.figures] == ["first.png"]
    assert RunStore(tmp_path / "lab").get(outcome.run_id, full=True).status == "diverged"
