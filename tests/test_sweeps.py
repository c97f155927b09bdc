"""Sweeps: grid specs against numpy, bad specs rejected before any run, resume counts, worker crashes, divergence.

The slow end-to-end checks (SIGKILL of a running sweep, Ray against local) are in
``test_sweeps_e2e.py``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmech.cli import main
from lmech.errors import BadInput
from lmech.store import RunStore
from lmech.sweeps import LocalExecutor, SweepSpec, parse_axis, parse_range, plan, run_sweep, sample
from lmech.sweeps import files as sweep_files

HERE = Path(__file__).resolve().parent


# -- grids -----------------------------------------------------------------------------------------
def test_grid_axes_match_numpy_references(toys):
    cls = toys.ToyConfig
    assert parse_axis(cls, "lr=0.1,0.2,0.4").values == (0.1, 0.2, 0.4)
    lin = parse_axis(cls, "lr=lin:0.1:0.5:5")
    assert lin.scale == "lin" and np.allclose(lin.values, np.linspace(0.1, 0.5, 5), rtol=1e-12, atol=0)
    log = parse_axis(cls, "lr=log:1e-3:1e-1:7")
    assert log.scale == "log" and np.allclose(log.values, np.logspace(-3, -1, 7), rtol=1e-12, atol=0)
    assert log.values[0] == 1e-3 and log.values[-1] == 1e-1  # endpoints exactly as written
    assert parse_axis(cls, "width=log:16:256:5").values == (16, 32, 64, 128, 256)
    assert parse_axis(cls, "width=lin:1:4:7").values == (1, 2, 3, 4)  # rounded, duplicates dropped
    assert parse_axis(cls, "crash=none,raise").values == ("none", "raise")
    assert all(type(v) is int for v in parse_axis(cls, "steps=10,2e1").values)
    from lmech.experiments.deep_linear import DeepLinearConfig

    tuples = parse_axis(DeepLinearConfig, "singular_values=3,1;2,1.5")
    assert tuples.values == ((3.0, 1.0), (2.0, 1.5))


def test_random_search_draws_reproducibly_from_its_ranges(toys):
    cls = toys.ToyConfig
    ranges = [parse_range(cls, "lr=log:1e-4:1e-0"), parse_range(cls, "curvature=lin:2:4"),
              parse_range(cls, "width=4,8"), parse_range(cls, "steps=log:10:1000")]
    points = sample(ranges, 4000, seed=3)
    assert points == sample(ranges, 4000, seed=3) and points != sample(ranges, 4000, seed=4)
    lr = np.array([p["lr"] for p in points])
    curv = np.array([p["curvature"] for p in points])
    assert lr.min() >= 1e-4 and lr.max() <= 1.0 and curv.min() >= 2 and curv.max() <= 4
    # log-uniform: each decade holds a quarter of the draws; uniform: each half of the range holds half
    decades = np.histogram(np.log10(lr), bins=[-4, -3, -2, -1, 0])[0] / len(lr)
    assert np.all(np.abs(decades - 0.25) < 0.03)
    assert abs(np.mean(curv < 3) - 0.5) < 0.03
    assert {p["width"] for p in points} == {4, 8} and all(type(p["steps"]) is int for p in points)


def test_plan_builds_the_full_product_with_seeds(toys):
    sweep = plan(SweepSpec("toy-quadratic", grid=("lr=0.1,0.2,0.3", "width=1,2"), seeds=2, seed=5,
                           overrides=("steps=7",)))
    assert len(sweep) == 12 and len({p.run_id for p in sweep.points}) == 12
    assert {p.config.seed for p in sweep.points} == {5, 6} and all(p.config.steps == 7 for p in sweep.points)
    assert [p.values for p in sweep.points[:2]] == [{"lr": 0.1, "width": 1, "seed": 5}, {"lr": 0.1, "width": 1, "seed": 6}]
    # the same runs written differently are the same sweep
    again = plan(SweepSpec("toy-quadratic", grid=("width=lin:1:2:2", "lr=1e-1,2e-1,3e-1"), seeds=2, seed=5,
                           overrides=("steps=7",)))
    assert again.sweep_id == sweep.sweep_id
    random = plan(SweepSpec("toy-quadratic", random=5, ranges=("lr=log:0.01:1",), seeds=2))
    assert len(random) == 10


BAD_SPECS = [
    (["--grid", "nope=1,2"], ["nope", "field of ToyConfig", "curvature", "lr"]),  # unknown key, allowed keys listed
    (["--grid", "steps=ten,20"], ["steps", "ten", "an integer"]),  # wrong type
    (["--grid", "lr="], ["lr", "at least one value"]),  # empty
    (["--grid", "lr=0.1,,0.2"], ["lr", "none empty"]),
    (["--grid", "lr=lin:1:0:5"], ["lr", "a < b", "reversed"]),  # reversed range
    (["--grid", "lr=lin:0.5:0.5:3"], ["lr", "empty"]),  # empty range
    (["--grid", "lr=log:0:1:3"], ["lr", "0 < a"]),  # non-positive log range
    (["--grid", "lr=log:1e-3:1e-1:0"], ["lr", "1 <= n"]),
    (["--grid", "lr=log:1e-3:1e-1:2.5"], ["lr", "whole number"]),
    (["--grid", "lr=lin:0.1:0.5"], ["lr", "lin:a:b:n"]),
    (["--grid", "crash=lin:1:2:3"], ["crash", "not a number field"]),
    (["--grid", "steps=lin:1.5:9:3"], ["steps", "integer endpoints"]),
    (["--grid", "crash=none,boom"], ["crash", "boom", "one of none, raise, exit"]),  # a config rule
    (["--grid", "lr=0.1,-0.2"], ["lr", "-0.2", "> 0"]),  # a value the config rejects, in its sweep point
    (["--grid", "lr=0.1", "--grid", "lr=0.2"], ["lr", "varied twice"]),
    (["--grid", "seed=1,2", "--seeds", "2"], ["seed", "--seeds"]),
    (["--grid", "lr"], ["--grid", "KEY=VALUES"]),
    (["--random", "3"], ["--random", "--range"]),
    (["--range", "lr=log:1:0.1", "--random", "3"], ["lr", "reversed"]),
    (["--range", "lr=log:0.1:1"], ["--range", "--random N"]),
    (["--executor", "slurm"], ["--executor", "local or ray"]),
    (["--workers", "0"], ["--workers", ">= 1"]),
    (["--plot", "x=nope,y=final_loss"], ["--plot x", "nope"]),
    (["--plot", "y=final_loss"], ["--plot", "both x= and y="]),
    (["--set", "steps=0"], ["steps", ">= 1"]),
]


@pytest.mark.parametrize("extra,words", BAD_SPECS, ids=[" ".join(a) for a, _ in BAD_SPECS])
def test_bad_specs_exit_2_naming_the_problem_before_any_run(toys, tmp_path, capsys, extra, words):
    store = tmp_path / "lab"
    code = main(["sweep", "toy-quadratic", "--store", str(store), "--workers", "2", *extra])
    message = capsys.readouterr().err
    assert code == 2, message
    for word in words:
        assert word in message, (word, message)
    assert not store.exists()  # nothing ran, nothing was written


def test_bad_experiment_and_file_exit_2(toys, tmp_path, capsys):
    assert main(["sweep", "no-such-law", "--grid", "lr=1", "--store", str(tmp_path)]) == 2
    assert "no-such-law" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('experiment = "toy-quadratic"\n[grid]\nlr = "lin:1:0:3"\n')
    assert main(["sweep", "--file", str(bad), "--store", str(tmp_path / "lab")]) == 2
    assert "reversed" in capsys.readouterr().err
    bad.write_text('experiment = "toy-quadratic"\ngrdi = 3\n')
    assert main(["sweep", "--file", str(bad), "--store", str(tmp_path / "lab")]) == 2
    assert "grdi" in capsys.readouterr().err and not (tmp_path / "lab").exists()


def test_toml_file_is_the_same_sweep_as_its_command_line(toys, tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('experiment = "toy-quadratic"\nseeds = 2\n[set]\nsteps = 9\n[grid]\n'
                    'lr = [1e-1, 2e-1]\nwidth = "log:1:4:3"\n')
    assert sweep_files.load(path)["grid"] == ["lr=0.1,0.2", "width=log:1:4:3"]
    assert main(["sweep", "--file", str(path), "--dry-run", "--json", "--store", str(tmp_path / "a")]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main(["sweep", "toy-quadratic", "--set", "steps=9", "--grid", "lr=0.1,0.2", "--grid", "width=1,2,4",
                 "--seeds", "2", "--dry-run", "--json", "--store", str(tmp_path / "a")]) == 0
    from_cli = json.loads(capsys.readouterr().out)
    assert from_file["total"] == 12 and from_file == from_cli


def test_example_sweep_file_plans(tmp_path, capsys):
    example = HERE.parent / "sweeps" / "example.toml"
    assert main(["sweep", "--file", str(example), "--dry-run", "--json", "--store", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["total"] > 1


# -- running -----------------------------------------------------------------------------------------
def _statuses(store: RunStore, experiment: str = "toy-quadratic") -> dict[str, str]:
    return {r.run_id: r.status for r in store.runs(experiment)}


def test_sweep_stores_every_run_once_and_resumes_only_what_is_missing(toys, tmp_path):
    store = RunStore(tmp_path / "lab")
    sweep = plan(SweepSpec("toy-quadratic", grid=("lr=0.1,0.5,1.0", "width=1,2"), seeds=2))
    executor = LocalExecutor(workers=2)
    first = run_sweep(sweep, store, executor, figures=False)
    ids = {p.run_id for p in sweep.points}
    assert set(first.computed) == ids and first.skipped == [] and len(ids) == 12
    assert _statuses(store) == {rid: "done" for rid in ids}
    rec = store.get(sweep.points[0].run_id)
    assert rec.config["lr"] == 0.1 and rec.meta["worker"] and rec.series("loss").shape[0] == 51
    assert rec.figures() == []  # figures off
    # a rerun computes nothing; losing two runs recomputes exactly those two
    assert run_sweep(sweep, store, executor).computed == {}
    lost = [sweep.points[3].run_id, sweep.points[8].run_id]
    for rid in lost:
        shutil.rmtree(store.root / "toy-quadratic" / rid)
    again = run_sweep(sweep, store, executor)
    assert set(again.computed) == set(lost) and len(again.skipped) == 10
    assert _statuses(store) == {rid: "done" for rid in ids}
    assert len(store.get(lost[0]).figures()) == 1  # figures on: the worker's PNG bytes stored by the driver
    # the runs table and SQL see every run, with config fields and metrics as columns
    out = store.query("select width, count(*) as n, max(final_loss) as worst from runs "
                      "where experiment = 'toy-quadratic' group by width order by width")
    assert out["n"].tolist() == [6, 6] and (out["worst"] < 1.0).all()


def test_divergence_is_a_result_at_the_predicted_threshold(toys, tmp_path):
    # GD on h/2 |x|^2 diverges iff lr > 2/h (h = 1): lr 1.9 converges, 2.1 blows up. |x_t|^2 = q^(2t) |x_0|^2,
    # q = |1 - lr h|, overflows float64 (and the loss with it) at t* = ceil((log DBL_MAX - log |x_0|^2) / (2 log q)).
    store = RunStore(tmp_path / "lab")
    sweep = plan(SweepSpec("toy-quadratic", grid=("lr=0.5,1.9,2.1,1e6",), overrides=("steps=5000",)))
    report = run_sweep(sweep, store, LocalExecutor(workers=2), figures=False)
    by_lr = {p.config.lr: store.get(p.run_id) for p in sweep.points}
    assert {lr: r.status for lr, r in by_lr.items()} == {0.5: "done", 1.9: "done", 2.1: "diverged", 1e6: "diverged"}
    assert report.counts() == {"done": 2, "diverged": 2, "failed": 0}
    import torch

    x0 = torch.randn(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for lr in (2.1, 1e6):
        rec = by_lr[lr]
        t_star = math.ceil((math.log(sys.float_info.max) - math.log(float(x0 @ x0))) / (2 * math.log(abs(1 - lr))))
        assert abs(rec.status_info["diverged_at"] - t_star) <= 1, (lr, rec.status_info["diverged_at"], t_star)
        assert rec.summary["diverged_at"] == rec.status_info["diverged_at"]
        assert len(rec.series("loss")) == rec.status_info["diverged_at"] + 1
    # a diverged run is finished: a rerun skips it
    assert run_sweep(sweep, store, LocalExecutor(workers=2)).computed == {}


def test_failed_runs_keep_their_traceback_and_are_retried(toys, tmp_path):
    store = RunStore(tmp_path / "lab")
    sweep = plan(SweepSpec("toy-quadratic", grid=("lr=0.1,0.2", "crash=none,raise")))
    report = run_sweep(sweep, store, LocalExecutor(workers=2), figures=False)
    failed = {p.run_id for p in sweep.points if p.config.crash == "raise"}
    assert {rid for rid, s in report.computed.items() if s == "failed"} == failed
    for rid in failed:
        rec = store.get(rid)
        assert rec.status == "failed" and "RuntimeError: toy crash at lr=" in rec.status_info["traceback"]
        assert "measure" in rec.status_info["traceback"]  # the worker's traceback, not the driver's
    again = run_sweep(sweep, store, LocalExecutor(workers=2), figures=False)
    assert set(again.computed) == failed and len(again.skipped) == 2


def test_a_worker_that_dies_fails_only_its_own_run(toys, tmp_path):
    store = RunStore(tmp_path / "lab")
    # five slow innocent runs, and one that kills its worker process, in flight together with them
    sweep = plan(SweepSpec("toy-quadratic", grid=("lr=0.1,0.2,0.3,0.4,0.6",), overrides=("sleep=0.3",)))
    crashing = plan(SweepSpec("toy-quadratic", grid=("lr=0.25",), overrides=("crash=exit",)))
    sweep.points.insert(1, crashing.points[0])
    executor = LocalExecutor(workers=2)
    report = run_sweep(sweep, store, executor, figures=False)
    bad = crashing.points[0].run_id
    assert report.computed[bad] == "failed" and "worker process died" in report.errors[bad]
    assert {rid: s for rid, s in report.computed.items() if rid != bad} == {
        p.run_id: "done" for p in sweep.points if p.run_id != bad}
    assert executor.restarts >= 1
    assert len(store.runs("toy-quadratic")) == 6 and not list((store.root / ".partial").glob("*/*"))


def test_cli_sweep_json_plot_and_query(toys, tmp_path, capsys):
    store = tmp_path / "lab"
    args = ["sweep", "toy-quadratic", "--store", str(store), "--workers", "2", "--no-figures",
            "--grid", "lr=log:0.1:3:4", "--grid", "width=1,2", "--set", "steps=2000", "--plot", "x=lr,y=final_loss,hue=width"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == 8 and report["computed"] == 8 and report["skipped"] == 0
    assert report["done"] == 6 and report["diverged"] == 2  # lr = 3 > 2/h diverges
    png = Path(report["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.parent == store / "sweeps"
    spec = json.loads((store / "sweeps" / f"{report['sweep_id']}.json").read_text())
    assert len(spec["runs"]) == 8 and spec["scales"] == {"lr": "log", "width": "list"}
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 8
    assert main(["runs", "query", "select width, status, count(*) as n from runs group by width, status "
                 "order by width, status", "--json", "--store", str(store)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"width": w, "status": s, "n": n} for w in (1, 2) for s, n in (("diverged", 1), ("done", 3))]
    table = RunStore(store).table("toy-quadratic")
    assert isinstance(table, pd.DataFrame) and {"lr", "width", "final_loss", "status"} <= set(table.columns)
    # a metric that no run has is bad input, named
    assert main([*args[:-1], "x=lr,y=nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_failures_make_exit_code_3(toys, tmp_path, capsys):
    code = main(["sweep", "toy-quadratic", "--store", str(tmp_path / "lab"), "--workers", "1", "--no-figures",
                 "--grid", "crash=none,raise"])
    captured = capsys.readouterr()
    assert code == 3 and "1 failed" in captured.out and "toy crash" in captured.out


def test_ray_executor_is_optional(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from lmech.sweeps.executors import make_executor

    with pytest.raises(BadInput, match="install Ray"):
        make_executor("ray")


def test_unreachable_ray_cluster_is_bad_input_before_any_run(toys, tmp_path, capsys):
    pytest.importorskip("ray")
    store = tmp_path / "lab"
    code = main(["sweep", "toy-quadratic", "--grid", "lr=0.1,0.2", "--executor", "ray", "--ray-address",
                 "127.0.0.1:1", "--store", str(store)])
    assert code == 2 and "nothing answers at 127.0.0.1:1" in capsys.readouterr().err
    assert main(["sweep", "toy-quadratic", "--grid", "lr=0.1", "--ray-address", "127.0.0.1:1",
                 "--store", str(store)]) == 2  # an address without --executor ray
    assert "--executor ray" in capsys.readouterr().err and not store.exists()
