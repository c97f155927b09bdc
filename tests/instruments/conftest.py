"""Instrument tests run on one torch thread: the small models here are fastest that way, and two threads
per test process oversubscribe the 2-core CI machine under pytest-xdist (20x slower under load)."""

from __future__ import annotations

import pytest

from lmech.experiments.runner import torch_threads


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with torch_threads(1):
        yield
