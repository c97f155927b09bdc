"""Curvature and the eNTK of a small nn.TransformerEncoderLayer model on the CPU.

PyTorch's fused CPU attention kernel has no double backward (``derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented``) and the fused
encoder-layer fast path has no forward-mode derivative; the instruments select the math kernel
themselves. References are independent: the dense Hessian by ``torch.autograd.functional.hessian``
(one double backward per row, not vmapped), checked itself against central differences of the
gradient, and the dense Jacobian row by row. (``torch.func.hessian`` is no reference here: on
Linear -> LayerNorm with affine parameters it is off by O(1) in torch 2.13, while both the loop and
finite differences agree with the operators; pytorch issue #196700 reports LayerNorm's wrong
second-order forward derivative.)
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from lmech.instruments.curvature import GGNOperator, HessianOperator, hessian_eigenvalues, hessian_trace
from lmech.instruments.ntk import empirical_ntk


class TinyTransformer(nn.Module):
    """Embed 3 features per token, one encoder layer (with dropout), mean-pool, 2 outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.encoder = nn.TransformerEncoderLayer(4, nhead=2, dim_feedforward=8, dropout=0.1, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(1))


def mse(out, target):
    return 0.5 * (out - target).pow(2).sum(1).mean()


@pytest.fixture(scope="module")
def problem():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TinyTransformer().double().train()  # left in train mode, as a user would
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    return model, x, y


def reference(model):
    """An eval-mode copy and a function of the flat parameter vector, computed by the math kernel."""
    ref = copy.deepcopy(model).eval()
    names = [n for n, _ in ref.named_parameters()]
    shapes = [p.shape for p in ref.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])

    def unflat(theta):
        out, start = {}, 0
        for name, shape in zip(names, shapes):
            n = shape.numel()
            out[name] = theta[start : start + n].reshape(shape)
            start += n
        return out

    return ref, flat, unflat


def test_hessian_of_a_transformer_matches_dense(problem):
    model, x, y = problem
    ref, flat, unflat = reference(model)

    def loss(theta):
        return mse(functional_call(ref, unflat(theta), (x,)), y)

    def grad(theta):
        theta = theta.detach().requires_grad_()
        return torch.autograd.grad(loss(theta), theta)[0]

    with sdpa_kernel(SDPBackend.MATH):
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            dense = torch.autograd.functional.hessian(loss, flat)
            for i in (20, 150, 175):  # in the attention, the feed-forward block and the LayerNorm
                e = torch.zeros_like(flat)
                e[i] = 1e-5
                fd = (grad(flat + e) - grad(flat - e)) / 2e-5
                torch.testing.assert_close(dense[:, i], fd, rtol=0, atol=1e-8)  # O(h²) ~ 1e-10
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    op = HessianOperator(model, mse, x, y)
    torch.testing.assert_close(op.to_dense(), dense, rtol=1e-9, atol=1e-11)
    top = hessian_eigenvalues(model, mse, x, y, k=3, tol=1e-10)
    torch.testing.assert_close(top, torch.linalg.eigvalsh(dense).flip(0)[:3], rtol=1e-8, atol=1e-10)
    trace = hessian_trace(model, mse, x, y, num_matvecs=3 * flat.numel())  # Hutch++ with a full sketch: exact
    assert trace.value == pytest.approx(float(torch.trace(dense)), rel=1e-8)
    assert model.training and model.encoder.dropout.training, "every module's mode restored"
    assert torch.backends.mha.get_fastpath_enabled(), "the fast-path flag restored"


def test_ggn_and_ntk_of_a_transformer(problem):
    model, x, y = problem
    ref, _, _ = reference(model)
    params = list(ref.parameters())
    out = ref(x)
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(o, params, retain_graph=True)])
            for o in out.reshape(-1)]
    J = torch.stack(rows)  # (n*o, P), example-major
    # GGN of ½·mean_n |f_n − y_n|²: (1/n) Jᵀ J
    torch.testing.assert_close(GGNOperator(model, mse, x, y).to_dense(), J.T @ J / x.shape[0], rtol=1e-9, atol=1e-12)
    expected = (J @ J.T).reshape(6, 2, 6, 2).permute(0, 2, 1, 3)
    for method in ("jacobian", "ntvp", "linear"):
        torch.testing.assert_close(empirical_ntk(model, x, method=method), expected, rtol=1e-10, atol=1e-12)
    assert model.training
