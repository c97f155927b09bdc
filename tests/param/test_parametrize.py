"""``parametrize`` on plain torch modules: the entry point, base-width identity, the abc-symmetry,
weight decay and ε scaling, and the side table surviving save/load, deepcopy and torch.compile.

References: SP training of the same network (bit for bit at base width), the Table-3 form against the
Table-8 form (TP V Lemma J.1: the same trajectory), the closed form (1 − ηλ)^t of decoupled decay
with a zero gradient, and the eager model for the compiled one.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from lmech.errors import BadInput
from lmech.param import AdamAtan2, ParamTable, parametrize

D_IN, D_OUT = 6, 4


def mlp(width: int, seed: int = 0, dtype=torch.float64) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(D_IN, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                        nn.Linear(width, D_OUT)).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) / p.shape[-1] ** 0.5)
    return net


def batch(dtype=torch.float64):
    gen = torch.Generator().manual_seed(123)
    return torch.randn(16, D_IN, generator=gen, dtype=dtype), torch.randint(0, D_OUT, (16,), generator=gen)


def train(model, opt, steps=3):
    x, y = batch(next(model.parameters()).dtype)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model(x).detach()


def test_entry_point_on_a_plain_sequential():
    model, base = mlp(256), mlp(32)
    p = parametrize(model, "mup", base=base)
    roles = {e.name: e.role for e in p.table}
    assert roles == {"0.weight": "input", "0.bias": "bias", "2.weight": "hidden", "2.bias": "bias",
                     "4.weight": "output", "4.bias": "bias"}
    opt = torch.optim.Adam(p.param_groups(lr=1e-2, optimizer="adam"))
    lrs = {id(q): g["lr"] for g in opt.param_groups for q in g["params"]}
    assert lrs[id(model[2].weight)] == pytest.approx(1e-2 * 32 / 256) and lrs[id(model[4].weight)] == 1e-2
    x, _ = batch()
    # the readout multiplier 1/width_mult: f = (W x)/m + b, with W rescaled by sqrt(m)
    h = model[3](model[2](model[1](model[0](x))))
    assert torch.allclose(model(x), h @ model[4].weight.T * (32 / 256) + model[4].bias, rtol=1e-13, atol=1e-13)
    train(model, opt)
    assert torch.equal(model[4](input=h), model[4](h))  # the multiplier also applies to a keyword input


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_mup_equals_sp_bit_for_bit_at_base_width(optimizer):
    sp, mup = mlp(32, seed=1, dtype=torch.float32), mlp(32, seed=1, dtype=torch.float32)
    p_sp = parametrize(sp, "sp")
    p_mup = parametrize(mup, "mup", base=mlp(32), delta=mlp(64))
    assert any(e.role == "hidden" for e in p_mup.table)  # roles known although the widths are equal
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    out_sp = train(sp, cls(p_sp.param_groups(1e-2, optimizer, weight_decay=0.1), lr=1e-2), steps=4)
    out_mup = train(mup, cls(p_mup.param_groups(1e-2, optimizer, weight_decay=0.1), lr=1e-2), steps=4)
    assert torch.equal(out_sp, out_mup)
    for a, b in zip(sp.parameters(), mup.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("adam", 0.02)])
@pytest.mark.parametrize("other", ["mup-table3", "mean-field"])
def test_abc_symmetry_same_trajectory_as_table8(optimizer, lr, other):
    """TP V Lemma J.1: Table 3, Table 8 and the mean-field form are one parametrization. Adam's ε is
    1e-3 here, the size of the gradient entries, so that it matters: the symmetry holds only because
    each form scales ε like its gradients (ε → εθ when the multiplier goes A → Aθ)."""
    outs = {}
    for preset in ("mup", other):
        model = mlp(128, seed=2)
        p = parametrize(model, preset, base=mlp(16))
        cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
        outs[preset] = train(model, cls(p.param_groups(lr, optimizer, eps=1e-3), lr=lr), steps=5)
    moved = (outs["mup"] - mlp(128, seed=2)(batch()[0])).abs().max()
    assert moved > 1e-3  # the check is not vacuous: training moved the outputs
    assert torch.allclose(outs["mup"], outs[other], rtol=0, atol=1e-10)


def test_abc_symmetry_fails_with_an_unscaled_readout_eps():
    """Counterexample: Table 3 with the readout's ε taken as Table 8's (1/fan_in instead of 1) leaves
    the trajectory (ε = 1e-3, as above): the ε rule is what makes the two forms one."""
    outs = {}
    for preset in ("mup", "mup-table3"):
        model = mlp(128, seed=2)
        p = parametrize(model, preset, base=mlp(16))
        groups = p.param_groups(0.02, "adam", eps=1e-3)
        if preset == "mup-table3":
            for g in groups:
                if any(q is model[4].weight for q in g["params"]):
                    assert len(g["params"]) == 1
                    g["eps"] = 1e-3 * 16 / 128
        outs[preset] = train(model, torch.optim.Adam(groups, lr=0.02), steps=5)
    assert (outs["mup"] - outs["mup-table3"]).abs().max() > 1e-4


def test_groups_merge_identical_hyperparameters():
    """One group per distinct (lr, ε, weight decay). μP on an MLP: (C·ε, C·λ) is invariant under the
    abc-symmetry, so three groups are the fewest any form can have with a readout bias (input-like with
    the Table 8 readout weight; hidden; the readout bias, whose ε is unscaled), two without one, as
    mup's two (matrix-like and vector-like; MuAdam scales no ε)."""
    model = mlp(128)
    p = parametrize(model, "mup", base=mlp(32))
    groups = p.param_groups(1e-3, "adamw", weight_decay=0.1)
    members = sorted(sorted(n for n, q in model.named_parameters() if any(q is r for r in g["params"]))
                     for g in groups)
    assert members == [["0.bias", "0.weight", "2.bias", "4.weight"], ["2.weight"], ["4.bias"]]
    for g in groups:  # and no two groups share all their hyperparameters
        others = [h for h in groups if h is not g]
        assert all((g["lr"], g["eps"], g["weight_decay"]) != (h["lr"], h["eps"], h["weight_decay"]) for h in others)
    assert len(p.param_groups(1e-3, "adamw", weight_decay=0.1, eps=None)) == 2  # ε not set: mup's two
    no_bias = nn.Sequential(*list(mlp(128))[:4], nn.Linear(128, D_OUT, bias=False, dtype=torch.float64))
    base = nn.Sequential(*list(mlp(32))[:4], nn.Linear(32, D_OUT, bias=False, dtype=torch.float64))
    assert len(parametrize(no_bias, "mup", base=base).param_groups(1e-3, "adamw", weight_decay=0.1)) == 2
    assert len(parametrize(mlp(128), "mup-table3", base=mlp(32)).param_groups(1e-3, "adamw")) == 4
    sp = mlp(128)
    assert len(parametrize(sp, "sp").param_groups(1e-3, "adamw", weight_decay=0.1)) == 1


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_decay_timescale_is_width_independent(optimizer):
    """AdamW (decoupled) and SGD (coupled, zero loss gradient) shrink each weight by (1 − lr·λ) per step;
    μP keeps every parameter's lr·λ as at base width, so the decay's timescale 1/(ηλ) does not move."""
    lr, wd, steps = 0.01, 0.5, 7
    cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD
    for width in (16, 64, 256):
        model = mlp(width)
        p = parametrize(model, "mup", base=mlp(16), delta=mlp(32))
        start = [q.detach().clone() for q in model.parameters()]
        opt = cls(p.param_groups(lr, optimizer, weight_decay=wd), lr=lr)
        x, _ = batch()
        for _ in range(steps):
            opt.zero_grad()
            (0.0 * model(x).sum()).backward()  # zero gradient: only the decay acts
            opt.step()
        for q0, q in zip(start, model.parameters()):
            assert torch.allclose(q, q0 * (1 - lr * wd) ** steps, rtol=1e-12, atol=0)


