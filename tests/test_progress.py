"""Progress where a run is watched from: a worker process's file read by `lmech check`, a notebook bar,
and the sweep figure's marks (issue 11)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from lmech.experiments.base import Experiment, Result, RunConfig
from lmech.experiments.runner import compute_run
from lmech.progress import FileProgress, auto_progress, progress_from_env, read_progress


class Counting(Experiment):
    """A stand-in law whose measurement reports 50 steps of progress."""

    name, law, citation, Config = "counting", "Counting counts.", "none", RunConfig

    def quick_config(self):
        return RunConfig()

    def predict(self, config):
        return Result()

    def measure(self, config, progress=None):
        progress.start(50, "counting")
        for _ in range(50):
            progress.advance()
        return Result(series={"n": pd.DataFrame({"n": [50]})})

    def verdict(self, config, prediction, measurement):
        return [self.make_verdict("count", "steps", 50, 50, 0.0, 0.5, why="exact")]

    def figures(self, config, prediction, measurement, outdir):
        return []


def test_a_worker_reports_its_progress_to_the_drivers_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("LMECH_PROGRESS_DIR", raising=False)
    assert progress_from_env("abc") is None
    monkeypatch.setenv("LMECH_PROGRESS_DIR", str(tmp_path))
    run = compute_run(Counting(), RunConfig(), figures=False)  # progress=None: as in a worker process
    state = read_progress(tmp_path / f"{run.run_id}.json")
    assert state["total"] == 50 and state["done"] == 50 and state["description"] == "counting"


def test_check_draws_a_bar_per_worker_entry(tmp_path):
    from rich.console import Console
    from rich.progress import Progress

    from lmech.cli.check import WorkerBars

    shown = Progress(console=Console(file=open(tmp_path / "tty", "w")), transient=True)
    with shown, WorkerBars(shown, tmp_path, {"r1": "deep-linear depth=2", "r2": "eigenlearning"}, interval=0.05) as bars:
        progress = FileProgress(tmp_path / "r1.json", min_interval=0)
        progress.start(40, "training")
        progress.advance(10)
        deadline = time.time() + 10
        while "r1" not in bars.tasks and time.time() < deadline:
            time.sleep(0.05)
        task = shown.tasks[[t.id for t in shown.tasks].index(bars.tasks["r1"])]
        assert task.total == 40 and task.completed == 10 and "deep-linear depth=2: training" in task.description
        assert "r2" not in bars.tasks  # not started yet: no bar
        bars.done("r1")
        assert "r1" not in bars.tasks and not shown.tasks


def test_outside_a_notebook_or_terminal_no_bar(monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert auto_progress("x") is None


def test_sweep_figure_marks_violated_and_diverged_runs_and_labels_the_band(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from lmech.sweeps.plot import PlotSpec, plot_sweep

    rows = []
    for lr in (0.1, 0.2, 0.4):
        for seed in (0, 1, 2):
            status = "diverged" if lr == 0.4 else "done"
            verdict = "violated" if (lr == 0.2 and seed == 0) else "holds"
            rows.append({"run_id": f"{lr}-{seed}", "status": status, "lr": lr, "seed": seed, "verdict": verdict,
                         "err": np.nan if status == "diverged" else lr + 0.01 * seed})
    seen = {}
    original = Figure.savefig

    def capture(self, *args, **kwargs):
        seen["labels"] = [t.get_text() for ax in self.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    path = plot_sweep(pd.DataFrame(rows), PlotSpec("lr", "err"), tmp_path / "s.png", {"lr": "list", "seed": "list"})
    assert Path(path).exists()
    labels = seen["labels"]
    assert "diverged" in labels
    assert any(lab.startswith("law violated (1 runs") for lab in labels)
    assert any("min–max over 3 seeds" in lab for lab in labels)


def test_report_has_a_phone_layout():
    """The page declares its viewport and turns tables into cards on a phone (checked in a browser by
    tests/test_report_browser.py where Chromium is installed)."""
    from importlib.resources import files

    template = (files("lmech.report") / "templates" / "lawbook.html").read_text()
    assert 'name="viewport"' in template and "@media (max-width: 700px)" in template
