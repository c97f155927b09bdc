"""Sweep inputs that used to pass validation and then exhaust memory or crash (issue 12, item 8): each is
refused with exit 2 before any work, quickly and without allocating the sweep."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from lmech.cli import main
from lmech.store import RunStore


@pytest.mark.parametrize("extra,words", [
    (["--grid", "width=lin:2:3:1e9", "--dry-run"], ["width", "n <= 100,000"]),
    (["--grid", "lr=log:1e-3:1:1e12"], ["lr", "n <= 100,000"]),
    (["--seeds", "100000000"], ["--seeds", "100,000"]),
    (["--random", "1000000000", "--range", "lr=lin:0.1:0.2"], ["--random", "100,000"]),
    (["--grid", "lr=lin:0.1:0.5:1000", "--grid", "steps=lin:1:1000:1000"], ["sweep size", "1,000,000 runs"]),
    (["--random", "2", "--range", "lr=lin:0.1:0.2", "--sweep-seed", "-1"], ["--sweep-seed", "-1"]),
    (["--workers", "100000"], ["--workers", "at most"]),
    (["--set", "seed=18446744073709551615"], ["seed", "9223372036854775807"]),
])
def test_sweeps_beyond_the_machine_are_refused_before_any_work(tmp_path, toys, capsys, extra, words):
    store = tmp_path / "lab"
    tracemalloc.start()
    start = time.perf_counter()
    code = main(["sweep", "toy-quadratic", "--store", str(store), *extra])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    err = capsys.readouterr().err
    assert code == 2, err
    for word in words:
        assert word in err, (word, err)
    assert time.perf_counter() - start < 20 and peak < 200e6  # refused before the grid was built
    assert not (store / "toy-quadratic").exists()


def test_a_non_utf8_sweep_file_is_a_clear_error(tmp_path, toys, capsys):
    path = tmp_path / "sweep.toml"
    path.write_bytes(b'experiment = "toy-quadratic"\n# caf\xe9\n')
    assert main(["sweep", "--file", str(path), "--store", str(tmp_path / "lab")]) == 2
    assert "UTF-8" in capsys.readouterr().err


def test_a_plugin_that_raises_is_a_clear_error(tmp_path, toys, capsys, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('my lab is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("LMECH_PLUGINS", "sweep_toys,broken_plugin")
    assert main(["sweep", "toy-quadratic", "--grid", "lr=0.1,0.2", "--store", str(tmp_path / "lab")]) == 2
    err = capsys.readouterr().err
    assert "broken_plugin" in err and "my lab is broken" in err and "RuntimeError" in err


def test_a_bad_plot_metric_is_refused_before_the_sweep_runs(tmp_path, toys, capsys):
    store = tmp_path / "lab"
    base = ["sweep", "toy-quadratic", "--workers", "1", "--no-figures", "--store", str(store)]
    assert main([*base, "--grid", "lr=0.1,0.2", "--plot", "x=lr,y=final_loss"]) == 0  # a good metric
    before = len(RunStore(store).runs())
    capsys.readouterr()
    assert main([*base, "--grid", "lr=0.3,0.4", "--plot", "x=lr,y=no_such_metric"]) == 2
    err = capsys.readouterr().err
    assert "no_such_metric" in err and "final_loss" in err  # names the metrics there are
    assert len(RunStore(store).runs()) == before  # nothing ran


def test_a_bad_plot_metric_in_a_fresh_store_never_claims_nothing_ran(tmp_path, toys, capsys):
    store = tmp_path / "lab"
    code = main(["sweep", "toy-quadratic", "--workers", "1", "--no-figures", "--store", str(store),
                 "--grid", "lr=0.1,0.2", "--plot", "x=lr,y=no_such_metric"])
    err = capsys.readouterr().err
    assert code == 0 and "no summary figure" in err and "stored" in err
    assert len(RunStore(store).runs()) == 2
