"""Monitor: observing must not perturb training; probes record what they claim.

The reference for "no perturbation" is the same training run without a monitor: parameters must be
bit-identical (torch.equal), with dropout so that any RNG draw by an observer would show.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch
from test_curvature import dense_hessian
from torch import nn

from lmech.errors import BadInput
from lmech.instruments.monitor import (
    GradNormProbe,
    HessianTraceProbe,
    LossProbe,
    Monitor,
    ParamNormProbe,
    hessian_eigenvalues_probe,
    preconditioned_sharpness_probe,
    sharpness_probe,
)


def noisy_probe(context):
    """A careless user probe: draws from every global RNG, calls backward, switches to train mode."""
    context.model.train()
    torch.rand(3)
    np.random.rand(3)  # noqa: NPY002 - the legacy global generator is what the monitor must protect
    random.random()
    context.loss_fn(context.model(context.inputs), context.targets).backward()
    return {"noise": float(torch.randn(()))}


def train(attach: bool, optimizer: str = "sgd", steps: int = 30):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    loss_fn = nn.CrossEntropyLoss()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        probes = [
            LossProbe(),
            GradNormProbe(),
            ParamNormProbe(),
            sharpness_probe(k=2),
            HessianTraceProbe(),
            noisy_probe,
        ]
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        probes = [LossProbe(), preconditioned_sharpness_probe(), hessian_eigenvalues_probe(k=2), noisy_probe]
    monitor = Monitor(model, loss_fn, (x[:32], y[:32]), probes=probes, every=5) if attach else None
    model.train()
    grads_seen = []
    for step in range(steps):
        idx = torch.randint(0, 64, (16,))
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        if monitor is not None:
            before = [(p.grad, p.grad.clone()) for p in model.parameters()]
            monitor.step(step, optimizer=opt)
            # the same .grad tensor objects, with the same values, are back in place
            grads_seen.append(all(p.grad is g and torch.equal(g, v) for p, (g, v) in zip(model.parameters(), before)))
        np.random.rand()  # noqa: NPY002 - the loop itself uses numpy's global RNG too
        opt.step()
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    return params, monitor, grads_seen, model


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_trajectory_bit_identical_with_and_without_monitor(optimizer):
    np.random.seed(0)  # noqa: NPY002
    reference, _, _, _ = train(False, optimizer)
    np.random.seed(0)  # noqa: NPY002
    observed, monitor, grads_seen, model = train(True, optimizer)
    assert torch.equal(reference, observed)
    assert all(grads_seen)
    assert model.training and all(m.training for m in model.modules())
    frame = monitor.frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["step"]) == [0, 5, 10, 15, 20, 25]
    assert frame["loss"].notna().all()


def test_probe_values_match_direct_computations():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Dropout(0.2), nn.Linear(5, 2)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    loss_fn = nn.MSELoss()
    monitor = Monitor(
        model, loss_fn, (x, y), probes=[LossProbe(), GradNormProbe(), sharpness_probe(k=1, tol=1e-10)], every=1
    )
    row = monitor.step(0, lr=0.05)
    model.eval()  # the probes see the eval-mode (dropout-free) network
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert row["loss"] == pytest.approx(float(loss.detach()), rel=1e-12)
    assert row["grad_norm"] == pytest.approx(float(torch.cat([g.flatten() for g in grads]).norm()), rel=1e-12)
    top = float(torch.linalg.eigvalsh(dense_hessian(model, loss_fn, x, y)).max())
    assert row["lambda_1"] == pytest.approx(top, rel=1e-8)
    assert row["threshold"] == pytest.approx(2 / 0.05, rel=1e-15)


class ListSink:
    def __init__(self):
        self.rows = []

    def append(self, series, row):
        self.rows.append((series, row))


def test_schedule_sink_and_frame():
    model = nn.Linear(2, 1)
    x, y = torch.randn(8, 2), torch.randn(8, 1)
    sink = ListSink()
    monitor = Monitor(model, nn.MSELoss(), (x, y), probes=[LossProbe()], every=lambda s: s in (1, 4), sink=sink)
    rows = [monitor.step(s) for s in range(6)]
    assert [r is not None for r in rows] == [False, True, False, False, True, False]
    assert [(s, r["step"]) for s, r in sink.rows] == [("monitor", 1), ("monitor", 4)]
    assert list(monitor.frame().columns) == ["step", "loss"]
    assert Monitor(model, nn.MSELoss(), (x, y)).frame().columns.tolist() == ["step"]


def test_train_mode_restores_batchnorm_buffers():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    before = [b.clone() for b in model.buffers()]
    monitor = Monitor(model, nn.MSELoss(), (x, y), probes=[LossProbe()], mode="train")
    monitor.step(0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))


def test_bad_inputs():
    model = nn.Linear(3, 2)
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    loss_fn = nn.CrossEntropyLoss()
    with pytest.raises(BadInput, match="targets"):
        Monitor(model, loss_fn, (x, y[:7]))
    with pytest.raises(BadInput, match="inputs"):
        Monitor(model, loss_fn, (torch.randn(10, 4), y))
    with pytest.raises(BadInput, match="probe_batch"):
        Monitor(model, loss_fn, x)
    with pytest.raises(BadInput, match="every"):
        Monitor(model, loss_fn, (x, y), every=0)
    with pytest.raises(BadInput, match="probes"):
        Monitor(model, loss_fn, (x, y), probes=["loss"])
    with pytest.raises(BadInput, match="sink"):
        Monitor(model, loss_fn, (x, y), sink=object())
    clash = Monitor(model, loss_fn, (x, y), probes=[LossProbe(), LossProbe()])
    with pytest.raises(BadInput, match="probes"):
        clash.step(0)
    frozen = Monitor(nn.Linear(3, 2).requires_grad_(False), loss_fn, (x, y), probes=[sharpness_probe()])
    with pytest.raises(BadInput, match="model"):
        frozen.step(0)
