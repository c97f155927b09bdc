"""Shared fixtures: a temporary store, and the CLI entry point run in-process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store folder, also exported as LMECH_STORE for the CLI."""
    path = tmp_path / "lab"
    monkeypatch.setenv("LMECH_STORE", str(path))
    return path


@pytest.fixture
def lmech_cmd() -> list[str]:
    """The command line of the installed ``lmech`` console script (next to this Python)."""
    script = Path(sys.executable).with_name("lmech")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lmech.cli"]


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LMECH_STORE", None)
    env["COLUMNS"] = "200"
    return env


_QUICK_CACHE: dict = {}


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(name, label=None)``: (prediction, measurement, verdicts, figures) of a law-book entry.

    Computed once per session and shared by the contract test and the laws' own tests, so the suite
    runs each law's quick config once.
    """
    from lmech.experiments import get
    from lmech.experiments.runner import compute

    def run(name: str, label: str | None = None):
        exp = get(name)
        entries = exp.lawbook(quick=True)
        label = entries[0][0] if label is None else label
        key = (name, label)
        if key not in _QUICK_CACHE:
            outdir = tmp_path_factory.mktemp(f"{name}-{label or 'quick'}")
            _QUICK_CACHE[key] = compute(exp, dict(entries)[label], figures_dir=outdir)
        return _QUICK_CACHE[key]

    return run
