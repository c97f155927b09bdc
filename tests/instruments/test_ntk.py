"""Tests of lmech.instruments.ntk against an explicit J J^T built from a loop of autograd.grad.

Every reference here is computed in float64 without torch.func: the Jacobian row of each (example,
output) pair comes from one ``torch.autograd.grad`` call, and the kernel is their inner products.
The tolerance 1e-10 (max abs error / max abs entry) is what float64 allows for sums of ~10^3
products of O(1) numbers (round-off ~1e-15 each) with a wide safety margin.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lmech.errors import BadInput
from lmech.instruments.ntk import (
    LinearizedModel,
    NTKOperator,
    empirical_ntk,
    kernel_distance,
    kernel_target_alignment,
    kernel_velocity,
)

RTOL = 1e-10


def reference_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(n, o, P) Jacobian of the flattened outputs w.r.t. the trainable parameters, row by row."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = model(x).reshape(x.shape[0], -1)
    rows = []
    for i in range(out.shape[0]):
        for a in range(out.shape[1]):
            grads = torch.autograd.grad(out[i, a], params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]
                )
            )
    return torch.stack(rows).reshape(out.shape[0], out.shape[1], -1)


def reference_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, mode: str) -> torch.Tensor:
    J1, J2 = reference_jacobian(model, x1), reference_jacobian(model, x2)
    full = torch.einsum("iap,jbp->ijab", J1, J2)
    if mode == "trace":
        out = torch.diagonal(full, dim1=2, dim2=3).sum(-1)
    elif mode == "diagonal":
        out = torch.diagonal(full, dim1=2, dim2=3)
    else:
        out = full
    o = J1.shape[1]
    return out.reshape(x1.shape[0], x2.shape[0]) if o == 1 else out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max() / b.abs().max())


class Scale(nn.Module):
    """An elementwise learnable gain: not a Linear layer, so the structured path must fall back."""

    def __init__(self, d: int):
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, d))

    def forward(self, x):
        return x * self.gain


class SequenceMLP(nn.Module):
    """A Linear applied to (batch, tokens, features) input: outside the structured path's (n, d) case."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(3, 4)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.inner(x.reshape(x.shape[0], 2, 3))).reshape(x.shape[0], 8))


def make_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "mlp3":  # Sequential MLP with biases, 3 outputs
        model = nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 5), nn.GELU(), nn.Linear(5, 3))
    elif kind == "mlp1":  # one output
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    elif kind == "mixed":  # Linear layers plus a non-Linear parameter, an in-place ReLU, a frozen bias
        model = nn.Sequential(
            nn.Linear(6, 7),
            Scale(7),
            nn.Tanh(),
            nn.Linear(7, 5),
            nn.ReLU(inplace=True),
            nn.Linear(5, 2, bias=False),
        )
        model[0].bias.requires_grad_(False)
    elif kind == "sequence":
        model = SequenceMLP()
    else:
        raise AssertionError(kind)
    return model.double()


INPUTS = {"mlp3": 6, "mlp1": 6, "mixed": 6, "sequence": 6}


