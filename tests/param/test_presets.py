"""Each preset's numbers for a concrete model, against the published tables.

The references are transcriptions of the papers' tables, written here independently of
``lmech.param.presets`` as functions of a parameter's absolute fan-in and fan-out (a bias has fan-in 1):

* TP V (Yang et al. 2022, arXiv 2203.03466) Table 8 (the form mup implements) and Table 3;
* Dey et al. 2025 (CompleteP, arXiv 2505.01618) Table 1, columns μP and α ∈ {½, 1} (read from the
  authors' image of the table in EleutherAI/nanoGPT-mup, branch completep, assets/parameterization_summary.png),
  with the Adam ε of the embedding, final norm and unembedding as the authors' corrected reference code
  has it (``configure_optimizers`` in that branch's model.py: ε/m_N, their eq. 40; the image read
  unscaled there, which ``tests/param/test_eps_scaling.py`` refutes by measuring the gradients);
* Jacot et al. 2018 (NTK parametrization, eq. 1) and Mei et al. 2018 (mean field, eq. 1).

A table gives each quantity up to a width-independent constant, so the test compares ratios between
width n and the base width n0: (effective init variance, multiplier, learning rates) at n divided by the
same at n0 must equal the table's formula at n over the formula at n0. The effective init variance is
the SP variance of the model as built (PyTorch's default: ∝ 1/fan_in for weights and for biases their
layer's fan-in) times the squared init scale that ``parametrize`` multiplies the parameter by.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lmech.models import ResidualMLP
from lmech.param import parametrize

D_IN, D_OUT, N0, N = 10, 3, 32, 128


def mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(D_IN, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, D_OUT))


# (parameter name) -> (column, fan_in(width), fan_out(width), sp init fan-in(width))
LAYOUT = {
    "0.weight": ("input", lambda n: D_IN, lambda n: n, lambda n: D_IN),
    "0.bias": ("bias", lambda n: 1, lambda n: n, lambda n: D_IN),
    "2.weight": ("hidden", lambda n: n, lambda n: n, lambda n: n),
    "2.bias": ("bias", lambda n: 1, lambda n: n, lambda n: n),
    "4.weight": ("output", lambda n: n, lambda n: D_OUT, lambda n: n),
    "4.bias": ("bias", lambda n: 1, lambda n: D_OUT, lambda n: n),
}

one = lambda fi, fo: 1.0  # noqa: E731
# TP V Table 8: columns "input weights & all biases", "output weights", "hidden weights"
TABLE8 = {
    "input": dict(var=lambda fi, fo: 1 / fi, mult=one, sgd=lambda fi, fo: fo, adam=one),
    "output": dict(var=one, mult=lambda fi, fo: 1 / fi, sgd=lambda fi, fo: fi, adam=one),
    "hidden": dict(var=lambda fi, fo: 1 / fi, mult=one, sgd=one, adam=lambda fi, fo: 1 / fi),
}
TABLE8["bias"] = TABLE8["input"]
# TP V Table 3 (μP entries; the output column differs from Table 8)
TABLE3 = {**TABLE8, "output": dict(var=lambda fi, fo: 1 / fi**2, mult=one, sgd=lambda fi, fo: 1 / fi,
                                   adam=lambda fi, fo: 1 / fi)}
# TP V Table 3, grey (SP) entries: init 1/fan_in everywhere, learning rates 1; lmech's SP keeps the
# model's own bias init (var ∝ 1/layer fan-in), so the bias row reads that.
SP = {c: dict(var=lambda fi, fo: 1 / fi, mult=one, sgd=one, adam=one) for c in ("input", "output", "hidden")}
# Jacot et al. 2018 eq. 1: W ~ N(0, 1) used as σ/√fan_in · W, biases N(0, 1) unscaled, SGD lr 1
NTK = {"input": dict(var=one, mult=lambda fi, fo: fi**-0.5, sgd=one),
       "hidden": dict(var=one, mult=lambda fi, fo: fi**-0.5, sgd=one),
       "output": dict(var=one, mult=lambda fi, fo: fi**-0.5, sgd=one),
       "bias": dict(var=one, mult=one, sgd=one)}


def _effective(p, name: str, width: int):
    column, fan_in, fan_out, init_fan_in = LAYOUT[name]
    e = p.table[name]
    sp_var = 1.0 / init_fan_in(width)
    return dict(var=sp_var * e.init_scale**2, mult=e.multiplier, sgd=e.lr_sgd, adam=e.lr_adam), \
        (fan_in(width), fan_out(width))


@pytest.mark.parametrize("preset,table", [("mup", TABLE8), ("mup-table3", TABLE3), ("ntk", NTK)])
def test_preset_matches_published_table(preset, table):
    p_n = parametrize(mlp(N), preset, base=mlp(N0))
    p_0 = parametrize(mlp(N0), preset, base=mlp(N0), delta=mlp(N))
    for name, (column, *_rest) in LAYOUT.items():
        eff_n, fans_n = _effective(p_n, name, N)
        eff_0, fans_0 = _effective(p_0, name, N0)
        for quantity, formula in table[column].items():
            expected = formula(*fans_n) / formula(*fans_0)
            measured = eff_n[quantity] / eff_0[quantity]
            assert measured == pytest.approx(expected, rel=1e-12), (preset, name, quantity)


def test_sp_is_the_model_as_built():
    p = parametrize(mlp(N), "sp", base=mlp(N0))
    for e in p.table:
        assert (e.init_scale, e.multiplier, e.lr_sgd, e.lr_adam, e.wd_sgd, e.wd_adam, e.eps) == (1,) * 7
    for name in ("0.weight", "2.weight", "4.weight"):  # weights: TP V's SP init 1/fan_in (grey entries)
        eff_n, fans_n = _effective(p, name, N)
        column = LAYOUT[name][0]
        assert eff_n["var"] == pytest.approx(SP[column]["var"](*fans_n), rel=1e-12)


def test_mean_field_two_layer_network_is_mei_montanari_nguyen():
    # One hidden layer of N units: f(x) = (1/N) Σ a_i σ(w_i·x) with a_i, w_i = O(1) and SGD steps ∝ N
    # (Mei, Montanari & Nguyen 2018, eq. 1 and their SGD with step s_k on each particle).
    def net(n):
        return nn.Sequential(nn.Linear(D_IN, n), nn.ReLU(), nn.Linear(n, 1))

    p_n = parametrize(net(N), "mean-field", base=net(N0))
    a, w = p_n.table["2.weight"], p_n.table["0.weight"]
    ratio = N / N0
    assert a.multiplier == pytest.approx(1 / ratio)  # the 1/N in front of the sum
    assert (1 / N) * a.init_scale**2 == pytest.approx(1 / N0)  # a_i's variance does not shrink with N
    assert w.init_scale == 1 and w.multiplier == 1  # w_i: fan-in D_IN fixed, O(1)
    assert a.lr_sgd == pytest.approx(ratio) and w.lr_sgd == pytest.approx(ratio)  # steps ∝ N


def _completep_expected(alpha: float, m_n: float, m_l: float) -> dict[str, dict[str, float]]:
    """Dey et al. 2025 Table 1 (AdamW) for the column α (μP: α = 0 with no branch multiplier)."""
    depth = m_l ** (alpha - 1)
    return {
        "embed": dict(lr=1.0, var=1.0, wd=1.0, eps=1 / m_n),  # input layer: "Embed"
        "pre_ln": dict(lr=depth, eps=1 / m_n * m_l**-alpha),
        "hidden": dict(lr=1 / m_n * depth, var=1 / m_n, wd=m_n, eps=1 / m_n * m_l**-alpha),
        "hidden_bias": dict(lr=depth, eps=1 / m_n * m_l**-alpha),
        "final_ln": dict(lr=1.0, eps=1 / m_n),
        "unembed": dict(lr=1.0, var=1.0, mult=1 / m_n, eps=1 / m_n),
        "branch": m_l**-alpha,
    }


@pytest.mark.parametrize("preset,alpha", [("depth-mup", 0.5), ("completep", 1.0)])
def test_depth_presets_match_completep_table_1(preset, alpha):
    n0, n, l0, depth = 16, 64, 2, 8
    model = ResidualMLP(5, 3, width=n, depth=depth, parametrization=preset, base_width=n0, base_depth=l0)
    t = model.param_table
    exp = _completep_expected(alpha, n / n0, depth / l0)
    assert t.branch_multiplier == pytest.approx(exp["branch"]) and model.branch_multiplier == t.branch_multiplier

    var_sp_base = {"input.weight": 1 / 5, "blocks.3.fc1.weight": 1 / n0, "blocks.3.fc2.weight": 1 / n0,
                   "readout.weight": 1 / n0}

    def check(name, key, var_sp=None):
        """var_sp: the SP init variance at width n (∝ 1/fan_in); var_sp_base: the same at n0."""
        e, want = t[name], exp[key]
        assert e.lr_adam == pytest.approx(want["lr"], rel=1e-12), (name, "lr")
        assert e.eps == pytest.approx(want["eps"], rel=1e-12), (name, "eps")
        if "wd" in want:  # AdamW decays by lr·wd per step (torch), Table 1 lists λ's own scale
            assert e.wd_adam == pytest.approx(want["wd"], rel=1e-12), (name, "wd")
        if "var" in want:
            assert var_sp * e.init_scale**2 / var_sp_base[name] == pytest.approx(want["var"], rel=1e-12)
        if "mult" in want:
            assert e.multiplier == pytest.approx(want["mult"], rel=1e-12)

    check("input.weight", "embed", 1 / 5)
    check("blocks.3.norm.weight", "pre_ln")
    check("blocks.3.fc1.weight", "hidden", 1 / n)
    check("blocks.3.fc2.weight", "hidden", 1 / n)
    check("blocks.3.fc1.bias", "hidden_bias")
    check("norm.weight", "final_ln")
    check("readout.weight", "unembed", 1 / n)


def test_mup_is_completep_table_1_mu_column():
    # Dey et al. Table 1's μP column = TP V Table 8 with ε m_N^-1 and λ m_N on hidden weights.
    n0, n = 16, 64
    model = ResidualMLP(5, 3, width=n, depth=3, parametrization="mup", base_width=n0, base_depth=3)
    hidden = model.param_table["blocks.1.fc2.weight"]
    assert (hidden.lr_adam, hidden.wd_adam, hidden.eps) == pytest.approx((n0 / n, n / n0, n0 / n))
    assert model.branch_multiplier == 1.0
    assert model.param_table["readout.weight"].multiplier == pytest.approx(n0 / n)


def test_attention_scale_is_one_over_sqrt_d_or_one_over_d():
    from lmech.param import get_preset

    for d0, d in ((16, 16), (16, 64), (32, 8)):
        assert get_preset("sp").attention_scale(d, d0) == pytest.approx(1 / math.sqrt(d))
        assert get_preset("mup").attention_scale(d, d0) == pytest.approx(math.sqrt(d0) / d)


def test_unknown_preset_is_rejected_with_the_names():
    from lmech.errors import BadInput

    with pytest.raises(BadInput, match="completep"):
        parametrize(mlp(8), "mupp")


def test_init_rescaling_multiplies_the_built_parameters():
    a = mlp(N)
    b = mlp(N)
    b.load_state_dict(a.state_dict())
    p = parametrize(b, "mup", base=mlp(N0))
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pb, pa * p.table[name].init_scale, rtol=0, atol=0)
