"""Your own laws (issue 11): a plugin law is known to every command, by $LMECH_PLUGINS or a `lmech.laws` entry point.

The plugin is the complete law of docs/writing-a-law.md, written into a package of a temporary folder.
Through it the tests also check, on a real store: the verdict summary in a pipe (80 columns), the runs
table in a pipe, replay by run id, the report (which configs ran, how long, why each tolerance, the
inconclusive reason) and a sweep's report (runs ordered by the swept values, its summary figure).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lmech.cli import main
from lmech.experiments import names
from lmech.experiments.registry import unregister
from lmech.report.format import number

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _law_source() -> str:
    return re.findall(r"```python\n(.*?)```", (DOCS / "writing-a-law.md").read_text(), flags=re.S)[0]


@pytest.fixture
def plugin_root(tmp_path, monkeypatch):
    """A folder holding the package ``my_lab`` (``my_lab.laws`` registers ``lsq-gd``), on sys.path."""
    root = tmp_path / "site"
    (root / "my_lab").mkdir(parents=True)
    (root / "my_lab" / "__init__.py").write_text("")
    (root / "my_lab" / "laws.py").write_text(_law_source())
    monkeypatch.syspath_prepend(str(root))
    yield root
    unregister("lsq-gd")
    for mod in ("my_lab.laws", "my_lab"):
        sys.modules.pop(mod, None)


def _env(root: Path, **extra) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    env.pop("LMECH_STORE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *[p for p in sys.path if p and "site-packages" not in p]])
    env.update(extra)
    return env


def test_entry_point_plugin_is_loaded_without_the_environment(plugin_root, monkeypatch):
    dist = plugin_root / "my_lab-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-lab\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lmech.laws]\nmy_lab = my_lab.laws\n")
    monkeypatch.delenv("LMECH_PLUGINS", raising=False)
    importlib.invalidate_caches()
    assert "lsq-gd" not in names()
    from lmech.plugins import load_plugins

    assert "my_lab.laws" in load_plugins()
    assert "lsq-gd" in names()


def test_a_broken_plugin_is_bad_input_naming_it(monkeypatch, capsys):
    monkeypatch.setenv("LMECH_PLUGINS", "no_such_lab.laws")
    assert main(["list"]) == 2
    assert "no_such_lab.laws" in capsys.readouterr().err


@pytest.mark.slow
def test_a_plugin_law_in_every_command(plugin_root, tmp_path, monkeypatch, capsys, lmech_cmd):
    store = tmp_path / "lab"
    monkeypatch.setenv("LMECH_PLUGINS", "my_lab.laws")
    monkeypatch.setenv("LMECH_STORE", str(store))
    monkeypatch.setenv("COLUMNS", "80")
    env = _env(plugin_root, LMECH_PLUGINS="my_lab.laws", LMECH_STORE=str(store))

    assert main(["list"]) == 0 and "lsq-gd" in capsys.readouterr().out
    assert main(["list", "lsq-gd"]) == 0
    listed = capsys.readouterr().out
    assert "curve_err" in listed and "≤ 1e-06" in listed and "declared by the law" in listed

    # lmech check in a pipe (80 columns): the law name and the worst agreement whole
    done = subprocess.run(lmech_cmd + ["check", "lsq-gd", "--workers", "1"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 or line.startswith("Report: /") for line in lines), lines  # a path is never broken
    assert main(["check", "lsq-gd", "--json"]) == 0  # cached: the same runs
    payload = json.loads(capsys.readouterr().out)
    worst = max(payload["verdicts"], key=lambda v: v["agreement"] / v["tolerance"])
    row = next(line for line in lines if "lsq-gd" in line.split())
    assert "holds" in row.split() and "2/2" in row.split()
    assert number(worst["agreement"]) in done.stdout and worst["key"] in done.stdout
    rid = payload["runs"][0]["run_id"]

    # an inconclusive run: exit 4, the reason shown, and kept for the report
    assert main(["run", "lsq-gd", "--set", "steps=1"]) == 4
    assert "inconclusive" in capsys.readouterr().out

    # replay by id recomputes the stored run: the same verdicts (these agreements are float64 rounding, ~1e-12,
    # whose last digits LAPACK may change between processes, so they are compared to 1e-9)
    assert main(["run", "--replay", rid[:8], "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["runs"][0]["run_id"] == rid and replayed["runs"][0]["cached"] is False
    assert [v["status"] for v in replayed["verdicts"]] == [v["status"] for v in payload["verdicts"]]
    assert [v["agreement"] for v in replayed["verdicts"]] == pytest.approx([v["agreement"] for v in payload["verdicts"]],
                                                                           abs=1e-9)

    # the runs table, every column, through a pipe: readable blocks, nothing cut, no internal column
    done = subprocess.run(lmech_cmd + ["runs", "query", "select * from runs"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert all(len(line) <= 80 for line in done.stdout.splitlines())
    assert "m_holds" not in done.stdout and "…" not in done.stdout and rid in done.stdout
    assert main(["runs", "list", "--all-columns", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("run_id,")

    # the report: which configs ran, how long each took, each tolerance's reason, the inconclusive reason
    assert main(["report", "--all", "--out", str(tmp_path / "all.html")]) == 0
    html = (tmp_path / "all.html").read_text()
    assert "quick law book" in html and "custom config" in html and "took" in html
    assert "exact up to rounding" in html  # a criterion's why
    assert "not tested: the slowest mode carries" in html
    assert f"lmech run --replay {rid}" in html

    # a sweep (worker processes load the plugin too) and its report, ordered by the swept values
    done = subprocess.run(lmech_cmd + ["sweep", "lsq-gd", "--grid", "lr_fraction=0.4,0.1,0.2", "--seeds", "2",
                                       "--workers", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "lmech runs query" in done.stdout and "where experiment = 'lsq-gd'" in done.stdout
    sweep_html = Path(re.search(r"report \(runs ordered by the swept values\): (\S+)", done.stdout).group(1))
    page = sweep_html.read_text()
    assert page.count('alt="the sweep') == 1  # the summary figure, embedded
    order = re.findall(r'data-label="lr_fraction"><a href="#run-\w+">([\d.]+)</a>', page)
    assert order == ["0.1", "0.1", "0.2", "0.2", "0.4", "0.4"]
    sid = sweep_html.stem
    assert main(["report", "--sweep", sid[:6], "--out", str(tmp_path / "sweep.html")]) == 0


def test_the_documented_law_judges_what_it_declares(plugin_root):
    from lmech.experiments import get
    from lmech.experiments.runner import compute

    importlib.import_module("my_lab.laws")
    law = get("lsq-gd")
    verdicts = compute(law, law.quick_config())[2]
    declared = {c.key: c for c in law.criteria()}
    assert [v.key for v in verdicts] == list(declared)
    assert all(v.tolerance == declared[v.key].tolerance and v.why == declared[v.key].why for v in verdicts)
