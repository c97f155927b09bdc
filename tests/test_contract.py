"""Contract every registered experiment must satisfy (scikit-learn's shared-checks idea).

For each law: its quick config (the law book's first entry) runs and gives well-formed verdicts and
written figures; the same seed gives bit-identical measurement series and a different seed different
ones (checked on the law's ``smoke_config``, a shortened quick config: determinism does not depend on
run length).
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from lmech.config import to_dict, validate
from lmech.experiments import get as get_experiment
from lmech.experiments import names
from lmech.experiments.base import is_timing
from lmech.experiments.runner import compute

VERDICT_FIELDS = {"law", "statement", "citation", "key", "quantity", "predicted", "measured", "agreement",
                  "tolerance", "holds", "details"}


@pytest.fixture(scope="module", params=names())
def law(request, quick_run):
    exp = get_experiment(request.param)
    return exp, quick_run(request.param)


@pytest.fixture(scope="module", params=names())
def smoke(request):
    exp = get_experiment(request.param)
    config = exp.smoke_config()
    first = compute(exp, config)
    second = compute(exp, config)
    other = compute(exp, dataclasses.replace(config, seed=config.seed + 1))
    return exp, first, second, other


def test_identity(law):
    exp, _ = law
    config = exp.quick_config()
    assert exp.name and exp.law.endswith(".") and exp.citation
    assert isinstance(config, exp.Config) and validate(config) == config
    assert validate(exp.default_config()) == exp.default_config()
    assert validate(exp.smoke_config()) == exp.smoke_config()
    assert to_dict(config)["seed"] == config.seed
    assert exp.lawbook(quick=True) and all(isinstance(c, exp.Config) for _, c in exp.lawbook(quick=True))


def test_verdicts_well_formed(law):
    exp, (_, _, verdicts, _) = law
    assert verdicts
    for v in verdicts:
        d = v.to_dict()
        assert VERDICT_FIELDS <= set(d)
        assert d["law"] == exp.name and isinstance(d["holds"], bool)
        assert isinstance(d["agreement"], float)
        tol = d["tolerance"]
        assert isinstance(tol, float) or (isinstance(tol, list) and len(tol) == 2 and tol[0] <= tol[1])
        # holds is decided by the stated metric, not by hand
        expected = (tol[0] <= d["agreement"] <= tol[1]) if isinstance(tol, list) else d["agreement"] <= tol
        assert d["holds"] == (expected and not math.isnan(d["agreement"]))


def test_figures_written(law):
    _, (*_, figures) = law
    assert figures
    for path in figures:
        assert path.suffix == ".png" and path.stat().st_size > 5000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _deterministic(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop wall-clock columns (the convention of Result: names 'seconds' or ending in '_seconds')."""
    return frame[[c for c in frame.columns if not is_timing(c)]]


def test_same_seed_bit_identical(smoke):
    _, first, second, _ = smoke
    m1, m2 = first[1], second[1]
    assert m1.series.keys() == m2.series.keys()
    for name in m1.series:
        pd.testing.assert_frame_equal(_deterministic(m1.series[name]), _deterministic(m2.series[name]),
                                      check_exact=True)
    s1 = {k: v for k, v in m1.summary.items() if not is_timing(k)}
    s2 = {k: v for k, v in m2.summary.items() if not is_timing(k)}
    assert s1.keys() == s2.keys()
    assert all(s1[k] == s2[k] or (math.isnan(s1[k]) and math.isnan(s2[k])) for k in s1)


def test_different_seed_differs(smoke):
    _, first, _, other = smoke
    assert any(not first[1].series[name].equals(other[1].series[name]) for name in first[1].series)
