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
