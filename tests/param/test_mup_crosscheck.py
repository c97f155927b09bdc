"""lmech's μP against microsoft/mup (the ``bench`` extra): same MLP, same initial weights, 3 Adam steps.

mup: ``MuReadout`` as the last layer, ``set_base_shapes(model, base)`` (rescales the readout and the
biases), ``MuAdam``. lmech: the same network with a plain ``nn.Linear`` readout, ``parametrize(model,
"mup", base=...)`` and ``torch.optim.Adam`` on ``p.param_groups``. The coordinates (every layer's
activations on a batch, and the parameters) must agree within 1e-6 (float32 arithmetic of the same
operations in a different order: a few ulps of values O(1)). Skipped when mup is not installed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

mup = pytest.importorskip("mup", reason="microsoft/mup is not installed (pip install 'lmech[bench]')")

D_IN, D_OUT, BASE, WIDTH = 12, 5, 32, 256


def layers(width: int, readout_cls) -> nn.Sequential:
    return nn.Sequential(nn.Linear(D_IN, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         readout_cls(width, D_OUT))


def activations(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for layer in model:
        x = layer(x)
        out.append(x.detach())
    return out


def test_same_coordinates_as_mup_after_three_adam_steps():
    gen = torch.Generator().manual_seed(0)
    ours = layers(WIDTH, nn.Linear)
    with torch.no_grad():  # a standard init from an explicit generator (torch's default scale)
        for p in ours.parameters():
            fan_in = p.shape[-1] if p.ndim > 1 else ours[0].in_features
            p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
    theirs = layers(WIDTH, mup.MuReadout)
    theirs.load_state_dict(ours.state_dict())
    mup.set_base_shapes(theirs, layers(BASE, mup.MuReadout), delta=layers(2 * BASE, mup.MuReadout))
    from lmech.param import parametrize

    p = parametrize(ours, "mup", base=layers(BASE, nn.Linear), delta=layers(2 * BASE, nn.Linear))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-7)  # the same μP init
    lr = 1e-2
    # eps=None: one ε for every group, as MuAdam has: mup does not scale Adam's ε at all. lmech's μP
    # scales it like each parameter's gradient entries (1/m_N on every weight and width-n bias, the
    # readout bias kept: lmech.param.presets, measured by test_eps_scaling.py), so with ε set the two
    # differ wherever a gradient entry is near ε
    opt_ours = torch.optim.Adam(p.param_groups(lr, "adam", eps=None), lr=lr)
    opt_theirs = mup.MuAdam(theirs.parameters(), lr=lr)
    x = torch.randn(32, D_IN, generator=gen)
    y = torch.randint(0, D_OUT, (32,), generator=gen)
    start = ours(x).detach()
    for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert (ours(x).detach() - start).abs().max() > 1e-2  # the steps moved the outputs
    for a, b in zip(activations(ours, x), activations(theirs, x)):
        assert (a - b).abs().max() <= 1e-6
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert (a - b).abs().max() <= 1e-6
