"""DataLoader mode: an instrument given a DataLoader equals the same instrument on the tensors.

Batch sizes differ (a last short batch), so a wrong weighting of the batches would show. float64
throughout: the loader result must agree with the single-tensor one to round-off.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lmech.errors import BadInput
from lmech.instruments.ntk import empirical_ntk


def mlp() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def tensors(n: int = 23):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=gen, dtype=torch.float64), torch.randn(n, 3, generator=gen, dtype=torch.float64)


def loader(x, y, batch_size=7):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)  # 7, 7, 7, 2


@pytest.mark.parametrize("method", ["jacobian", "linear"])
def test_empirical_ntk_over_a_dataloader(method):
    model, (x, y) = mlp(), tensors()
    x2 = x[:9] + 0.5
    expected = empirical_ntk(model, x, method=method)
    got = empirical_ntk(model, loader(x, y), method=method)
    torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-13)
    cross = empirical_ntk(model, loader(x, y), DataLoader(x2, batch_size=4), mode="trace", method=method, chunk_size=3)
    torch.testing.assert_close(cross, empirical_ntk(model, x, x2, mode="trace", method=method), rtol=1e-13, atol=1e-13)


def test_loader_errors():
    model, (x, y) = mlp(), tensors()
    with pytest.raises(BadInput, match="one-pass iterator"):
        empirical_ntk(model, iter(loader(x, y)))
    with pytest.raises(BadInput, match="batch 1 of x1"):
        empirical_ntk(model, [(x[:3], y[:3]), (x[:3, :2], y[:3])])
    with pytest.raises(BadInput, match="x2"):
        empirical_ntk(model, loader(x, y), [x[:2, :4]])

    class Shrinking:  # yields fewer examples on the second pass, as a drop_last+shuffle loader may
        def __init__(self):
            self.passes = 0

        def __iter__(self):
            self.passes += 1
            return iter([x[:5]] if self.passes == 1 else [x[:4]])

    with pytest.raises(BadInput, match="same examples on every pass"):
        empirical_ntk(model, Shrinking())


# --- curvature over a DataLoader ---------------------------------------------------------------

from lmech.instruments.curvature import (  # noqa: E402
    GGNOperator,
    HessianOperator,
    hessian_eigenvalues,
    hessian_spectral_density,
    hessian_trace,
)


def mse(out, target):
    return 0.5 * (out - target).pow(2).sum(1).mean()


def mse_sum(out, target):
    return 0.5 * (out - target).pow(2).sum()


def uneven_batches(x, y):
    """Batches of 10, 3 and 10 examples: a wrong batch weighting changes the average."""
    return [(x[:10], y[:10]), (x[10:13], y[10:13]), (x[13:], y[13:])]


@pytest.mark.parametrize("Operator", [HessianOperator, GGNOperator])
@pytest.mark.parametrize("loss_fn, reduction", [(mse, "mean"), (mse_sum, "sum")])
def test_curvature_products_over_a_dataloader(Operator, loss_fn, reduction):
    model, (x, y) = mlp(), tensors()
    V = torch.randn(sum(p.numel() for p in model.parameters()), 3, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    expected = Operator(model, loss_fn, x, y, reduction=reduction) @ V
    for data in (loader(x, y), uneven_batches(x, y)):
        op = Operator(model, loss_fn, data, reduction=reduction)
        torch.testing.assert_close(op @ V, expected, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(op @ V[:, 0], expected[:, 0], rtol=1e-12, atol=1e-13)  # the one-vector path
    chunked = Operator(model, loss_fn, loader(x, y), reduction=reduction, chunk_size=3)  # batches split further
    torch.testing.assert_close(chunked @ V, expected, rtol=1e-12, atol=1e-13)


def test_curvature_functions_over_a_dataloader():
    model, (x, y) = mlp(), tensors()
    data = loader(x, y)
    torch.testing.assert_close(hessian_eigenvalues(model, mse, data, k=3, tol=1e-10),
                               hessian_eigenvalues(model, mse, x, y, k=3, tol=1e-10), rtol=1e-9, atol=1e-12)
    for method in ("hutch++", "hutchinson"):
        a = hessian_trace(model, mse, data, method=method, num_matvecs=30, generator=torch.Generator().manual_seed(0))
        b = hessian_trace(model, mse, x, y, method=method, num_matvecs=30, generator=torch.Generator().manual_seed(0))
        assert a.value == pytest.approx(b.value, rel=1e-10)
    a = hessian_spectral_density(model, mse, data, num_probes=2, num_steps=12, generator=torch.Generator().manual_seed(0))
    b = hessian_spectral_density(model, mse, x, y, num_probes=2, num_steps=12, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.nodes, b.nodes, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(a.weights, b.weights, rtol=1e-8, atol=1e-10)


def test_memory_is_bounded_by_one_batch():
    """With a DataLoader the model never sees more than one batch at a time."""
    model, (x, y) = mlp(), tensors()
    seen = []
    handle = model.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0].shape[0]))
    try:
        hessian_eigenvalues(model, mse, loader(x, y, batch_size=5), k=2, tol=1e-6)
        hessian_trace(model, mse, loader(x, y, batch_size=5), num_matvecs=9)
    finally:
        handle.remove()
    assert seen and max(seen) <= 5


def test_curvature_loader_errors():
    model, (x, y) = mlp(), tensors()
    with pytest.raises(BadInput, match="targets.*None when inputs is a DataLoader"):
        HessianOperator(model, mse, loader(x, y), y)
    with pytest.raises(BadInput, match="batch 0 of inputs.*targets"):
        HessianOperator(model, mse, DataLoader(x, batch_size=4))  # no targets in the batches
    with pytest.raises(BadInput, match="targets"):
        HessianOperator(model, mse, x)  # tensors need their targets
