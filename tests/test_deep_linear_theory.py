"""Deep-linear theory (lmech.theory.deep_linear) against independent references.

References: the closed form of Saxe et al. 2014 eq. 7 against a numerical ODE integration of the same
equation; half-learning times by quadrature against the crossing time of the integrated ODE; the
loss-convention factor c against autograd gradients of the actual losses.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmech.errors import BadInput
from lmech.theory import deep_linear as dl

S = [3.0, 2.0, 1.0, 0.5]


def test_closed_form_matches_numerical_ode():
    # The ODE is integrated in log-space with rtol 1e-11; u <= 3, so 1e-8 absolute leaves 3 decades
    # of margin over the integrator's error while any algebra slip in the closed form shows up as O(1e-2).
    t = np.linspace(0.0, 12.0, 400)
    for u0 in (1e-2, 1e-4, 1e-6):
        closed = dl.two_layer_closed_form(t, S, u0)
        numeric = dl.mode_ode(t, S, u0, depth=2)
        assert np.max(np.abs(closed - numeric)) < 1e-8


def test_closed_form_limits():
    # u(0) = u0 exactly and u(∞) = s: the boundary conditions of eq. 7.
    u = dl.two_layer_closed_form(np.array([0.0, 1e3]), S, 1e-3)
    np.testing.assert_allclose(u[0], 1e-3, rtol=1e-14)
    np.testing.assert_allclose(u[1], S, rtol=1e-12)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_half_learning_time_matches_ode_crossing(depth):
    # Quadrature (or the depth-2 closed form) vs the time at which the integrated ODE crosses s/2,
    # sampled on a grid of step 1e-3 and linearly interpolated: interpolation error ~ (1e-3)^2 · u'' / u'
    # which is < 1e-5 relative here; 1e-5 is the tolerance.
    u0 = 1e-3
    predicted = dl.half_learning_time(S, u0, depth)
    t = np.arange(0.0, 1.2 * predicted.max(), 1e-3)
    u = dl.mode_ode(t, S, u0, depth)
    crossing = np.array([dl.crossing_time(t, u[:, i], s / 2) for i, s in enumerate(S)])
    np.testing.assert_allclose(crossing, predicted, rtol=1e-5)


def test_depth_two_half_time_formula():
    # t½ = ln(s/u0 − 1)/(2s): solve u(t½) = s/2 by substitution into the closed form.
    t_half = dl.half_learning_time(S, 1e-3, 2)
    u = dl.two_layer_closed_form(t_half, S, 1e-3)
    np.testing.assert_allclose(np.diag(u), np.asarray(S) / 2, rtol=1e-12)


def test_stronger_modes_learn_first_and_deeper_is_slower_from_small_init():
    t2 = dl.half_learning_time(S, 1e-3, 2)
    t3 = dl.half_learning_time(S, 1e-3, 3)
    assert np.all(np.diff(t2) > 0) and np.all(np.diff(t3) > 0)
    assert np.all(t3 > t2)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("half", [True, False])
def test_loss_scale_matches_autograd(reduction, half):
    # c is defined by: gradient of the configured loss = c × gradient of ½·mean‖y − Wx‖².
    # Reference: autograd of both losses on random data; exact up to float64 round-off.
    gen = torch.Generator().manual_seed(0)
    n, d_in, d_out = 20, 5, 3
    x, y = torch.randn(n, d_in, generator=gen, dtype=torch.float64), torch.randn(n, d_out, generator=gen,
                                                                                dtype=torch.float64)
    w = torch.randn(d_out, d_in, generator=gen, dtype=torch.float64, requires_grad=True)
    per_example = (x @ w.T - y).pow(2).sum(1)
    loss = (0.5 if half else 1.0) * (per_example.mean() if reduction == "mean" else per_example.sum())
    (g,) = torch.autograd.grad(loss, w)
    (g_ref,) = torch.autograd.grad(0.5 * (x @ w.T - y).pow(2).sum(1).mean(), w)
    c = dl.loss_scale(n, reduction, half)
    torch.testing.assert_close(g, c * g_ref, rtol=1e-12, atol=0)
    assert dl.time_constant(0.01, n, reduction, half) == pytest.approx(1.0 / (c * 0.01), rel=1e-15)


def test_bad_inputs():
    with pytest.raises(BadInput, match="depth"):
        dl.half_learning_time(S, 1e-3, 1)
    with pytest.raises(BadInput, match="u0"):
        dl.mode_trajectories(np.linspace(0, 1, 3), S, 0.3, 2)  # u0 >= s_min / 2
    with pytest.raises(BadInput, match="lr"):
        dl.time_constant(-1.0, 10)
    with pytest.raises(BadInput, match="reduction"):
        dl.loss_scale(10, "median")
