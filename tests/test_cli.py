"""The lmech command: exit codes, bad input messages, JSON output, the report."""

from __future__ import annotations

import json
import subprocess

import pytest

from lmech.cli import main

FAST = ["--set", "stage_init_scales=", "--set", "init_scale=1e-2"]


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv", [[], ["list"], ["run"], ["check"], ["runs"], ["report"], ["sweep"], ["fit"],
                                  ["compare"]])
def test_help_on_every_command(argv, lmech_cmd, subprocess_env):
    done = subprocess.run(lmech_cmd + argv + ["--help"], env=subprocess_env, capture_output=True, text=True)
    assert done.returncode == 0 and "usage: lmech" in done.stdout


def test_unknown_key_exits_2_naming_key_and_allowed_keys(capsys, store_path):
    code, _, err = _run(capsys, ["run", "deep-linear", "--set", "dept=3"])
    assert code == 2
    assert "dept" in err and "depth" in err and "init_scale" in err  # the bad key and the allowed ones
    assert not store_path.exists()  # nothing ran


@pytest.mark.parametrize("setting,words", [("depth=two", ["depth", "integer"]), ("depth=1", ["depth", ">= 2"]),
                                           ("init=orthogonal", ["init", "decoupled", "random"]),
                                           ("lr=-1", ["lr", "> 0"]), ("loss_half=maybe", ["loss_half", "true or false"]),
                                           ("singular_values=3,x", ["singular_values", "list of float"]),
                                           ("nokey", ["key=value"])])
def test_bad_value_exits_2_naming_value_and_expectation(capsys, store_path, setting, words):
    code, _, err = _run(capsys, ["run", "deep-linear", "--set", setting])
    assert code == 2
    for word in words:
        assert word in err


def test_cuda_without_cuda_is_a_clear_error(capsys, store_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = _run(capsys, ["run", "deep-linear", "--device", "cuda"])
    assert code == 2 and "cuda" in err and "not available" in err


def test_unknown_experiment_exits_2(capsys, store_path):
    code, _, err = _run(capsys, ["run", "no-such-law"])
    assert code == 2 and "deep-linear" in err


def test_run_json_then_cached_rerun_then_runs_commands(capsys, store_path):
    code, out, _ = _run(capsys, ["run", "deep-linear", "--json", *FAST])
    assert code == 0
    payload = json.loads(out)
    fields = {"law", "statement", "citation", "quantity", "predicted", "measured", "agreement", "tolerance", "holds"}
    assert payload["verdicts"] and all(fields <= set(v) for v in payload["verdicts"])
    assert all(v["law"] == "deep-linear" and v["holds"] for v in payload["verdicts"])
    rid = payload["runs"][0]["run_id"]
    code, out, _ = _run(capsys, ["run", "deep-linear", "--json", *FAST])
    assert code == 0 and json.loads(out)["runs"][0]["cached"] is True  # the finished run is reused
    code, out, _ = _run(capsys, ["run", "deep-linear", *FAST])  # the text a person reads, in a pipe: 80 columns
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("deep-linear: A deep linear network") and "t_half_err" in out
    wide = [line for line in lines if len(line) > 80 and len(line.split()) > 1]  # only a long path may be wider
    assert not wide, wide
    assert lines.index(next(line for line in lines if line.split()[:1] == ["criterion"])) > 1  # under the heading
    code, out, _ = _run(capsys, ["runs", "list", "--json"])
    assert code == 0 and [r["run_id"] for r in json.loads(out)] == [rid]
    code, out, _ = _run(capsys, ["runs", "show", rid[:6], "--json"])
    shown = json.loads(out)
    assert code == 0 and shown["config"]["init_scale"] == 1e-2 and "modes" in shown["series"]
    code, out, _ = _run(capsys, ["runs", "query", "select depth, t_half_err from runs", "--json"])
    rows = json.loads(out)
    assert code == 0 and rows[0]["depth"] == 2 and rows[0]["t_half_err"] < 0.05
    code, _, err = _run(capsys, ["runs", "query", "select nonsense from"])
    assert code == 2 and "SQL" in err
    code, _, err = _run(capsys, ["runs", "show", "ffffffff"])
    assert code == 2


def test_violated_law_exits_1(capsys, store_path):
    code, out, _ = _run(capsys, ["run", "deep-linear", "--json", *FAST, "--set", "lr=0.15"])
    assert code == 1 and not json.loads(out)["holds"]


def test_check_writes_self_contained_report(capsys, store_path, tmp_path):
    report = tmp_path / "book.html"
    code, out, _ = _run(capsys, ["check", "deep-linear", "--json", "--out", str(report), "--seed", "3"])
    payload = json.loads(out)
    assert code == 0 and payload["holds"]
    labels = {v["label"] for v in payload["verdicts"]}
    assert labels == {"depth=2", "depth=3"}  # the law book checks depth 2 and depth 3
    html = report.read_text()
    assert html.index("<table") < html.index('class="law"')  # opens with the verdict table
    assert html.count("data:image/png;base64,") == 2  # figures embedded, one per run
    assert "Saxe" in html and "t½" in html and payload["runs"][0]["run_id"] in html
    code, out, _ = _run(capsys, ["report", "--out", str(tmp_path / "again.html")])
    assert code == 0 and (tmp_path / "again.html").read_text().count("data:image/png;base64,") == 2


def test_list_is_whole_at_80_columns_in_a_pipe(lmech_cmd, subprocess_env):
    """`lmech list` in a pipe (COLUMNS unset: 80): every line fits, the heading says how many laws."""
    env = {k: v for k, v in subprocess_env.items() if k != "COLUMNS"}
    done = subprocess.run(lmech_cmd + ["list"], env=env, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[0].startswith("The law book: ") and "deep-linear" in lines
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
