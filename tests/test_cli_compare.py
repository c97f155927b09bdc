"""``lmech compare``: two saved models layer by layer; safe loading (a whole pickled module, or a malicious
pickle, is refused unless --trust-pickle); bad input exits 2 before any work; output whole at 80 columns."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lmech.cli import main
from lmech.data.digits import digits
from lmech.instruments import similarity as S
from lmech.instruments.features import capture_activations
from lmech.models import zoo
from lmech.models.cnn import SmallCNN
from lmech.models.mlp import mlp
from lmech.models.patch_transformer import PatchTransformer


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def models(tmp_path):
    cnn = SmallCNN(width=4, depth=2, seed=1)
    net = mlp(64, 12, 2, "relu", weight_std=math.sqrt(2.0), bias_std=0.0, parametrization="sp", out_features=10,
              seed=2)
    paths = {"cnn": zoo.save("cnn", cnn, tmp_path / "cnn.pt"), "mlp": tmp_path / "mlp.pt"}
    torch.save(net.state_dict(), paths["mlp"])  # a bare state dict: needs --model
    return {"cnn": cnn, "mlp": net}, paths


def test_json_matrix_matches_the_instrument(capsys, models):
    # the CLI's matrix against linear CKA of the captured activations, pair by pair (the instrument's
    # feature-space formula on the same 300 digits)
    nets, paths = models
    code, out, _ = _run(capsys, ["compare", str(paths["cnn"]), str(paths["mlp"]), "--model-b", "mlp", "--data",
                                 "digits", "--n", "300", "--metric", "linear_cka", "--json"])
    assert code == 0
    doc = json.loads(out)
    assert doc["layers_a"] == ["input", "hidden.0", "readout"]
    assert doc["layers_b"] == ["layers.1", "layers.3", "layers.4"]  # post-ReLU hidden layers and the logits
    x, _ = digits(300, one_hot=False, dtype=torch.float32)
    fa = capture_activations(nets["cnn"], x, doc["layers_a"])
    fb = capture_activations(nets["mlp"], x, doc["layers_b"])
    expected = [[S.linear_cka(fa[a], fb[b]) for b in doc["layers_b"]] for a in doc["layers_a"]]
    np.testing.assert_allclose(doc["matrix"], expected, rtol=1e-9)
    best = np.argmax(expected, axis=1)
    assert [r["best_b"] for r in doc["best_b_for_a"]] == [doc["layers_b"][j] for j in best]


def test_auto_metric_is_debiased_when_layers_are_wide(capsys, models):
    _, paths = models
    # CNN maps have 4 x 64 = 256 features, >= n/10 for n = 300: debiased CKA
    code, out, _ = _run(capsys, ["compare", str(paths["cnn"]), str(paths["cnn"]), "--data", "digits", "--n", "300",
                                 "--json"])
    doc = json.loads(out)
    assert code == 0 and doc["metric"] == "debiased_cka" and "256 features" in doc["metric_reason"]
    np.testing.assert_allclose(np.diag(doc["matrix"]), 1.0, atol=1e-9)  # a model against itself
    # the MLP's 12 units against 1000 examples: linear CKA
    code, out, _ = _run(capsys, ["compare", str(paths["mlp"]), str(paths["mlp"]), "--model", "mlp", "--data",
                                 "digits", "--n", "1000", "--json"])
    assert code == 0 and json.loads(out)["metric"] == "linear_cka"


def test_text_output_and_figure(capsys, models, tmp_path):
    _, paths = models
    fig = tmp_path / "heat.png"
    code, out, _ = _run(capsys, ["compare", str(paths["cnn"]), str(paths["mlp"]), "--model-b", "mlp", "--data",
                                 "digits", "--n", "200", "--out", str(fig)])
    assert code == 0 and fig.stat().st_size > 1000
    assert "layer correspondence" in out and "debiased cka" in out and "A (rows) x B (columns)" in out
    wide = [line for line in out.splitlines() if len(line) > 80 and len(line.split()) > 1]  # only a long path
    assert not wide, wide


def test_transformer_state_dict_with_options(capsys, tmp_path):
    tf = PatchTransformer(width=8, depth=2, n_head=4, seed=0)
    torch.save(tf.state_dict(), tmp_path / "tf.pt")
    code, out, _ = _run(capsys, ["compare", str(tmp_path / "tf.pt"), str(tmp_path / "tf.pt"), "--model",
                                 "transformer", "--options", "n_head=4", "--data", "digits", "--n", "100", "--json"])
    assert code == 0
    assert json.loads(out)["layers_a"] == ["embed", "blocks.0", "blocks.1", "pool", "readout"]


def test_help_whole_at_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as done:
        main(["compare", "--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "--trust-pickle" in text and "RUNS CODE" in text and "weights_only=True" in text


class _Payload:
    """A pickle that creates a file when it is unpickled (any code could run there)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_by_default(capsys, tmp_path, models):
    _, paths = models
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": _Payload(marker), "model": "cnn"}, evil)
    code, _, err = _run(capsys, ["compare", str(evil), str(paths["cnn"]), "--data", "digits"])
    assert code == 2 and not marker.exists()
    assert "--trust-pickle" in err and "RUNS" in err