def test_eps_and_weight_decay_scales_in_the_groups():
    model = mlp(128)
    p = parametrize(model, "mup", base=mlp(32))
    groups = p.param_groups(1e-3, "adam", weight_decay=0.1, eps=1e-8)
    by_param = {id(q): g for g in groups for q in g["params"]}
    hidden, inp = by_param[id(model[2].weight)], by_param[id(model[0].weight)]
    assert (hidden["lr"], hidden["eps"], hidden["weight_decay"]) == pytest.approx((1e-3 / 4, 1e-8 / 4, 0.4))
    assert (inp["lr"], inp["eps"], inp["weight_decay"]) == pytest.approx((1e-3, 1e-8 / 4, 0.1))
    assert by_param[id(model[4].bias)]["eps"] == 1e-8  # the readout bias: gradient Θ(1), ε kept
    sgd = {id(q): g for g in p.param_groups(0.1, "sgd", weight_decay=0.1) for q in g["params"]}
    assert sgd[id(model[0].weight)]["lr"] == pytest.approx(0.4)  # SGD lr ∝ fan_out on input weights
    assert "eps" not in sgd[id(model[0].weight)]
    assert all("eps" not in g for g in p.param_groups(1e-3, "adam-atan2"))


def test_table_survives_state_dict_save_and_load():
    model = mlp(64)
    p = parametrize(model, "mup", base=mlp(16))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "param": p.table.to_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh = mlp(64, seed=9)
    q = parametrize(fresh, ParamTable.from_dict(saved["param"]), init=False)
    fresh.load_state_dict(saved["model"])
    x, _ = batch()
    assert q.table == p.table
    assert torch.equal(fresh(x), model(x))
    assert [g["lr"] for g in q.param_groups(1e-2)] == [g["lr"] for g in p.param_groups(1e-2)]


