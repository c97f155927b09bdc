"""Contract every registered experiment must satisfy (scikit-learn's shared-checks idea).

For each law's quick config: the verdicts are well formed, the figures are written, the same seed
gives bit-identical measurement series, and a different seed gives different ones.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from lmech.config import to_dict, validate
from lmech.experiments import get as get_experiment
from lmech.experiments import names
from lmech.experiments.runner import compute

VERDICT_FIELDS = {"law", "statement", "citation", "key", "quantity", "predicted", "measured", "agreement",
                  "tolerance", "holds", "details"}


@pytest.fixture(scope="module", params=names())
def law(request, tmp_path_factory):
    exp = get_experiment(request.param)
    config = exp.quick_config()
    outdir = tmp_path_factory.mktemp(request.param)
    first = compute(exp, config, figures_dir=outdir / "a")
    second = compute(exp, config, figures_dir=outdir / "b")
    other = compute(exp, dataclasses.replace(config, seed=config.seed + 1))
    return exp, config, first, second, other


def test_identity(law):
    exp, config, *_ = law
    assert exp.name and exp.law.endswith(".") and exp.citation
    assert isinstance(config, exp.Config) and validate(config) == config
    assert validate(exp.default_config()) == exp.default_config()
    assert to_dict(config)["seed"] == config.seed
    assert exp.lawbook(quick=True) and all(isinstance(c, exp.Config) for _, c in exp.lawbook(quick=True))


def test_verdicts_well_formed(law):
    exp, _, (_, _, verdicts, _), *_ = law
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
    *_, figures = law[2]
    assert figures
    for path in figures:
        assert path.suffix == ".png" and path.stat().st_size > 5000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_bit_identical(law):
    _, _, first, second, _ = law
    m1, m2 = first[1], second[1]
    assert m1.series.keys() == m2.series.keys()
    for name in m1.series:
        pd.testing.assert_frame_equal(m1.series[name], m2.series[name], check_exact=True)
    assert m1.summary == m2.summary


def test_different_seed_differs(law):
    _, _, first, _, other = law
    assert any(not first[1].series[name].equals(other[1].series[name]) for name in first[1].series)