def test_whole_module_needs_trust_pickle(capsys, tmp_path, models):
    nets, paths = models
    whole = tmp_path / "whole.pt"
    torch.save(nets["cnn"], whole)
    code, _, err = _run(capsys, ["compare", str(whole), str(paths["cnn"]), "--data", "digits", "--n", "100"])
    assert code == 2 and "--trust-pickle" in err
    code, out, _ = _run(capsys, ["compare", str(whole), str(paths["cnn"]), "--data", "digits", "--n", "100",
                                 "--trust-pickle", "--metric", "linear_cka", "--json"])
    doc = json.loads(out)
    assert code == 0 and doc["model_a"] is None
    # the pickled module's leaf modules are the same convolutions: the diagonal is 1
    np.testing.assert_allclose([doc["matrix"][i][i] for i in range(3)], 1.0, atol=1e-9)


@pytest.mark.parametrize("case,words", [
    ("missing file", ["B=", "existing model file"]),
    ("mismatched examples", ["mismatched example counts"]),
    ("unknown layer", ["--layers", "nope", "submodules"]),
    ("unknown metric", ["--metric", "linear_cka"]),
    ("inputs the model rejects", ["--data", "model A accepts"]),
    ("state dict without a name", ["--model", "zoo name"]),
    ("wrong zoo name", ["state_dict", "'cnn'", "input.weight"]),
    ("bad figure suffix", ["--out", ".png"]),
])
def test_bad_input_exits_2(capsys, tmp_path, models, case, words):
    _, paths = models
    a, b = str(paths["cnn"]), str(paths["cnn"])
    extra = ["--data", "digits", "--n", "50"]
    if case == "missing file":
        b = str(tmp_path / "nope.pt")
    elif case == "mismatched examples":
        np.savez(tmp_path / "d.npz", x=np.zeros((20, 64), np.float32), y=np.zeros(19, np.int64))
        extra = ["--data", str(tmp_path / "d.npz")]
    elif case == "unknown layer":
        extra += ["--layers", "input,nope"]
    elif case == "unknown metric":
        extra += ["--metric", "cosine"]
    elif case == "inputs the model rejects":
        np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32))
        extra = ["--data", str(tmp_path / "d.npz")]
    elif case == "state dict without a name":
        b = str(paths["mlp"])
    elif case == "wrong zoo name":
        b = str(paths["mlp"])
        extra += ["--model-b", "cnn"]
    elif case == "bad figure suffix":
        extra += ["--out", str(tmp_path / "fig.txt")]
    code, out, err = _run(capsys, ["compare", a, b, *extra])
    assert code == 2 and out == "", (case, err)
    for word in words:
        assert word in err, (case, word, err)


def test_a_layer_that_never_runs_exits_2(capsys, tmp_path):
    # the transformer's ModuleList `blocks` is never called itself: its hook would never fire
    torch.save(PatchTransformer(width=8, seed=0).state_dict(), tmp_path / "tf.pt")
    code, out, err = _run(capsys, ["compare", str(tmp_path / "tf.pt"), str(tmp_path / "tf.pt"), "--model",
                                   "transformer", "--data", "digits", "--n", "50", "--layers", "blocks,pool"])
    assert code == 2 and out == "" and "blocks" in err
