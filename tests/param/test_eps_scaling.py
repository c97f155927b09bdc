"""Adam's ε must scale like the gradient entries it is added to: measured, per role and preset.

Adam divides by :math:`\\sqrt{\\hat v} + \\epsilon`; :math:`\\sqrt{\\hat v}` is the size of the parameter's
gradient entries, so a width-transferable ε scales with width as they do (Everett et al. 2024, arXiv
2407.05872, §4.3; Dey et al. 2025, arXiv 2505.01618, eq. 40). The reference here is the network
itself: the mean |gradient entry| of every parameter at init, at widths 64, 128, 256, 512, 1024 (MLP
16-n-n-4, tanh, cross-entropy on 64 Gaussian inputs), fitted by least squares in log2-log2; the slope
must equal the slope of the preset's ε scale (``p.table[name].eps``) within 0.15. Measured at seeds
0, 1, 2: largest deviation 0.08 (the input layer's bias, μP, seed 0: −0.92 against −1). The
tolerance separates every alternative rule: the rule lmech had before (input and readout ε unscaled
under μP: exponent 0 where the gradient's is −1), mup's (no ε scaling at all), NTK's exponents (−½)
against μP's (−1) and Table 3's readout (0) against Table 8's (−1) all differ by 0.5 or more.

Depth (Depth-μP α = ½, CompleteP α = 1): a residual MLP of width 64 at depths 2, 4, 8, 16 (base depth
2); the branch weights' mean |gradient| over all blocks, divided by the input layer's (which no depth
rule touches, so the loss's own depth dependence cancels), has log-log slope −α, the slope of ε's
depth factor :math:`m_L^{-\\alpha}`, within 0.2 (largest deviation 0.15 at seeds 0-2; α = ½ and α = 1 are
0.5 apart). The biases of the branches scatter more (±0.3: their gradient is a batch mean of
:math:`\\partial L/\\partial h`) and are not tested by depth.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from lmech.models import ResidualMLP
from lmech.param import parametrize

D_IN, D_OUT = 16, 4
WIDTHS = (64, 128, 256, 512, 1024)
DEPTHS = (2, 4, 8, 16)


def mlp(width: int, device: str = "cpu") -> nn.Sequential:
    return nn.Sequential(nn.Linear(D_IN, width, device=device), nn.Tanh(), nn.Linear(width, width, device=device),
                         nn.Tanh(), nn.Linear(width, D_OUT, device=device))


def data(seed: int):
    gen = torch.Generator().manual_seed(100 + seed)
    return torch.randn(64, D_IN, generator=gen), torch.randint(0, D_OUT, (64,), generator=gen)


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log2(xs), np.log2(ys), 1)[0])


def width_slopes(preset: str, seed: int) -> dict[str, tuple[float, float]]:
    """name -> (slope of mean |grad| in width, slope of the ε scale in width)."""
    x, y = data(seed)
    grads: dict[str, list[float]] = {}
    eps: dict[str, list[float]] = {}
    for width in WIDTHS:
        torch.manual_seed(1000 * seed + width)
        net = mlp(width)
        p = parametrize(net, preset, base=mlp(64, "meta"), delta=mlp(128, "meta"))
        nn.functional.cross_entropy(net(x), y).backward()
        for name, q in net.named_parameters():
            grads.setdefault(name, []).append(q.grad.abs().mean().item())
            eps.setdefault(name, []).append(p.table[name].eps)
    return {name: (slope(WIDTHS, grads[name]), slope(WIDTHS, eps[name])) for name in grads}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("preset", ["mup", "mup-table3", "mean-field", "ntk"])
def test_eps_scales_like_the_gradient_entries_in_width(preset, seed):
    slopes = width_slopes(preset, seed)
    for name, (grad, eps) in slopes.items():
        assert abs(grad - eps) <= 0.15, (preset, seed, name, grad, eps)
    # the measurement can tell the rules apart: μP's input layer and Table 8's readout have gradient
    # exponent -1 (an unscaled ε, exponent 0, would fail), Table 3's readout 0, NTK's input -1/2
    expected = {"mup": (-1, -1), "mup-table3": (-1, 0), "mean-field": (-1, -1), "ntk": (-0.5, -0.5)}[preset]
    assert (slopes["0.weight"][1], slopes["4.weight"][1]) == pytest.approx(expected, abs=1e-9)
    assert abs(slopes["4.bias"][1]) < 1e-9  # the readout bias's gradient dL/df is Θ(1): ε kept


def test_the_previous_rule_is_refuted_by_the_measurement():
    """lmech's μP before: ε/m_N on hidden layers only, input layer and readout unscaled. The measured
    exponents of the input weights and the Table-8 readout weights are −1, not 0."""
    slopes = width_slopes("mup", 0)
    for name in ("0.weight", "4.weight"):
        assert abs(slopes[name][0] - 0.0) > 0.5, (name, slopes[name])


@pytest.mark.parametrize("preset,alpha", [("depth-mup", 0.5), ("completep", 1.0)])
def test_eps_depth_factor_is_the_branch_gradients(preset, alpha):
    for seed in (0, 1, 2):
        x, y = data(seed)
        ratios: dict[str, list[float]] = {}
        eps = []
        for depth in DEPTHS:
            net = ResidualMLP(D_IN, D_OUT, width=64, depth=depth, parametrization=preset, base_width=64, base_depth=2,
                              seed=seed)
            nn.functional.cross_entropy(net(x), y).backward()
            ref = net.input.weight.grad.abs().mean().item()
            pooled: dict[str, list[float]] = {}
            for name, q in net.named_parameters():
                if name.startswith("blocks.") and name.endswith("weight"):
                    pooled.setdefault(re.sub(r"blocks\.\d+\.", "", name), []).append(q.grad.abs().mean().item())
            for kind, values in pooled.items():
                ratios.setdefault(kind, []).append(float(np.mean(values)) / ref)
            eps.append(net.param_table["blocks.0.fc1.weight"].eps / net.param_table["input.weight"].eps)
        assert slope(DEPTHS, eps) == pytest.approx(-alpha, abs=1e-9)
        for kind, values in ratios.items():
            assert abs(slope(DEPTHS, values) + alpha) <= 0.2, (preset, seed, kind, slope(DEPTHS, values))
            assert math.isfinite(values[0])
