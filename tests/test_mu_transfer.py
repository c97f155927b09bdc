"""μTransfer (Yang et al. 2022, TP V, arXiv 2203.03466): the law-book entry, the curves against torch.optim,
the sweep executor against the in-process run, and the verdicts' preconditions on synthetic curves.
The counterexamples of every criterion run in tests/test_contract.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from lmech.config import validate
from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments.lr_transfer import optima
from lmech.experiments.mu_transfer import MuTransferConfig, data, learning_rate_curve, network


def test_quick_entry_holds_and_mup_is_sp_at_the_base_width(quick_run):
    _, measurement, verdicts, figures = quick_run("mu-transfer")
    assert figures and {v.key: v.status for v in verdicts} == dict.fromkeys(
        ("mup_shift", "sp_shift", "mup_wider_better"), "holds")
    curves = measurement.series["curves"]
    base = curves[curves.width == 16]
    sp, mup = base[base.parametrization == "sp"], base[base.parametrization == "mup"]
    # TP V: at the base width μP is SP, so the two trainings are the same numbers
    np.testing.assert_array_equal(sp["loss"].to_numpy(), mup["loss"].to_numpy())
    wide = curves[curves.width == 256]
    assert not np.array_equal(wide[wide.parametrization == "sp"]["loss"], wide[wide.parametrization == "mup"]["loss"])


def test_every_optimum_is_bracketed_and_near_the_grid_best(quick_run):
    _, measurement, _, _ = quick_run("mu-transfer")
    opt = measurement.series["optima"]
    assert (opt["edge"] == "").all()
    assert (np.abs(opt["log2_lr"] - opt["grid_log2_lr"]) <= 1.0).all()
    # SP's optimum falls monotonically with width (TP V Fig. 1, left)
    sp = opt[opt.parametrization == "sp"].sort_values("width")["log2_lr"].to_numpy()
    assert np.all(np.diff(sp) < 0)


def _smoke(**changes) -> MuTransferConfig:
    return validate(dataclasses.replace(get("mu-transfer").smoke_config(), **changes))


def test_a_curve_is_the_loss_of_torch_optim_adam_at_each_rate():
    config = _smoke(widths=(64,), parametrizations=("mup",), steps=8)
    curve = learning_rate_curve(config, "mup", 64)
    for log2_lr, loss in zip(config.log2_lrs, curve["loss"]):
        net, table = network(config, "mup", 64)
        opt = torch.optim.Adam(table.param_groups(net, 2.0**log2_lr, "adam"), lr=2.0**log2_lr)
        batches, _ = data(config)
        losses = []
        for _ in range(config.steps):
            x, y = batches()
            step_loss = torch.nn.functional.cross_entropy(net(x), y)
            losses.append(float(step_loss.detach()))
            opt.zero_grad()
            step_loss.backward()
            opt.step()
        assert loss == pytest.approx(np.mean(losses[-config.steps // 4:]), rel=1e-5)


def test_the_local_executor_gives_the_inline_curves_and_resumes(tmp_path, no_recompute):
    exp = get("mu-transfer")
    inline = exp.measure(_smoke())
    config = _smoke(executor="local", workers=1, store=str(tmp_path / "lab"))
    swept = exp.measure(config)
    pd.testing.assert_frame_equal(swept.series["curves"], inline.series["curves"], check_dtype=False)

    no_recompute()  # a second measurement finds every point in the store: nothing is computed again
    again = exp.measure(config)
    pd.testing.assert_frame_equal(again.series["curves"], swept.series["curves"])


def _synthetic(optimum: dict[tuple[str, int], float], grid=range(-10, -2)) -> pd.DataFrame:
    """Exact parabolas in log loss with the given vertex per (parametrization, width); wider = lower."""
    rows = []
    for (par, width), vertex in optimum.items():
        for x in grid:
            rows.append({"parametrization": par, "width": width, "log2_lr": float(x), "lr": 2.0**x,
                         "loss": float(np.exp(0.2 * (x - vertex) ** 2) / np.log2(width)), "final_loss": np.nan,
                         "diverged_at": -1, "first_loss": 2.3})
    return pd.DataFrame(rows)


def _judge(curves: pd.DataFrame, widths=(16, 64, 256)):
    exp = get("mu-transfer")
    config = _smoke(widths=widths)
    from lmech.experiments.base import Result

    verdicts = exp.verdict(config, exp.predict(config), Result(series={"curves": curves}, summary={}))
    return {v.key: v for v in verdicts}


def test_verdicts_read_the_parabola_vertex_not_the_grid_best():
    # μP's vertices are 0.9 apart, their grid argmins (-6, -5, -5) one step apart: the verdict reads the vertices
    curves = _synthetic({("mup", 16): -5.55, ("mup", 64): -5.0, ("mup", 256): -4.65,
                         ("sp", 16): -5.55, ("sp", 64): -6.5, ("sp", 256): -7.6})
    v = _judge(curves)
    assert v["mup_shift"].measured == pytest.approx(0.9, abs=1e-9) and v["mup_shift"].status == "holds"
    assert v["sp_shift"].measured == pytest.approx(2.05, abs=1e-9) and v["sp_shift"].status == "holds"
    assert v["mup_wider_better"].status == "holds"
    grid = optima(curves, "width").query("parametrization == 'mup'")["grid_log2_lr"]
    assert grid.tolist() == [-6.0, -5.0, -5.0]


def test_verdicts_are_inconclusive_at_the_grid_edge_or_a_narrow_span():
    edge = _synthetic({("mup", 16): -5.0, ("mup", 64): -5.0, ("mup", 256): -2.0,
                       ("sp", 16): -5.0, ("sp", 64): -7.0, ("sp", 256): -12.0})
    v = _judge(edge)
    assert v["mup_shift"].status == "inconclusive" and "largest" in v["mup_shift"].inconclusive
    assert v["sp_shift"].status == "inconclusive" and "smallest" in v["sp_shift"].inconclusive
    narrow = _synthetic({("mup", 16): -5.0, ("mup", 64): -5.0, ("sp", 16): -5.0, ("sp", 64): -7.5})
    v = _judge(narrow, widths=(16, 64))
    assert all(x.status == "inconclusive" and "span 4×" in x.inconclusive for x in v.values())


def test_wider_is_worse_is_a_violation():
    curves = _synthetic({("mup", 16): -5.0, ("mup", 64): -5.0, ("mup", 256): -5.0,
                         ("sp", 16): -5.0, ("sp", 64): -7.0, ("sp", 256): -9.0})
    at_256 = (curves.parametrization == "mup") & (curves.width == 256)
    curves.loc[at_256, "loss"] *= 1.6  # the widest network trains worse than the middle one
    v = _judge(curves)
    assert v["mup_wider_better"].status == "violated"
    assert v["mup_wider_better"].measured == pytest.approx(1.6 * np.log2(64) / np.log2(256) - 1)


@pytest.mark.parametrize("changes,field", [
    ({"widths": (64, 16)}, "widths"),
    ({"log2_lrs": (-8.0, -6.0, -5.0)}, "log2_lrs"),
    ({"parametrizations": ("sp", "sp")}, "parametrizations"),
    ({"model": "transformer", "widths": (16, 66), "n_head": 4}, "widths"),
    ({"batch_size": 300}, "batch_size"),
    ({"model": "transformer", "widths": (8, 128), "base_width": 8, "tokenization": "word"}, "tokenization"),
])
def test_bad_configs_are_refused_before_any_work(changes, field):
    with pytest.raises(BadInput, match=field):
        _smoke(**changes)


def test_char_tokens_size_the_transformer_to_the_corpus_vocabulary():
    from lmech.data.corpus import load_corpus

    config = _smoke(model="transformer", widths=(8, 128), base_width=8, depth=1, block_size=8, batch_size=2,
                    eval_windows=2, corpus_bytes=2_000, tokenization="char")
    corpus = load_corpus("docstrings", "char", 2_000)
    assert corpus.vocab_size < 256  # the characters that occur, not the 256 bytes
    net, _ = network(config, "mup", 8)
    assert net.lm_head.out_features == net.wte.num_embeddings == corpus.vocab_size
    batches, (x, y) = data(config)
    tokens = torch.cat([*batches(), x, y]).flatten()
    assert int(tokens.max()) < corpus.vocab_size and x.shape == (2, 8)
    # the same text as bytes: the byte model reads 256 tokens
    assert network(dataclasses.replace(config, tokenization="byte"), "mup", 8)[0].lm_head.out_features == 256
