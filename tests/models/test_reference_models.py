"""The residual MLP, the tiny transformer and the small CNN.

References: each model's equation written out by hand from its parameters (the branch multiplier
included), causality of the transformer (an output never depends on later tokens), the μP
conventions (zero query and readout, attention 1/d), double backward through the explicit attention,
and bit-for-bit equality with SP at base width.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lmech.errors import BadInput
from lmech.models import ResidualMLP, SmallCNN, TinyTransformer, TransformerConfig


def test_residual_mlp_is_its_equation_with_the_branch_multiplier():
    m = ResidualMLP(5, 3, width=32, depth=4, norm="none", parametrization="completep", base_width=16, base_depth=2,
                    seed=1, dtype=torch.float64)
    assert m.branch_multiplier == pytest.approx(0.5)  # (L / L_base)^-1
    x = torch.randn(7, 5, dtype=torch.float64)
    h = x @ m.input.weight.T + m.input.bias
    for b in m.blocks:
        h = h + 0.5 * (torch.relu(h @ b.fc1.weight.T + b.fc1.bias) @ b.fc2.weight.T + b.fc2.bias)
    readout = m.param_table["readout.weight"].multiplier
    assert readout == pytest.approx(0.5)  # μP readout 1/width_mult
    expected = readout * h @ m.readout.weight.T + m.readout.bias
    assert torch.allclose(m(x), expected, rtol=1e-12, atol=1e-12)


def test_residual_mlp_pre_norm_and_depth_mup():
    m = ResidualMLP(5, 3, width=16, depth=8, norm="pre", parametrization="depth-mup", base_depth=2,
                    dtype=torch.float64)
    assert m.branch_multiplier == pytest.approx(0.5)  # (8/2)^-1/2
    x = torch.randn(4, 5, dtype=torch.float64)
    h = m.input(x)
    for b in m.blocks:
        h = h + 0.5 * b.fc2(torch.relu(b.fc1(F.layer_norm(h, (16,), b.norm.weight, b.norm.bias))))
    assert torch.allclose(m(x), m.readout(m.norm(h)), rtol=1e-12, atol=1e-12)


def test_mup_equals_sp_at_base_width_and_depth():
    sp = ResidualMLP(5, 3, width=32, depth=3, parametrization="sp", seed=4)
    mup = ResidualMLP(5, 3, width=32, depth=3, parametrization="completep", seed=4)
    for a, b in zip(sp.parameters(), mup.parameters()):
        assert torch.equal(a, b)
    assert [g["lr"] for g in sp.param_groups(1e-3)] == [g["lr"] for g in mup.param_groups(1e-3)]


def test_models_are_seeded():
    a, b, c = (ResidualMLP(5, 3, width=16, depth=2, seed=s) for s in (0, 0, 1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def tiny(**kw) -> TinyTransformer:
    cfg = dict(vocab_size=31, block_size=12, width=32, depth=2, n_head=4)
    return TinyTransformer(**{**cfg, **kw}, dtype=torch.float64)


def test_transformer_is_causal():
    model = tiny(seed=3)
    with torch.no_grad():  # a nonzero readout so the check is not vacuous
        model.lm_head.weight.normal_()
    idx = torch.randint(0, 31, (2, 10), generator=torch.Generator().manual_seed(0))
    other = idx.clone()
    other[:, 6:] = (other[:, 6:] + 1) % 31
    a, b = model(idx), model(other)
    assert torch.allclose(a[:, :6], b[:, :6], rtol=0, atol=1e-12)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_transformer_attention_is_its_equation():
    model = tiny(seed=5, depth=1)
    attn, x = model.blocks[0].attn, torch.randn(2, 7, 32, dtype=torch.float64)
    q, k, v = (lin(x).view(2, 7, 4, 8).transpose(1, 2) for lin in (attn.query, attn.key, attn.value))
    logits = q @ k.transpose(-1, -2) / math.sqrt(8) + torch.full((7, 7), -math.inf).triu(1)
    y = (logits.softmax(-1) @ v).transpose(1, 2).reshape(2, 7, 32)
    assert torch.allclose(attn(x), attn.proj(y), rtol=1e-12, atol=1e-12)


def test_transformer_mup_conventions():
    model = tiny(width=64, parametrization="mup", base_width=16, seed=0)
    assert all(torch.count_nonzero(b.attn.query.weight) == 0 for b in model.blocks)
    assert torch.count_nonzero(model.lm_head.weight) == 0
    head_dim, base_head_dim = 16, 4
    assert model.blocks[0].attn.scale == pytest.approx(math.sqrt(base_head_dim) / head_dim)
    assert tiny(width=64, seed=0).blocks[0].attn.scale == pytest.approx(1 / math.sqrt(head_dim))
    table = model.param_table
    assert table["blocks.0.attn.query.weight"].role == "query" and table["wte.weight"].role == "embedding"
    assert table["lm_head.weight"].role == "output" and table["lm_head.weight"].multiplier == pytest.approx(0.25)
    idx = torch.randint(0, 31, (3, 8), generator=torch.Generator().manual_seed(1))
    assert model.loss(idx, idx).item() == pytest.approx(math.log(31), rel=1e-12)  # zero readout: uniform


def test_transformer_double_backward_on_cpu():
    model = tiny(seed=2)
    idx = torch.randint(0, 31, (2, 9), generator=torch.Generator().manual_seed(2))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(model.loss(idx, idx), params, create_graph=True)
    vec = [torch.ones_like(p) for p in params]
    hvp = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vec)), params)
    assert all(torch.isfinite(h).all() for h in hvp) and any(h.abs().sum() > 0 for h in hvp)


def test_transformer_trains():
    model = tiny(seed=0, parametrization="mup", base_width=16)
    opt = torch.optim.Adam(model.param_groups(1e-2, "adam"))
    idx = torch.randint(0, 31, (8, 12), generator=torch.Generator().manual_seed(0))
    first = model.loss(idx[:, :-1], idx[:, 1:]).item()
    for _ in range(30):
        opt.zero_grad()
        model.loss(idx[:, :-1], idx[:, 1:]).backward()
        opt.step()
    assert model.loss(idx[:, :-1], idx[:, 1:]).item() < 0.7 * first


def test_transformer_rejects_bad_sizes():
    with pytest.raises(BadInput, match="n_head"):
        TransformerConfig(width=30, n_head=4)
    with pytest.raises(BadInput, match="block_size"):
        tiny()(torch.zeros(1, 13, dtype=torch.long))


def test_cnn_roles_and_equation():
    model = SmallCNN(width=32, depth=3, parametrization="mup", base_width=8, seed=0, dtype=torch.float64)
    roles = {e.name: e.role for e in model.param_table}
    assert roles["input.weight"] == "input" and roles["hidden.1.weight"] == "hidden"
    assert roles["readout.weight"] == "output"
    x = torch.randn(5, 64, dtype=torch.float64)
    h = torch.relu(F.conv2d(x.view(5, 1, 8, 8), model.input.weight, model.input.bias, padding=1))
    for conv in model.hidden:
        h = torch.relu(F.conv2d(h, conv.weight, conv.bias, padding=1))
    expected = 0.25 * h.mean((2, 3)) @ model.readout.weight.T + model.readout.bias
    assert torch.allclose(model(x), expected, rtol=1e-12, atol=1e-12)
    assert model.param_table["hidden.0.weight"].lr_adam == pytest.approx(0.25)
