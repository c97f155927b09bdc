"""Tests of lmech.instruments.features on hand-built cases whose answers are computed by hand.

Every expected number below follows from the stated matrices in a line of arithmetic (given in the
comments); the tolerances are float64 round-off (1e-12 to 1e-15).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lmech.errors import BadInput
from lmech.instruments.features import (
    capture_activations,
    coordinate_change,
    coordinate_size,
    effective_rank,
    participation_ratio,
    relative_weight_change,
    update_to_weight_rms,
)


def snapshots():
    # W0 = diag(3, 4): ||W0||_F = 5, ||W0||_2 = 4. dW = e1 e2^T: ||dW||_F = ||dW||_2 = 1.
    # b0 = (1, 2, 2): ||b0|| = 3; db = (0, 0, 1): ||db|| = 1.
    W0 = torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    b0 = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
    Wt = W0 + torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    bt = b0 + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    return {"w": W0, "b": b0}, {"w": Wt, "b": bt}


def test_relative_weight_change_hand_built():
    init, now = snapshots()
    fro = relative_weight_change(now, init)
    spec = relative_weight_change(now, init, norm="spectral")
    assert fro == pytest.approx({"w": 1 / 5, "b": 1 / 3}, abs=1e-15)
    assert spec == pytest.approx({"w": 1 / 4, "b": 1 / 3}, abs=1e-15)  # biases: Euclidean norm either way


def test_relative_weight_change_accepts_modules_and_flags_zero_init():
    lin0 = nn.Linear(2, 2).double()
    lin = nn.Linear(2, 2).double()
    with torch.no_grad():
        lin0.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 4.0]]))
        lin.weight.copy_(torch.tensor([[3.0, 1.0], [0.0, 4.0]]))
        lin0.bias.zero_()
        lin.bias.copy_(torch.tensor([0.5, 0.0]))
    change = relative_weight_change(lin, lin0)
    assert change["weight"] == pytest.approx(0.2, abs=1e-15)
    assert change["bias"] == math.inf  # moved away from a zero initialisation
    lin.bias.data.zero_()
    assert math.isnan(relative_weight_change(lin, lin0)["bias"])  # 0 / 0
    with pytest.raises(BadInput, match="norm"):
        relative_weight_change(lin, lin0, norm="nuclear")
    with pytest.raises(BadInput, match="current"):
        relative_weight_change({"weight": lin.weight}, lin0)


def test_update_to_weight_rms_hand_built():
    before, after = snapshots()
    # RMS(dW) = sqrt(1/4) = 0.5, RMS(W0) = sqrt(25/4) = 2.5 -> 0.2; RMS(db) = sqrt(1/3), RMS(b0) = sqrt(9/3)
    ratios = update_to_weight_rms(before, after)
    assert ratios == pytest.approx({"w": 0.2, "b": math.sqrt(1 / 3) / math.sqrt(3)}, abs=1e-15)


def known_model():
    # Linear with weight 2 I and zero bias, then ReLU: on x = [[1, -2], [3, -4]] the Linear outputs
    # [[2, -4], [6, -8]] (mean |.| = 20/4 = 5) and the ReLU outputs [[2, 0], [6, 0]] (mean = 8/4 = 2).
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU()).double()
    with torch.no_grad():
        model[0].weight.copy_(2 * torch.eye(2))
        model[0].bias.zero_()
    return model


X_KNOWN = torch.tensor([[1.0, -2.0], [3.0, -4.0]], dtype=torch.float64)


def test_coordinate_size_of_known_activations():
    sizes = coordinate_size(known_model(), X_KNOWN)
    assert sizes == pytest.approx({"0": 5.0, "1": 2.0}, abs=1e-15)
    assert coordinate_size(known_model(), X_KNOWN, ["1"], batch_size=1) == pytest.approx(
        {"1": 2.0}, abs=1e-15
    )


def test_coordinate_change_of_known_activations():
    model0, model = known_model(), known_model()
    with torch.no_grad():
        model[0].weight.copy_(3 * torch.eye(2))
    # Linear: 3x - 2x = x, mean |x| = 10/4 = 2.5; ReLU: relu(3x) - relu(2x) = relu(x) = [[1, 0], [3, 0]] -> 1
    assert coordinate_change(model, model0, X_KNOWN) == pytest.approx({"0": 2.5, "1": 1.0}, abs=1e-15)


def test_capture_activations_hooks_chunks_and_errors():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    acts = capture_activations(model, x)
    assert list(acts) == ["0", "1", "2"]  # the leaf modules, in order
    assert torch.equal(acts["2"], model(x).detach())
    assert torch.allclose(acts["1"], torch.tanh(model[0](x)).detach(), atol=0, rtol=0)
    chunked = capture_activations(model, x, ["0", "2"], batch_size=3)
    assert torch.allclose(chunked["0"], acts["0"], atol=1e-15) and torch.allclose(
        chunked["2"], acts["2"], atol=1e-15
    )
    with pytest.raises(BadInput, match="layers"):
        capture_activations(model, x, ["3"])
    with pytest.raises(BadInput, match="batch_size"):
        capture_activations(model, x, batch_size=0)

    act = nn.Tanh()  # one module called twice: ambiguous when asked for, skipped by default
    shared = nn.Sequential(nn.Linear(3, 3), act, nn.Linear(3, 3), act).double()
    with pytest.raises(BadInput, match="layers"):
        capture_activations(shared, x, ["1"])
    assert list(capture_activations(shared, x)) == ["0", "2"]


def matrix_with_singular_values(s: list[float], n: int, p: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
    return U[:, : len(s)] @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ V[:, : len(s)].T


@pytest.mark.parametrize("k", [1, 3, 7])
def test_effective_rank_and_participation_ratio_of_k_equal_singular_values(k):
    X = matrix_with_singular_values([2.5] * k, 20, 9, seed=k)
    # the remaining 9 - k singular values are round-off (~1e-15), contributing ~1e-14 to the entropy
    assert effective_rank(X) == pytest.approx(k, abs=1e-10)
    assert participation_ratio(X) == pytest.approx(k, abs=1e-10)


def test_effective_rank_unequal_spectrum_closed_form():
    X = matrix_with_singular_values([1.0, 3.0], 10, 4, seed=0)
    # p = (1/4, 3/4): erank = exp(-(1/4) ln(1/4) - (3/4) ln(3/4)); lambda = (1, 9): PR = 100 / 82
    assert effective_rank(X) == pytest.approx(
        math.exp(-0.25 * math.log(0.25) - 0.75 * math.log(0.75)), abs=1e-12
    )
    assert participation_ratio(X) == pytest.approx(100 / 82, abs=1e-12)
    # centring removes a constant offset direction: X + 1 has a rank-one extra component until centred
    Xc = X - X.mean(0)
    assert effective_rank(X + 5.0, center=True) == pytest.approx(effective_rank(Xc), abs=1e-10)
    with pytest.raises(BadInput, match="X"):
        effective_rank(torch.zeros(3, 3))
