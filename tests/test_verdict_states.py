"""The three verdict states (holds, violated, inconclusive) from the Verdict up to the CLI's exit codes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from lmech.cli import main
from lmech.config import spec
from lmech.experiments.base import Counterexample, Experiment, Result, RunConfig, Verdict
from lmech.experiments.registry import register, unregister
from lmech.verdicts import overall_status, verdict_status


def _verdict(agreement, tolerance, inconclusive=None):
    return Verdict(law="toy", statement="s.", citation="c", key="k", quantity="q", predicted=1, measured=1,
                   agreement=agreement, tolerance=tolerance, inconclusive=inconclusive)


def test_verdict_states():
    assert _verdict(0.1, 0.2).status == "holds"
    assert _verdict(0.3, 0.2).status == "violated"
    assert _verdict(math.nan, 0.2).status == "violated"
    assert _verdict(0.5, (0.0, 1.0)).status == "holds"
    v = _verdict(0.1, 0.2, inconclusive="edge never reached")
    assert v.status == "inconclusive" and not v.holds and v.to_dict()["inconclusive"] == "edge never reached"
    assert overall_status([]) is None
    assert overall_status([_verdict(0.1, 0.2), v]) == "inconclusive"
    assert overall_status([_verdict(0.3, 0.2), v]) == "violated"
    assert overall_status([_verdict(0.1, 0.2).to_dict()]) == "holds"
    # verdicts stored before the state existed carry only `holds`
    assert verdict_status({"holds": True}) == "holds" and verdict_status({"holds": False}) == "violated"


def test_counterexample_needs_one_kind():
    with pytest.raises(ValueError):
        Counterexample("x", ("k",), "why")
    with pytest.raises(ValueError):
        Counterexample("x", ("k",), "why", config=RunConfig(), perturb=lambda c, p, m: m)
    with pytest.raises(ValueError):
        Counterexample("x", ("k",), "why", config=RunConfig(), expect="holds")


@dataclass(frozen=True)
class ToyConfig(RunConfig):
    value: float = spec(0.1, "the measured value", min=0.0)
    reached: bool = spec(True, "whether the precondition is met")


class Toy(Experiment):
    name = "toy-states"
    law = "A toy law whose value stays below 0.2."
    citation = "nobody"
    Config = ToyConfig

    def quick_config(self):
        return ToyConfig()

    def predict(self, config):
        return Result()

    def measure(self, config, progress=None):
        return Result(series={"x": pd.DataFrame({"v": [config.value]})})

    def verdict(self, config, prediction, measurement):
        reason = None if config.reached else "the precondition was not met"
        return [self.make_verdict("value", "v", 0.0, config.value, config.value, 0.2, inconclusive=reason)]

    def figures(self, config, prediction, measurement, outdir: Path):
        return []


@pytest.fixture
def toy():
    register(Toy)
    yield Toy
    unregister(Toy.name)


@pytest.mark.parametrize("sets,code,word", [([], 0, "holds"), (["value=0.5"], 1, "violated"),
                                            (["reached=false"], 4, "inconclusive")])
def test_run_exit_codes_and_json(toy, store_path, capsys, sets, code, word):
    argv = ["run", "toy-states", "--json"] + [a for s in sets for a in ("--set", s)]
    assert main(argv) == code
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == word and out["runs"][0]["verdict"] == word
    assert out["verdicts"][0]["status"] == word


def test_check_fails_on_an_inconclusive_entry(toy, store_path, capsys, monkeypatch):
    monkeypatch.setattr(Toy, "lawbook", lambda self, quick=True: [("untested", ToyConfig(reached=False))])
    assert main(["check", "toy-states", "--workers", "1"]) == 1
    text = capsys.readouterr().out
    assert "inconclusive" in text
    assert "inconclusive" in (store_path / "report.html").read_text()
