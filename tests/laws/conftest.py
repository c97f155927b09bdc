"""Fixtures of the law-fitting tests: the real Chinchilla data (read in place, never copied)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CHINCHILLA_CSV = "chinchilla_svg_extracted.csv"


def shared_data(name: str) -> Path | None:
    """``shared/data/NAME`` beside the repository or beside any folder above it (a worktree may sit
    one level deeper than the checkout whose ``../shared`` holds the data); None if there is none."""
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "shared" / "data" / name
        if candidate.is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def chinchilla_csv() -> Path:
    path = shared_data(CHINCHILLA_CSV)
    if path is None:
        pytest.skip(f"../shared/data/{CHINCHILLA_CSV} is absent (Epoch AI's extraction of Hoffmann et al. Fig. 4 "
                    "has no licence, so the repository never copies it; see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def chinchilla_runs(chinchilla_csv):
    """(N, D, L) of the 240 runs Besiroglu et al. fit: D = FLOP / (6N), the five highest losses dropped."""
    import pandas as pd

    frame = pd.read_csv(chinchilla_csv)
    N = frame["Model Size"].to_numpy(float)
    D = frame["Training FLOP"].to_numpy(float) / (6.0 * N)
    L = frame["loss"].to_numpy(float)
    keep = L < np.sort(L)[-5]
    return N[keep], D[keep], L[keep]
