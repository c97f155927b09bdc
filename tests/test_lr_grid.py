"""The batched learning-rate sweep against separate torch.optim runs, and the parabola optimum."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from lmech.errors import BadInput
from lmech.experiments.lr_grid import cross_entropy, parabola_optimum, schedule, train_lr_grid
from lmech.models.init import standard_init_
from lmech.param import parametrize


def _mlp(width: int, device: str = "cpu") -> nn.Sequential:
    return nn.Sequential(nn.Linear(5, width, device=device), nn.ReLU(), nn.Linear(width, width, device=device),
                         nn.ReLU(), nn.Linear(width, 3, device=device))


def _setup(preset: str = "mup"):
    torch.manual_seed(0)  # only the data below; the network has its own generator
    net = standard_init_(_mlp(32), torch.Generator().manual_seed(1)).double()
    p = parametrize(net, preset, base=_mlp(8, "meta"), delta=_mlp(16, "meta"))
    gen = torch.Generator().manual_seed(2)
    data = [(torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (6,), generator=gen))
            for _ in range(7)]
    return net, p, data


def _reference(net, p, data, lr, optimizer, factors):
    """One copy trained by torch.optim with the parametrization's groups and a LambdaLR schedule."""
    net = copy.deepcopy(net)
    groups = p.table.param_groups(net, lr, optimizer)
    opt = torch.optim.SGD(groups, lr=lr) if optimizer == "sgd" else torch.optim.Adam(groups, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: factors[i])
    losses = []
    for x, y in data:
        loss = nn.functional.cross_entropy(net(x), y)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return losses, net


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("warmup,decay", [(0.0, False), (0.3, True)])
def test_each_copy_follows_its_own_torch_optim_run(optimizer, warmup, decay):
    net, p, data = _setup()
    lrs = [1e-3, 1e-2, 0.1] if optimizer == "adam" else [0.01, 0.1, 0.5]
    batches = iter(data)
    run = train_lr_grid(net, p.table, cross_entropy, lambda: next(batches), lrs, len(data),
                        optimizer=optimizer, warmup=warmup, decay=decay, eval_batch=data[0])
    factors = [schedule(t, len(data), warmup, decay) for t in range(1, len(data) + 1)] + [1.0]
    for k, lr in enumerate(lrs):
        losses, trained = _reference(net, p, data, lr, optimizer, factors)
        np.testing.assert_allclose(run.losses[:, k], losses, rtol=1e-10, atol=1e-12)
        with torch.no_grad():
            final = float(nn.functional.cross_entropy(trained(data[0][0]), data[0][1]))
        assert run.final[k] == pytest.approx(final, rel=1e-10)
    assert (run.diverged_at == -1).all()


def test_the_model_is_left_as_it_was():
    net, p, data = _setup()
    before = copy.deepcopy(net.state_dict())
    batches = iter(data)
    train_lr_grid(net, p.table, cross_entropy, lambda: next(batches), [1e-2, 1e-1], len(data))
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name])


def test_a_diverged_copy_stops_and_leaves_the_others_alone():
    net, p, data = _setup("sp")
    batches = iter(data)
    lrs = [1e-3, 1e200]  # 1e200 overflows float64 within a few steps
    run = train_lr_grid(net, p.table, cross_entropy, lambda: next(batches), lrs, len(data),
                        optimizer="sgd")
    assert run.diverged_at[1] >= 1 and math.isinf(run.final[1])
    assert np.isnan(run.losses[run.diverged_at[1]:, 1]).all()
    losses, _ = _reference(net, p, data, 1e-3, "sgd", [1.0] * (len(data) + 1))
    np.testing.assert_allclose(run.losses[:, 0], losses, rtol=1e-10)
    assert run.diverged_at[0] == -1


