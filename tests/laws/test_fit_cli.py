"""``lmech fit scaling``: the replication from the shared CSV, whole output at 80 columns, bad CSVs named."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from lmech.cli import main
from lmech.laws.scaling import EPOCH_ESTIMATE, PARAMS, ChinchillaLaw

EPOCH_SE = {"E": 0.02566, "A": 124.52, "B": 1293.28, "alpha": 0.01540, "beta": 0.02060}


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def small_csv(tmp_path):
    """24 runs of a known law with 1% noise, in a CSV with the columns a user would have."""
    law = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    N, D = (a.ravel() for a in np.meshgrid(np.logspace(7, 9, 4), np.logspace(9, 11, 6)))
    L = law.loss(N, D) * np.exp(np.random.default_rng(0).normal(0.0, 0.01, N.shape))
    path = tmp_path / "results.csv"
    pd.DataFrame({"params": N, "tokens": D, "flops": 6 * N * D, "final_loss": L}).to_csv(path, index=False)
    return path


def test_reproduces_the_replication_from_the_shared_csv(capsys, chinchilla_csv, tmp_path):
    """Same tolerance as tests/laws/test_scaling.py: 0.1 of Besiroglu et al.'s bootstrap SE per parameter."""
    fig = tmp_path / "fit.png"
    code, out, _ = _run(capsys, ["fit", "scaling", str(chinchilla_csv), "--n", "Model Size", "--flop", "Training FLOP",
                                 "--loss", "loss", "--drop-highest-loss", "5", "--bootstrap", "100", "--json",
                                 "--out", str(fig)])
    assert code == 0
    doc = json.loads(out)
    assert set(doc["params"]) == set(PARAMS) and set(doc["intervals"]) == set(PARAMS)
    for name in PARAMS:
        assert abs(doc["params"][name] - EPOCH_ESTIMATE[name]) <= 0.1 * EPOCH_SE[name], name
        lo, hi = doc["intervals"][name]
        assert lo < doc["params"][name] < hi
    assert doc["n_points"] == 240 and doc["dropped_rows"] == [1, 2, 3, 4, 5]
    assert len(doc["compute_optimal"]) == 3 and "N_interval" in doc["compute_optimal"][0]
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_output_is_whole_at_80_columns(small_csv, lmech_cmd, subprocess_env, tmp_path):
    env = subprocess_env | {"COLUMNS": "80"}
    done = subprocess.run(lmech_cmd + ["fit", "scaling", str(small_csv), "--n", "params", "--d", "tokens",
                                       "--loss", "final_loss", "--bootstrap", "50", "--drop-highest-loss", "1"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in done.stdout  # nothing cut short
    text = done.stdout
    for word in ("E", "A", "B", "alpha", "beta", "95% interval", "N_opt", "D_opt", "tokens/param", "Dropped the highest loss: row 1."):
        assert word in text, word


def _bad(tmp_path, frame: pd.DataFrame):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def _good_frame(n=8):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"N": np.logspace(7, 9, n), "D": np.logspace(9, 11, n), "loss": 3 + rng.random(n)})


@pytest.mark.parametrize("edit, argv_cols, words", [
    (None, ["--n", "n", "--d", "D", "--loss", "loss"], ["--n", "'n'", "did you mean 'N'"]),
    (None, ["--n", "N", "--d", "D", "--loss", "los"], ["--loss", "'los'", "did you mean 'loss'", "columns: N, D, loss"]),
    (("N", 2, -5.0), ["--n", "N", "--d", "D", "--loss", "loss"], ["N, row 3 (line 4 of bad.csv)", "-5.0", "positive"]),
    (("D", 0, 0.0), ["--n", "N", "--d", "D", "--loss", "loss"], ["D, row 1 (line 2 of bad.csv)", "0.0"]),
    (("loss", 5, np.nan), ["--n", "N", "--d", "D", "--loss", "loss"], ["loss, row 6 (line 7 of bad.csv)", "nan"]),
    (("loss", 1, "n/a?"), ["--n", "N", "--d", "D", "--loss", "loss"], ["loss, row 2", "n/a?"]),
])
def test_bad_csv_is_named_before_fitting(capsys, tmp_path, monkeypatch, edit, argv_cols, words):
    import lmech.laws.scaling as scaling

    monkeypatch.setattr(scaling, "fit_scaling", lambda *a, **k: pytest.fail("fitted a bad CSV"))
    frame = _good_frame()
    if edit is not None:
        col, row, value = edit
        frame[col] = frame[col].astype(object)
        frame.loc[row, col] = value
    code, _, err = _run(capsys, ["fit", "scaling", str(_bad(tmp_path, frame))] + argv_cols + ["--bootstrap", "0"])
    assert code == 2
    for word in words:
        assert word in err, (word, err)


def test_too_few_runs_and_other_bad_arguments(capsys, tmp_path):
    path = _bad(tmp_path, _good_frame(6))
    cols = ["--n", "N", "--d", "D", "--loss", "loss"]
    code, _, err = _run(capsys, ["fit", "scaling", str(path), *cols, "--drop-highest-loss", "2"])
    assert code == 2 and "runs=4" in err and "at least 5 runs after dropping 2" in err
    code, _, err = _run(capsys, ["fit", "scaling", str(tmp_path / "missing.csv"), *cols])
    assert code == 2 and "missing.csv" in err
    code, _, err = _run(capsys, ["fit", "scaling", str(path), *cols, "--drop-highest-loss", "6"])
    assert code == 2 and "--drop-highest-loss" in err
    code, _, err = _run(capsys, ["fit", "scaling", str(path), *cols, "--bootstrap", "-1"])
    assert code == 2 and "--bootstrap" in err
    code, _, err = _run(capsys, ["fit", "scaling", str(path), *cols, "--out", str(tmp_path / "fig.txt")])
    assert code == 2 and "--out" in err


@pytest.mark.parametrize("json_output", [False, True])
def test_bootstrap_shows_a_progress_bar(capsys, small_csv, monkeypatch, json_output):
    """The bootstrap advances a progress bar (on stderr) to its replicate count; with --json no bar is drawn,
    so the output stays one JSON object."""
    import lmech.cli.fit as fit_cli

    seen = []

    class Spy(fit_cli.RichProgress):
        def start(self, total, description):
            seen.append(("start", total, description, self.progress is not None))
            super().start(total, description)

        def advance(self, n=1):
            seen.append(("advance", n))
            super().advance(n)

    monkeypatch.setattr(fit_cli, "RichProgress", Spy)
    code, out, _ = _run(capsys, ["fit", "scaling", str(small_csv), "--n", "params", "--d", "tokens", "--loss",
                                 "final_loss", "--bootstrap", "30"] + (["--json"] if json_output else []))
    assert code == 0
    assert seen[0] == ("start", 30, "bootstrap", not json_output)
    assert sum(n for kind, n, *_ in seen if kind == "advance") == 30
    if json_output:
        assert json.loads(out)["bootstrap"] == 30