def test_deepcopy_keeps_the_multipliers_and_the_table():
    model = mlp(64)
    p = parametrize(model, "mup", base=mlp(16))
    twin = copy.deepcopy(model)
    x, _ = batch()
    assert torch.equal(twin(x), model(x))
    table = copy.deepcopy(p.table)
    assert table == p.table and table.param_groups(twin, 1e-2)[0]["params"][0] is twin[0].weight


def test_torch_compile_traces_the_multipliers():
    model = mlp(64)
    parametrize(model, "mup", base=mlp(16))
    x, _ = batch()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    assert torch.allclose(compiled(x), model(x), rtol=1e-14, atol=1e-14)
    plain = mlp(64)
    parametrize(plain, "mup", base=mlp(16), init=False)  # same init, multipliers only
    assert not torch.allclose(compiled(x), plain[4](plain[3](plain[2](plain[1](plain[0](x))))))


@pytest.mark.parametrize("d_out,bias", [(D_OUT, True), (D_OUT, False), (300, True)])
def test_inline_multiplier_equals_the_hooks_and_the_weight_multiplier(d_out, bias):
    """The default ``ScaledLinear`` (no module hook), the hook form and (A·W)x + b agree to float64
    rounding, on a readout (fewer outputs than inputs: A on the output) and on a layer that widens
    (A on the input), with and without bias; ``remove()`` turns the class back into ``nn.Linear``."""
    from lmech.param import ScaledLinear

    def net(width, seed=0):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(D_IN, width), nn.Tanh(), nn.Linear(width, d_out, bias=bias)).double()

    inline, hooked, ref = net(128), net(128), net(128)
    p = parametrize(inline, "mup", base=net(16))
    parametrize(hooked, "mup", base=net(16), multipliers="hooks")
    parametrize(ref, "mup", base=net(16), multipliers="hooks").remove()  # the same rescaled init, no multiplier
    a = p.table["2.weight"].multiplier
    assert a == pytest.approx(16 / 128) and type(inline[2]) is ScaledLinear and not inline[2]._forward_hooks
    assert hooked[2]._forward_hooks or hooked[2]._forward_pre_hooks
    x, _ = batch()
    h = ref[1](ref[0](x))
    expected = h @ (a * ref[2].weight).T + (ref[2].bias if bias else 0)
    for model in (inline, hooked):
        assert torch.allclose(model(x), expected, rtol=1e-13, atol=1e-14)
    assert torch.equal(inline[2](input=h), inline[2](h))
    p.remove()
    assert type(inline[2]) is nn.Linear and "weight_multiplier" not in inline[2].__dict__
    with pytest.raises(BadInput, match="multipliers"):
        parametrize(net(128), "mup", base=net(16), multipliers="patch")


def test_whole_model_pickle_keeps_the_inline_multiplier():
    model = mlp(64)
    parametrize(model, "mup", base=mlp(16))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x, _ = batch()
    assert torch.equal(loaded(x), model(x)) and loaded[4].weight_multiplier == model[4].weight_multiplier


