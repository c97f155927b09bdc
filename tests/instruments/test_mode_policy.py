"""One policy for every instrument on a model in train mode: measure in eval mode, restore the mode.

Each instrument is run on BatchNorm, Dropout and LayerNorm models left in train mode and compared
with an independent dense computation on a copy of the model in eval mode (float64); afterwards
every module's mode and every buffer (batch norm's running statistics and ``num_batches_tracked``)
must be exactly as before. Where eval mode is not enough (batch norm without running statistics,
a module random in eval mode) the instrument refuses with an error naming the module and the fix.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lmech.errors import BadInput
from lmech.instruments.curvature import hessian_eigenvalues
from lmech.instruments.features import capture_activations
from lmech.instruments.noise import exact_noise_scale, gradient_noise_scale
from lmech.instruments.ntk import LinearizedModel, NTKOperator, empirical_ntk
from lmech.instruments.similarity import compare

KINDS = ("batchnorm", "dropout", "layernorm")


def make_model(kind: str) -> nn.Module:
    """Linear -> {BatchNorm1d, Dropout, LayerNorm} -> tanh -> Linear, float64, in train mode."""
    middle = {"batchnorm": nn.BatchNorm1d(8), "dropout": nn.Dropout(0.5), "layernorm": nn.LayerNorm(8)}[kind]
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(4, 8), middle, nn.Tanh(), nn.Linear(8, 3)).double()
        with torch.no_grad():  # non-trivial running statistics (mean 0 / var 1 would hide their use)
            for _ in range(3):
                model(2.0 + 3.0 * torch.randn(16, 4, dtype=torch.float64))
    return model.train()


def data(n: int = 6):
    gen = torch.Generator().manual_seed(5)
    return torch.randn(n, 4, generator=gen, dtype=torch.float64), torch.randn(n, 3, generator=gen, dtype=torch.float64)


def state(model: nn.Module):
    return [m.training for m in model.modules()], [b.clone() for b in model.buffers()]


def assert_untouched(model: nn.Module, before) -> None:
    modes, buffers = state(model)
    assert modes == before[0], "every module's train/eval flag is restored"
    assert all(torch.equal(a, b) for a, b in zip(buffers, before[1])), "no buffer changed"


def dense_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(n*o, P) Jacobian of the eval-mode model, one backward pass per output coordinate."""
    ref = copy.deepcopy(model).eval()
    params = [p for p in ref.parameters() if p.requires_grad]
    out = ref(x).reshape(-1)
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(out[k], params, retain_graph=True)])
            for k in range(out.numel())]
    return torch.stack(rows)


def mse(out, target):
    return 0.5 * (out - target).pow(2).sum(1).mean()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["jacobian", "ntvp", "linear"])
def test_empirical_ntk_in_train_mode(kind, method):
    model, (x, _) = make_model(kind), data()
    J = dense_jacobian(model, x)
    expected = (J @ J.T).reshape(6, 3, 6, 3).permute(0, 2, 1, 3)
    before = state(model)
    K = empirical_ntk(model, x, method=method)
    assert_untouched(model, before)
    torch.testing.assert_close(K, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_ntk_operator_and_linearized_model_in_train_mode(kind):
    model, (x, _) = make_model(kind), data()
    J = dense_jacobian(model, x)
    v = torch.randn(18, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = state(model)
    torch.testing.assert_close(NTKOperator(model, x) @ v, J @ (J.T @ v), rtol=1e-12, atol=1e-12)
    lin = LinearizedModel(model)
    torch.testing.assert_close(lin(x), copy.deepcopy(model).eval()(x), rtol=0, atol=1e-14)
    assert_untouched(model, before)


@pytest.mark.parametrize("kind", KINDS)
def test_hessian_in_train_mode(kind):
    model, (x, y) = make_model(kind), data()
    ref = copy.deepcopy(model).eval()
    params = list(ref.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_of(theta):
        chunks, start = {}, 0
        for (name, p) in ref.named_parameters():
            chunks[name] = theta[start : start + p.numel()].reshape(p.shape)
            start += p.numel()
        return mse(torch.func.functional_call(ref, chunks, (x,)), y)

    dense = torch.autograd.functional.hessian(loss_of, flat)
    before = state(model)
    top = hessian_eigenvalues(model, mse, x, y, k=2, tol=1e-10)
    assert_untouched(model, before)
    torch.testing.assert_close(top, torch.linalg.eigvalsh(dense).flip(0)[:2], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_noise_scale_in_train_mode(kind):
    model, (x, y) = make_model(kind), data()
    ref = copy.deepcopy(model).eval()
    before = state(model)
    got = exact_noise_scale(model, mse, x, y)
    assert_untouched(model, before)
    expected = exact_noise_scale(ref, mse, x, y)
    assert got.b_simple == pytest.approx(expected.b_simple, rel=1e-12)
    sampled = gradient_noise_scale(model, mse, x, y, 2, 4, num_batches=3, generator=torch.Generator().manual_seed(0))
    assert_untouched(model, before)
    again = gradient_noise_scale(ref, mse, x, y, 2, 4, num_batches=3, generator=torch.Generator().manual_seed(0))
    assert sampled.b_simple == pytest.approx(again.b_simple, rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_activations_and_similarity_in_train_mode(kind):
    model, (x, _) = make_model(kind), data()
    ref = copy.deepcopy(model).eval()
    before = state(model)
    acts = capture_activations(model, x)
    frame = compare(model, model, x)
    assert_untouched(model, before)
    assert torch.equal(acts["3"], ref(x).detach())
    assert frame.to_numpy().diagonal() == pytest.approx(1.0, abs=1e-12)


def test_batch_statistics_in_eval_mode_are_refused_by_name():
    """BatchNorm(track_running_stats=False) couples examples even in eval mode: named, with the fix."""
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.Linear(8, 1)).double()
    x, y = data()
    for call in (lambda: empirical_ntk(model, x), lambda: NTKOperator(model, x),
                 lambda: exact_noise_scale(model, mse, x, y[:, :1])):
        with pytest.raises(BadInput, match=r"BatchNorm1d at '1' with track_running_stats=False.*LayerNorm"):
            call()


def test_random_in_eval_mode_is_refused():
    class AlwaysNoisy(nn.Module):  # ignores self.training: random in eval mode too
        def forward(self, h):
            return h + torch.randn_like(h)

    model = nn.Sequential(nn.Linear(4, 8), AlwaysNoisy(), nn.Linear(8, 1)).double()
    with pytest.raises(BadInput, match="random operation.*self.training"):
        empirical_ntk(model, data()[0], method="jacobian")
