"""The scaling-law law: its quick run, its broken held-out run, the reuse of the trained grid, its config rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments.runner import compute
from lmech.experiments.scaling_law import GRID, ScalingLawConfig, checkpoint_steps, trained


def test_quick_run_predicts_before_training_and_reports_the_quanta_relation(quick_run):
    prediction, measurement, verdicts, figures = quick_run("scaling-law")
    s = measurement.summary
    by_key = {v.key: v for v in verdicts}
    assert by_key["heldout_in_interval"].status == "holds" and by_key["heldout_rel_error"].status == "holds"
    # the fit saw only the small models; the held-out model is wider than all of them
    assert measurement.series["grid"]["width"].max() < measurement.series["heldout"]["width"].iloc[0]
    assert s["fit_alpha"] > 0 and s["fit_beta"] > 0
    assert s["quanta_beta"] == pytest.approx(s["fit_alpha"] / (1 + s["fit_alpha"]))
    assert s["predicted_lo"] < s["predicted_loss"] < s["predicted_hi"]
    # the larger model is predicted (and measured) to do better than the largest fitted one
    grid = measurement.series["grid"]
    last_fitted = grid[grid.width == grid.width.max()]["loss"].iloc[-1]
    assert s["predicted_loss"] < last_fitted and s["heldout_loss"] < last_fitted
    assert s["widest_fitted_loss"] == pytest.approx(last_fitted)
    assert [p.name for p in figures] == ["scaling_law.png"]


def test_prediction_is_recorded_before_the_heldout_model_is_trained(monkeypatch, tmp_path):
    """The fit sees only the fitted widths, and the held-out model is trained only after the fit (its
    prediction and interval) exists. (The broken held-out run, trained for half its steps, is the config
    counterexample that tests/test_contract.py runs: both criteria violated.)"""
    import lmech.experiments.scaling_law as law

    monkeypatch.setenv("LMECH_STORE", str(tmp_path / "lab"))
    events = []
    real_fit, real_trained = law.fit_scaling, law.trained

    def fit(N, *args, **kwargs):
        events.append(("fit", sorted(set(np.asarray(N).tolist()))))
        return real_fit(N, *args, **kwargs)

    def train(cfg, width, steps, progress, replicate=0):
        events.append(("train", width))
        return real_trained(cfg, width, steps, progress, replicate)

    monkeypatch.setattr(law, "fit_scaling", fit)
    monkeypatch.setattr(law, "trained", train)
    exp = get("scaling-law")
    config = exp.smoke_config()
    _, measurement, verdicts, _ = compute(exp, config)
    fitted_N = [law.non_embedding_parameters(config, w) for w in config.widths]
    assert events == [("train", w) for w in config.widths] + [("fit", fitted_N), ("train", config.heldout_width)]
    assert {v.key for v in verdicts} == {"heldout_in_interval", "heldout_rel_error"}
    assert measurement.summary["heldout_N"] == law.non_embedding_parameters(config, config.heldout_width)


def test_trained_models_are_kept_and_reused(tmp_path, monkeypatch):
    import lmech.experiments.scaling_law as law
    from lmech.experiments.base import NullProgress
    from lmech.store import RunStore

    monkeypatch.setenv("LMECH_STORE", str(tmp_path / "lab"))
    cfg = get("scaling-law").smoke_config()
    cfg = dataclasses.replace(cfg, reuse_grid=True)
    first = trained(cfg, 8, cfg.steps, NullProgress())
    assert len(RunStore(tmp_path / "lab").runs(GRID)) == 1
    monkeypatch.setattr(law, "train_model", lambda *a, **k: pytest.fail("retrained a stored model"))
    again = trained(cfg, 8, cfg.steps, NullProgress())
    assert again.equals(first)
    assert list(first["step"]) == checkpoint_steps(cfg)
    assert np.all(np.isfinite(first["loss"]))


@pytest.mark.parametrize("change, word", [
    ({"heldout_width": 24}, "heldout_width"),
    ({"widths": (16, 16, 24)}, "widths"),
    ({"widths": (8, 12, 15)}, "n_head"),
])
def test_config_rules(change, word):
    with pytest.raises(BadInput, match=word):
        ScalingLawConfig(**change).check()