class Custom(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inp = nn.Linear(D_IN, width)
        self.mix = nn.Parameter(torch.randn(width, width, dtype=torch.float64) / width**0.5)
        self.out = nn.Linear(width, D_OUT)

    def forward(self, x):
        return self.out(torch.tanh(self.inp(x)) @ self.mix.T)


def test_ambiguous_model_names_the_parameter_and_the_fix():
    with pytest.raises(BadInput, match=r"mix .*roles="):
        parametrize(Custom(64).double(), "mup", base=Custom(16))
    p = parametrize(Custom(64).double(), "mup", base=Custom(16), roles={"mix": "hidden"})
    assert p.table["mix"].role == "hidden" and p.table["mix"].lr_adam == pytest.approx(0.25)


def test_multiplier_on_an_unsupported_module_is_refused():
    with pytest.raises(BadInput, match="multiplier"):
        parametrize(Custom(64).double(), "mup", base=Custom(16), roles={"mix": "output"})


def test_double_parametrization_is_refused_and_remove_undoes_the_hooks():
    model = mlp(64)
    p = parametrize(model, "mup", base=mlp(16))
    with pytest.raises(BadInput, match="already parametrized"):
        parametrize(model, "mup", base=mlp(16))
    p.remove()
    x, _ = batch()
    h = model[3](model[2](model[1](model[0](x))))
    assert torch.equal(model(x), model[4](h))
    parametrize(model, "sp")


def test_depth_branches_get_hooks_on_generic_models():
    class Res(nn.Module):
        def __init__(self, width, depth):
            super().__init__()
            self.inp = nn.Linear(D_IN, width)
            self.branches = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(depth))
            self.out = nn.Linear(width, D_OUT)

        def forward(self, x):
            h = self.inp(x)
            for b in self.branches:
                h = h + b(h)
            return self.out(h)

    model = Res(32, 4).double()
    ref = copy.deepcopy(model)
    p = parametrize(model, "completep", base=Res(32, 4), delta=Res(64, 4), depth_mult=2.0,
                    branches=[f"branches.{i}" for i in range(4)])
    assert p.table.branch_multiplier == 0.5
    x, _ = batch()
    h = ref.inp(x)
    for b in ref.branches:
        h = h + 0.5 * b(h)
    assert torch.allclose(model(x), ref.out(h), rtol=1e-14, atol=1e-14)


def test_bad_inputs_are_named():
    model = mlp(64)
    p = parametrize(model, "mup", base=mlp(16))
    with pytest.raises(BadInput, match="optimizer"):
        p.param_groups(1e-2, optimizer="lion")
    with pytest.raises(BadInput, match="lr"):
        p.param_groups(-1.0)
    with pytest.raises(BadInput, match="base"):
        parametrize(mlp(64), "mup", base={"0.weight": (16, D_IN)})
    with pytest.raises(BadInput, match="roles"):
        parametrize(mlp(64), "mup", base=mlp(16), roles={"0.weight": "readout"})


def test_adam_atan2_first_step_and_small_update_limit():
    # step 1: m̂ = g, √v̂ = |g| → update −lr·a·atan2(g, |g|) = −lr·a·(π/4)·sign(g) (Everett et al. 2024)
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    opt = AdamAtan2([w], lr=0.1, a=2.0)
    w.grad = torch.tensor([0.5, -4.0, 1e-12], dtype=torch.float64)
    opt.step()
    expected = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64) - 0.1 * 2.0 * (torch.pi / 4) * torch.tensor(
        [1.0, -1.0, 1.0], dtype=torch.float64)
    assert torch.allclose(w.detach(), expected, rtol=0, atol=1e-15)
    # with b large, atan2(m̂, b√v̂) ≈ m̂/(b√v̂): (a/b)·Adam(ε = 0)
    u = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    v = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt_u, opt_v = AdamAtan2([u], lr=0.1, a=1e6, b=1e6), torch.optim.Adam([v], lr=0.1, eps=0.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        g = torch.randn(3, generator=gen, dtype=torch.float64)
        u.grad, v.grad = g.clone(), g.clone()
        opt_u.step()
        opt_v.step()
    assert torch.allclose(u, v, rtol=1e-9, atol=0)


def test_make_optimizer_returns_the_named_class():
    model = mlp(64)
    p = parametrize(model, "mup", base=mlp(16))
    assert isinstance(p.optimizer("adam-atan2", 1e-3), AdamAtan2)
    assert isinstance(p.optimizer("sgd", 1e-1, momentum=0.9), torch.optim.SGD)
    assert "Parametrized(mup" in repr(p)