@pytest.mark.parametrize("kind", ["mlp3", "mlp1", "mixed", "sequence"])
@pytest.mark.parametrize("method", ["jacobian", "ntvp", "linear"])
@pytest.mark.parametrize("mode", ["full", "trace", "diagonal"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_empirical_ntk_matches_dense_jjt(kind, method, mode, symmetric):
    model = make_model(kind)
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(5, INPUTS[kind], generator=g, dtype=torch.float64)
    x2 = None if symmetric else torch.randn(3, INPUTS[kind], generator=g, dtype=torch.float64)
    ref = reference_ntk(model, x1, x1 if symmetric else x2, mode)
    for chunk in (None, 2):  # one block, and a 3 x 3 (or 3 x 2) grid of blocks with a ragged edge
        K = empirical_ntk(model, x1, x2, mode=mode, method=method, chunk_size=chunk)
        assert rel_err(K, ref) <= RTOL


def test_default_method_is_structured_and_exact_on_sequential_mlp():
    model = make_model("mlp3")
    x = torch.randn(7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    K = empirical_ntk(model, x)
    assert K.shape == (7, 7, 3, 3)
    assert rel_err(K, reference_ntk(model, x, x, "full")) <= RTOL


def test_default_method_on_a_model_without_linear_layers_falls_back_entirely():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Unflatten(1, (1, 8)), nn.Conv1d(1, 2, 8))
    model = model.double()
    x = torch.randn(4, 1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    K = empirical_ntk(model, x)
    assert K.shape == (4, 4, 2, 2)
    assert rel_err(K, reference_ntk(model, x, x, "full")) <= RTOL


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("bias_std", [0.3, 0.0, None])
@pytest.mark.parametrize("mode", ["full", "trace", "diagonal"])
def test_structured_path_on_lmech_mlp_dense_layers(parametrization, bias_std, mode):
    # lmech's MLP has no nn.Linear: its DenseLayer computes z = m_W·W a + m_b·b. The structured path
    # covers it with the multipliers (m_W² a·a' + m_b²)(g·g'), leaving nothing to the Jacobian path,
    # and must equal the row-by-row J Jᵀ (and method="auto" must not fail on such a model).
    from lmech.instruments.ntk import _LinearFeatures, _named_trainable
    from lmech.models.mlp import mlp

    model = mlp(4, 9, 2, "tanh", 1.3, bias_std, parametrization, out_features=2, seed=3, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    x1 = torch.randn(5, 4, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    features = _LinearFeatures(model, _named_trainable(model), 2)
    features(x1)
    assert features.rest == []  # every parameter on the structured path
    for chunk in (None, 2):
        K = empirical_ntk(model, x1, mode=mode, method="auto", chunk_size=chunk)
        assert rel_err(K, reference_ntk(model, x1, x1, mode)) <= RTOL
        K12 = empirical_ntk(model, x1, x2, mode=mode, method="linear", chunk_size=chunk)
        assert rel_err(K12, reference_ntk(model, x1, x2, mode)) <= RTOL


def test_ntk_operator_products_match_dense():
    model = make_model("mlp3")
    g = torch.Generator().manual_seed(3)
    x1, x2 = (
        torch.randn(4, 6, generator=g, dtype=torch.float64),
        torch.randn(3, 6, generator=g, dtype=torch.float64),
    )
    dense = reference_ntk(model, x1, x2, "full").permute(0, 2, 1, 3).reshape(12, 9)
    op = NTKOperator(model, x1, x2)
    assert op.shape == (12, 9)
    v = torch.randn(9, generator=g, dtype=torch.float64)
    V = torch.randn(9, 4, generator=g, dtype=torch.float64)
    assert rel_err(op @ v, dense @ v) <= RTOL
    assert rel_err(op @ V, dense @ V) <= RTOL
    assert rel_err(op.to_dense(chunk_size=4), dense) <= RTOL


def test_bad_inputs_raise_before_work():
    model = make_model("mlp3")
    x = torch.randn(4, 6, dtype=torch.float64)
    frozen = make_model("mlp1").requires_grad_(False)
    with pytest.raises(BadInput, match="model"):
        empirical_ntk(frozen, x)
    with pytest.raises(BadInput, match="x2"):
        empirical_ntk(model, x, torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(BadInput, match="mode"):
        empirical_ntk(model, x, mode="eigen")
    with pytest.raises(BadInput, match="method"):
        empirical_ntk(model, x, method="magic")
    with pytest.raises(BadInput, match="chunk_size"):
        empirical_ntk(model, x, chunk_size=0)
    with pytest.raises(BadInput, match="x1"):
        empirical_ntk(model, x[:0])
    with pytest.raises(BadInput, match="v"):
        NTKOperator(model, x) @ torch.ones(5, dtype=torch.float64)


# --------------------------------------------------------------------------------------------------
# kernel distance, velocity, alignment: closed forms on hand-built kernels
# --------------------------------------------------------------------------------------------------


def test_kernel_distance_zero_on_itself_scale_invariant_and_known_value():
    K = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    K = K @ K.T
    # identical and proportional kernels: exactly 0 up to round-off of a ratio of sums (1e-14)
    assert abs(kernel_distance(K, K)) < 1e-14
    assert abs(kernel_distance(K, 7.5 * K)) < 1e-14
    # I vs e1 e1^T: <I, e1e1^T> = 1, |I| = sqrt(2), |e1e1^T| = 1, so S = 1 - 1/sqrt(2)
    E = torch.zeros(2, 2, dtype=torch.float64)
    E[0, 0] = 1.0
    assert kernel_distance(torch.eye(2, dtype=torch.float64), E) == pytest.approx(
        1 - 1 / math.sqrt(2), abs=1e-15
    )
    # invariant to scaling either argument
    A = torch.eye(2, dtype=torch.float64)
    assert kernel_distance(3 * A, 0.1 * E) == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-15)


def test_kernel_velocity_is_distance_per_unit_time():
    E = torch.zeros(2, 2, dtype=torch.float64)
    E[0, 0] = 1.0
    eye = torch.eye(2, dtype=torch.float64)
    v = kernel_velocity([eye, 2 * eye, E], times=[0.0, 0.5, 2.5])
    # first step: proportional kernels, distance 0; second: 1 - 1/sqrt(2) over dt = 2
    assert torch.allclose(
        v, torch.tensor([0.0, (1 - 1 / math.sqrt(2)) / 2.0], dtype=torch.float64), atol=1e-15
    )
    with pytest.raises(BadInput, match="times"):
        kernel_velocity([eye, eye], times=[1.0, 1.0])
    with pytest.raises(BadInput, match="kernels"):
        kernel_velocity([eye], times=[0.0])


def test_kernel_target_alignment_closed_forms():
    n = 6
    y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    # the ideal kernel yy^T is perfectly aligned; the identity has alignment n / (sqrt(n) n) = 1/sqrt(n)
    assert kernel_target_alignment(torch.outer(y, y), y) == pytest.approx(1.0, abs=1e-14)
    assert kernel_target_alignment(torch.eye(n, dtype=torch.float64), y) == pytest.approx(
        1 / math.sqrt(n), abs=1e-14
    )
    # centred variant against the explicit H K H with H = I - 11^T/n
    K = torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    K = K @ K.T + 3.0
    H = torch.eye(n, dtype=torch.float64) - torch.full((n, n), 1.0 / n, dtype=torch.float64)
    Kc, Tc = H @ K @ H, H @ torch.outer(y, y) @ H
    expected = float((Kc * Tc).sum() / (Kc.norm() * Tc.norm()))
    assert kernel_target_alignment(K, y, centered=True) == pytest.approx(expected, abs=1e-13)
    with pytest.raises(BadInput, match="K"):
        kernel_target_alignment(torch.ones(3, 4), torch.ones(3))
    with pytest.raises(BadInput, match="y"):
        kernel_target_alignment(torch.eye(3), torch.ones(4))


# --------------------------------------------------------------------------------------------------
# the linearized model
# --------------------------------------------------------------------------------------------------


def _perturbed(params0: dict, direction: dict, eps: float) -> dict:
    return {k: p + eps * direction[k] for k, p in params0.items()}


def test_linearized_model_is_first_order_taylor_expansion():
    model = make_model("mlp3")
    lin = LinearizedModel(model)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(5, 6, generator=g, dtype=torch.float64)
    d = {k: torch.randn(p.shape, generator=g, dtype=torch.float64) for k, p in lin.params0.items()}
    f0 = model(x).detach()
    # at theta0 the linearization is the model itself
    assert rel_err(lin(x).detach(), f0) <= 1e-14

    # f_lin(theta0 + d) - f0 = J d with J from the autograd.grad reference
    J = reference_jacobian(model, x)
    d_flat = torch.cat([d[k].reshape(-1) for k, _ in model.named_parameters()])
    assert rel_err(lin(x, _perturbed(lin.params0, d, 1.0)) - f0, J @ d_flat) <= RTOL

    # the model's error against its linearization is O(eps^2): halving eps divides it by 4. With
    # eps from 1e-2 down to 2.5e-3 the cubic term changes the ratio by O(eps) ~ 1%, round-off is
    # ~1e-16 / 1e-6: the window [3.6, 4.4] is wide against both.
    errs = []
    for eps in (1e-2, 5e-3, 2.5e-3):
        theta = _perturbed(lin.params0, d, eps)
        true = torch.func.functional_call(model, theta, (x,))
        errs.append(float((true - lin(x, theta)).abs().max()))
    assert 3.6 < errs[0] / errs[1] < 4.4 and 3.6 < errs[1] / errs[2] < 4.4


def test_linearized_model_is_exactly_linear_and_differentiable():
    model = make_model("mlp1")
    lin = LinearizedModel(model)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64)
    d1 = {k: torch.randn(p.shape, generator=g, dtype=torch.float64) for k, p in lin.params0.items()}
    d2 = {k: torch.randn(p.shape, generator=g, dtype=torch.float64) for k, p in lin.params0.items()}
    f0 = lin(x, lin.params0)
    a, b = 2.5, -0.7
    combo = {k: lin.params0[k] + a * d1[k] + b * d2[k] for k in d1}
    lhs = lin(x, combo) - f0
    rhs = a * (lin(x, _perturbed(lin.params0, d1, 1.0)) - f0) + b * (
        lin(x, _perturbed(lin.params0, d2, 1.0)) - f0
    )
    assert rel_err(lhs, rhs) <= RTOL
    # gradients flow to the new parameters: d/dtheta sum_i f_lin(x_i) = J^T 1 (independent of theta)
    theta = {k: v.clone().requires_grad_(True) for k, v in combo.items()}
    lin(x, theta).sum().backward()
    grad = torch.cat([theta[k].grad.reshape(-1) for k, _ in model.named_parameters()])
    J = reference_jacobian(model, x).reshape(4, -1)
    assert rel_err(grad, J.sum(0)) <= RTOL
    with pytest.raises(BadInput, match="params"):
        lin(x, {"nonexistent": torch.zeros(1)})


def test_structured_path_covers_plain_linear_layers_and_falls_back_for_the_rest():
    # which parameters the Gram-times-Gram path takes (the exactness is tested above): all of a plain
    # MLP; in the mixed model not the gain, nor the Linear whose output an in-place ReLU overwrites
    from lmech.instruments.ntk import _LinearFeatures, _named_trainable

    x = torch.randn(3, 6, dtype=torch.float64)
    for kind, rest in [
        ("mlp3", []),
        ("mixed", ["1.gain", "3.weight", "3.bias"]),
        ("sequence", ["inner.weight", "inner.bias"]),
    ]:
        model = make_model(kind)
        feats = _LinearFeatures(model, _named_trainable(model), 3 if kind == "mlp3" else 2)
        feats(x)
        assert feats.rest == rest