def test_transformer_copies_match_torch_adam():
    from lmech.models.transformer import TinyTransformer

    net = TinyTransformer(vocab_size=11, block_size=6, width=16, depth=1, n_head=2, parametrization="mup",
                          base_width=8, seed=3).double()
    gen = torch.Generator().manual_seed(4)
    data = [(torch.randint(0, 11, (3, 6), generator=gen), torch.randint(0, 11, (3, 6), generator=gen))
            for _ in range(4)]

    batches = iter(data)
    run = train_lr_grid(net, net.param_table, cross_entropy, lambda: next(batches), [1e-2, 3e-2], len(data))
    for k, lr in enumerate([1e-2, 3e-2]):
        ref = copy.deepcopy(net)
        opt = torch.optim.Adam(ref.param_groups(lr, "adam"), lr=lr)
        for step, (x, y) in enumerate(data):
            loss = ref.loss(x, y)
            assert run.losses[step, k] == pytest.approx(float(loss.detach()), rel=1e-9)
            opt.zero_grad()
            loss.backward()
            opt.step()


def test_cross_entropy_is_torchs():
    gen = torch.Generator().manual_seed(5)
    logits, targets = torch.randn(4, 7, 11, generator=gen), torch.randint(0, 11, (4, 7), generator=gen)
    expected = nn.functional.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    assert float(cross_entropy(logits, targets)) == pytest.approx(float(expected), rel=1e-6)


def test_schedule_shape():
    assert [schedule(t, 4) for t in range(1, 5)] == [1.0, 1.0, 1.0, 1.0]
    assert [schedule(t, 4, decay=True) for t in range(1, 5)] == [1.0, 0.75, 0.5, 0.25]
    assert [schedule(t, 10, warmup=0.2, decay=True) for t in (1, 2, 3, 10)] == [0.5, 1.0, 8 / 9, 1 / 9]
    assert [schedule(t, 10, warmup=0.2) for t in (1, 2, 3)] == [0.5, 1.0, 1.0]


def test_bad_input():
    net, p, data = _setup()
    with pytest.raises(BadInput, match="optimizer"):
        train_lr_grid(net, p.table, cross_entropy, lambda: data[0], [1e-2], 2, optimizer="lion")
    with pytest.raises(BadInput, match="lrs"):
        train_lr_grid(net, p.table, cross_entropy, lambda: data[0], [0.0], 2)
    with pytest.raises(BadInput, match="log2_lrs"):
        parabola_optimum([1, 0, 2], [1, 1, 1])


def test_parabola_vertex_of_an_exact_parabola():
    x = np.arange(-10, -1, dtype=float)
    opt = parabola_optimum(x, np.exp(0.3 * (x + 5.4) ** 2), window=2)
    assert opt.edge is None and opt.log2_lr == pytest.approx(-5.4, abs=1e-9)
    assert opt.grid_log2_lr == -5.0 and opt.loss == pytest.approx(1.0)
    lin = parabola_optimum(x, 2.0 + (x + 6.25) ** 2, log_loss=False)
    assert lin.log2_lr == pytest.approx(-6.25) and lin.loss == pytest.approx(2.0)


def test_parabola_edges_and_divergence():
    x = np.arange(5, dtype=float)
    assert "smallest" in parabola_optimum(x, [1, 2, 3, 4, 5]).edge
    assert "largest" in parabola_optimum(x, [5, 4, 3, 2, 1]).edge
    # the best rate is the largest that trained: the next one diverged
    assert "largest" in parabola_optimum(x, [5, 4, 3, np.inf, np.nan]).edge
    bracketed = parabola_optimum(x, [np.inf, 2, 1, 2, np.inf])  # the window stops at the diverged ends
    assert bracketed.edge is None and bracketed.log2_lr == pytest.approx(2.0, abs=1e-9)
    assert parabola_optimum(x, [np.inf] * 5).edge == "every run diverged"


def test_a_vertex_outside_its_window_is_clipped_and_flagged():
    x = np.arange(6, dtype=float)
    logs = np.array([1.8, 0.6, 1.8, 0.0, 0.3, 0.5])  # two valleys: the parabola fitted on x = 1..5 opens far right
    opt = parabola_optimum(x, np.exp(logs))
    a, b, _ = np.polyfit(x[1:], logs[1:], 2)  # the same least squares, unclipped
    assert opt.edge is None and opt.clipped and opt.window == (1.0, 5.0) and opt.grid_log2_lr == 3.0
    assert opt.vertex == pytest.approx(-b / (2 * a)) and opt.vertex > 5.0 and opt.log2_lr == 5.0
    assert not parabola_optimum(x, np.exp(0.3 * (x - 2.4) ** 2)).clipped
