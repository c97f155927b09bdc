"""The finite MLP of lmech.models.mlp and the SP/NTK parametrizations of lmech.param.

References: the layer equations written out by hand, sample statistics of the initial parameters
(with their standard errors), and the kernel gains recomputed from the init stds and multipliers.
"""

from __future__ import annotations

import math

import pytest
import torch

from lmech.errors import BadInput
from lmech.models.mlp import MLP, Activation, Dense, DenseLayer, mlp, mlp_layers
from lmech.param import NTK, STANDARD, get_parametrization


def test_ntk_parametrized_network_has_the_stated_output_formula():
    # Depth 1, written by hand: f(x) = σw/√n · W2 relu(σw/√d · W1 x + σb b1) + σb b2.
    sw, sb, d, width = 1.7, 0.4, 3, 6
    model = mlp(d, width, 1, "relu", sw, sb, "ntk", seed=3, dtype=torch.float64)
    w1, b1 = model.layers[0].weight, model.layers[0].bias
    w2, b2 = model.layers[2].weight, model.layers[2].bias
    x = torch.randn(5, d, dtype=torch.float64)
    hidden = torch.relu(sw / math.sqrt(d) * x @ w1.T + sb * b1)
    expected = sw / math.sqrt(width) * hidden @ w2.T + sb * b2
    torch.testing.assert_close(model(x), expected, rtol=1e-14, atol=1e-14)


def test_standard_parametrized_layer_is_plain_affine():
    layer = MLP(4, [Dense(3, 1.3, 0.2, "standard")], seed=0, dtype=torch.float64).layers[0]
    x = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
def test_initial_parameter_statistics(parametrization):
    # One 400 x 500 layer: 2e5 weights give the sample std to a relative standard error
    # 1/sqrt(2·2e5) ≈ 0.16%; tolerance 1% (6 s.e.). The 400 biases: s.e. 1/sqrt(800) ≈ 3.5%,
    # tolerance 15%. The mean: |mean| <= 5 std/sqrt(count).
    sw, sb, fan_in = 1.6, 0.3, 500
    layer = MLP(fan_in, [Dense(400, sw, sb, parametrization)], seed=1, dtype=torch.float64).layers[0]
    w_std, b_std = (1.0, 1.0) if parametrization == "ntk" else (sw / math.sqrt(fan_in), sb)
    assert layer.weight.std().item() == pytest.approx(w_std, rel=0.01)
    assert abs(layer.weight.mean().item()) <= 5 * w_std / math.sqrt(layer.weight.numel())
    assert layer.bias.std().item() == pytest.approx(b_std, rel=0.15)
    multipliers = (sw / math.sqrt(fan_in), sb) if parametrization == "ntk" else (1.0, 1.0)
    assert (layer.weight_multiplier, layer.bias_multiplier) == pytest.approx(multipliers, rel=1e-15)


def test_seeded_construction_is_reproducible_and_seed_dependent():
    a = mlp(5, 32, 2, "tanh", seed=7)
    b = mlp(5, 32, 2, "tanh", seed=7)
    c = mlp(5, 32, 2, "tanh", seed=8)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)


def test_description_lists_hidden_layers_then_readout():
    layers = mlp_layers(2, 16, "gelu", 1.1, None, "sp", out_features=3)
    assert [type(s) for s in layers] == [Dense, Activation, Dense, Activation, Dense]
    assert layers[-1].width == 3 and layers[0].parametrization is STANDARD and layers[0].bias_std is None
    model = MLP(4, layers, seed=0)
    assert model.out_features == 3 and all(m.bias is None for m in model.layers if isinstance(m, DenseLayer))


def test_leaky_relu_activation_uses_both_slopes():
    act = Activation("leaky_relu", negative_slope=0.2, positive_slope=1.5)
    x = torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(act.function(x), torch.tensor([-0.4, 0.0, 4.5]))


@pytest.mark.parametrize("par", [NTK, STANDARD])
def test_kernel_gains_follow_from_init_stds_and_multipliers(par):
    # g_W = (m_W s_W)² n_in, g_b = (m_b s_b)², t_W = m_W² n_in, t_b = m_b² (lmech.param docstring).
    fan_in, sw, sb = 37, 1.3, 0.25
    s = par.dense(fan_in, sw, sb)
    g = par.kernel_gains(fan_in, sw, sb)
    assert g.nngp_weight == pytest.approx((s.weight_multiplier * s.weight_init_std) ** 2 * fan_in, rel=1e-14)
    assert g.nngp_bias == pytest.approx((s.bias_multiplier * s.bias_init_std) ** 2, rel=1e-14)
    assert g.ntk_weight == pytest.approx(s.weight_multiplier**2 * fan_in, rel=1e-14)
    assert g.ntk_bias == pytest.approx(s.bias_multiplier**2, rel=1e-14)


@pytest.mark.parametrize("call, name", [
    (lambda: mlp(3, 0, 1), "width"),
    (lambda: mlp(3, 8, -1), "depth"),
    (lambda: mlp(0, 8, 1), "in_features"),
    (lambda: mlp(3, 8, 1, "swishy"), "activation"),
    (lambda: mlp(3, 8, 1, weight_std=-1.0), "weight_std"),
    (lambda: mlp(3, 8, 1, bias_std=float("nan")), "bias_std"),
    (lambda: mlp(3, 8, 1, parametrization="mup"), "parametrization"),
    (lambda: mlp(3, None, 1), "width"),
    (lambda: get_parametrization(3), "parametrization"),
])
def test_bad_input_is_rejected_with_its_name(call, name):
    with pytest.raises(BadInput) as err:
        call()
    assert err.value.name == name
