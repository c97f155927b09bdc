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
