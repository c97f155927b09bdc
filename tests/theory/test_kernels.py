"""Infinite-width NNGP/NTK (lmech.theory.kernels) against independent references.

References: Monte-Carlo over wide finite networks built from the same description by
lmech.models.mlp (output covariance; empirical NTK from explicit autograd Jacobians), scipy's adaptive
2-D integration of the Gaussian expectations, the parameter-by-parameter NTK of linear networks, and
the kernels' own invariants (PSD, symmetry).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, special, stats

from lmech.errors import BadInput
from lmech.models.mlp import Activation, mlp
from lmech.theory.kernels import activation_kernel, dot_product_kernels, kernels, mlp_kernels


def _inputs(n=4, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------ Monte-Carlo over finite networks

def _empirical_ntk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """J Jᵀ with J the (n, P) Jacobian of the scalar output, one backward pass per input."""
    params = list(model.parameters())
    rows = []
    for i in range(x.shape[0]):
        grads = torch.autograd.grad(model(x[i:i + 1]).sum(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jac = torch.stack(rows)
    return jac @ jac.T


def _assert_mc_agrees(samples: torch.Tensor, analytic: torch.Tensor, width: int):
    """Mean of per-seed estimates vs the analytic kernel, in units of sqrt(K_ii K_jj).

    Tolerance: 4.5 standard errors of the mean over seeds (each of the 10 distinct entries of a 4x4
    kernel; a correct kernel exceeds it with probability < 1e-3 even for the t-distribution with 15
    degrees of freedom) plus 4/width for the O(depth/width) finite-width bias of the mean (Hanin & Nica
    2019, arXiv 1909.05989: relative corrections of order depth/width, depth 2 here).
    """
    scale = torch.sqrt(torch.diagonal(analytic))
    norm = scale[:, None] * scale[None, :]
    err = (samples.mean(0) - analytic) / norm
    se = samples.std(0) / math.sqrt(samples.shape[0]) / norm
    assert torch.all(err.abs() <= 4.5 * se + 4.0 / width), (err, se)


@pytest.mark.parametrize("parametrization, activation", [("ntk", "relu"), ("standard", "tanh"),
                                                         ("ntk", "erf")])
def test_empirical_ntk_of_wide_networks_matches(parametrization, activation):
    x, width, seeds = _inputs(), 512, 16
    _, ntk = mlp_kernels(x, None, 2, activation, 1.3, 0.2, parametrization, width=width)
    samples = torch.stack([
        _empirical_ntk(mlp(3, width, 2, activation, 1.3, 0.2, parametrization, seed=s, dtype=torch.float64), x)
        for s in range(seeds)])
    _assert_mc_agrees(samples, ntk, width)


@pytest.mark.parametrize("parametrization, activation", [("ntk", "relu"), ("standard", "tanh"),
                                                         ("ntk", "erf")])
def test_output_covariance_of_wide_networks_matches_nngp(parametrization, activation):
    # Each seed: a width-512 network with 512 independent readout units; y yᵀ/512 estimates the NNGP.
    x, width, seeds, outputs = _inputs(), 512, 16, 512
    nngp, _ = mlp_kernels(x, None, 2, activation, 1.3, 0.2, parametrization, width=width)
    estimates = []
    for s in range(seeds):
        model = mlp(3, width, 2, activation, 1.3, 0.2, parametrization, out_features=outputs, seed=100 + s,
                    dtype=torch.float64)
        with torch.no_grad():
            y = model(x)
        estimates.append(y @ y.T / outputs)
    _assert_mc_agrees(torch.stack(estimates), nngp, width)


def test_empirical_ntk_fluctuations_shrink_like_one_over_sqrt_width():
    # Jacot et al. 2018 / Hanin & Nica 2019: the eNTK concentrates, its deviation from the limit is
    # O(1/sqrt(width)). RMS normalized deviation over 8 seeds x 10 entries at widths 64 and 1024 should
    # shrink by sqrt(16) = 4; the RMS estimates are good to ~10% each, so require a ratio in (2.5, 6.5).
    x = _inputs()
    _, ntk = mlp_kernels(x, None, 2, "relu", 1.3, 0.2)
    scale = torch.sqrt(torch.diagonal(ntk))
    rms = {}
    for width in (64, 1024):
        devs = [(_empirical_ntk(mlp(3, width, 2, "relu", 1.3, 0.2, seed=s, dtype=torch.float64), x) - ntk)
                / (scale[:, None] * scale[None, :]) for s in range(8)]
        rms[width] = torch.stack(devs).pow(2).mean().sqrt().item()
    assert 2.5 < rms[64] / rms[1024] < 6.5, rms


def test_standard_parametrization_ntk_grows_with_width_nngp_does_not():
    # Sohl-Dickstein et al. 2020: the SP NNGP is width-free; its NTK's weight terms scale with the
    # widths (t_W = n_in), so doubling the hidden width must raise the NTK, by less than 2x.
    x = _inputs()
    nngp_a, ntk_a = mlp_kernels(x, None, 2, "relu", 1.3, 0.2, "standard", width=100)
    nngp_b, ntk_b = mlp_kernels(x, None, 2, "relu", 1.3, 0.2, "standard", width=200)
    torch.testing.assert_close(nngp_a, nngp_b, rtol=1e-14, atol=0)
    ratio = torch.diagonal(ntk_b) / torch.diagonal(ntk_a)
    assert torch.all((ratio > 1.5) & (ratio < 2.0))


# ------------------------------------------------------------ Gaussian expectations vs scipy quadrature

def _integrated_expectation(f, q1, q2, c):
    """E[f(u, v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]) by scipy's adaptive nested quad (QUADPACK) in
    whitened coordinates u = √q1 z1, v = √q2 (ρ z1 + √(1-ρ²) z2), with breakpoints at the kinks u = 0
    and v = 0; |z| <= 12 (the Gaussian mass beyond is 4e-33)."""
    rho = c / math.sqrt(q1 * q2)
    perp = math.sqrt(1 - rho * rho)
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731

    def inner(z1):
        u = math.sqrt(q1) * z1
        kink = -rho * z1 / perp
        g = lambda z2: f(u, math.sqrt(q2) * (rho * z1 + perp * z2)) * phi(z2)  # noqa: E731
        return integrate.quad(g, -12, 12, points=[kink] if abs(kink) < 12 else None, epsabs=1e-14,
                              epsrel=1e-12, limit=200)[0]

    return integrate.quad(lambda z1: inner(z1) * phi(z1), -12, 12, points=[0.0], epsabs=1e-14,
                          epsrel=1e-12, limit=200)[0]


COVARIANCES = [(1.0, 1.0, 0.3), (0.7, 1.9, -0.8), (2.0, 0.5, 0.9)]


@pytest.mark.parametrize("q1, q2, c", COVARIANCES)
def test_arccosine_closed_form_matches_numerical_integration(q1, q2, c):
    # E[relu(u)relu(v)] by nested adaptive quadrature; E[relu'(u)relu'(v)] = P(u > 0, v > 0) = the bivariate
    # normal orthant probability from scipy's CDF (a third, independent method).
    k, k_dot = activation_kernel("relu", q1, q2, c)
    ref = _integrated_expectation(lambda u, v: max(u, 0) * max(v, 0), q1, q2, c)
    orthant = stats.multivariate_normal(mean=[0, 0], cov=[[q1, c], [c, q2]]).cdf([0, 0])  # P(u<0,v<0)
    # Tolerance: QUADPACK is asked for 1e-12 relative (1e-8 leaves room for its error estimate being
    # optimistic); scipy's bivariate normal CDF (Genz's algorithm) is accurate to ~1e-8.
    assert k.item() == pytest.approx(ref, rel=1e-8, abs=1e-10)
    assert k_dot.item() == pytest.approx(orthant, abs=1e-7)


@pytest.mark.parametrize("q1, q2, c", COVARIANCES)
def test_leaky_relu_and_erf_closed_forms_match_numerical_integration(q1, q2, c):
    a, b = 0.2, 1.5
    act = Activation("leaky_relu", negative_slope=a, positive_slope=b)
    leaky = lambda t: a * min(t, 0) + b * max(t, 0)  # noqa: E731
    leaky_dot = lambda t: b if t > 0 else a  # noqa: E731
    k, k_dot = activation_kernel(act, q1, q2, c)
    assert k.item() == pytest.approx(_integrated_expectation(lambda u, v: leaky(u) * leaky(v), q1, q2, c),
                                     rel=1e-8, abs=1e-10)
    assert k_dot.item() == pytest.approx(
        _integrated_expectation(lambda u, v: leaky_dot(u) * leaky_dot(v), q1, q2, c), rel=1e-8, abs=1e-10)
    erf_dot = lambda t: 2 / math.sqrt(math.pi) * math.exp(-t * t)  # noqa: E731
    k, k_dot = activation_kernel("erf", q1, q2, c)
    assert k.item() == pytest.approx(
        _integrated_expectation(lambda u, v: special.erf(u) * special.erf(v), q1, q2, c), rel=1e-8, abs=1e-10)
    assert k_dot.item() == pytest.approx(
        _integrated_expectation(lambda u, v: erf_dot(u) * erf_dot(v), q1, q2, c), rel=1e-8, abs=1e-10)


def test_depth_one_relu_mlp_kernels_match_hand_recursion_with_integrated_expectations():
    # Depth 1, NTK parametrization, written out by hand (Jacot et al. 2018, Theorem 1):
    # Σ1 = σw² x·x'/d + σb², Σ2 = σw² E[relu relu] + σb², Θ2 = Σ2 + σw² P(u>0, v>0) Σ1.
    sw, sb = 1.4, 0.3
    x = _inputs(2, 5, seed=3)
    nngp, ntk = mlp_kernels(x, None, 1, "relu", sw, sb)
    s1 = sw**2 * (x @ x.T).numpy() / 5 + sb**2
    q1, q2, c = s1[0, 0], s1[1, 1], s1[0, 1]
    e_relu = _integrated_expectation(lambda u, v: max(u, 0) * max(v, 0), q1, q2, c)
    p_pos = _integrated_expectation(lambda u, v: float(u > 0 and v > 0), q1, q2, c)
    sigma2 = sw**2 * e_relu + sb**2
    assert nngp[0, 1].item() == pytest.approx(sigma2, rel=1e-8)
    assert ntk[0, 1].item() == pytest.approx(sigma2 + sw**2 * p_pos * c, rel=1e-8)


# ------------------------------------------------------------------- quadrature vs closed forms

def _random_covariances(n=60, scale=1.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    q1 = scale * (torch.rand(n, generator=g, dtype=torch.float64) + 0.3)
    q2 = scale * (torch.rand(n, generator=g, dtype=torch.float64) + 0.3)
    c = (2 * torch.rand(n, generator=g, dtype=torch.float64) - 1) * torch.sqrt(q1 * q2)
    return q1, q2, c


def test_quadrature_matches_erf_closed_form_to_round_off():
    # erf is entire and the Gaussian weight is the Hermite weight: 64 nodes per axis are exact to
    # ~1e-15 for variances <= 1.3 (measured); 1e-10 leaves room for other BLAS summation orders.
    q1, q2, c = _random_covariances()
    closed = activation_kernel("erf", q1, q2, c, method="closed")
    quad = activation_kernel("erf", q1, q2, c, method="quadrature", quadrature_points=64)
    for a, b in zip(closed, quad):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_quadrature_of_relu_converges_to_the_closed_form_at_the_kinks_rate():
    # relu has a kink (relu' a jump) on the line v = 0, which tensor-product Gauss–Hermite does not
    # resolve: the error decays only algebraically. Measured at 64 nodes: 1.5e-3 in E[φφ], 2.7e-2 in
    # E[φ'φ']; tolerances 5e-3 and 6e-2, and the error must shrink from 16 to 128 nodes.
    q1, q2, c = _random_covariances()
    closed = activation_kernel("relu", q1, q2, c)
    errors = {}
    for n in (16, 64, 128):
        quad = activation_kernel("relu", q1, q2, c, method="quadrature", quadrature_points=n)
        errors[n] = [(a - b).abs().max().item() for a, b in zip(closed, quad)]
    assert errors[64][0] < 5e-3 and errors[64][1] < 6e-2
    assert errors[128][0] < errors[16][0] / 4 and errors[128][1] < errors[16][1]


@pytest.mark.parametrize("name, fn, dfn", [
    ("tanh", math.tanh, lambda t: 1 - math.tanh(t) ** 2),
    ("gelu", lambda t: t * 0.5 * (1 + math.erf(t / math.sqrt(2))),
     lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2))) + t * math.exp(-t * t / 2) / math.sqrt(2 * math.pi)),
])
def test_quadrature_of_smooth_activations_matches_numerical_integration(name, fn, dfn):
    # Smooth integrands: Gauss–Hermite converges spectrally; with 128 nodes per axis it agrees with
    # adaptive QUADPACK (1e-12 relative) to 1e-8. (At the default 64 nodes tanh's φ' = 1 - tanh², with
    # poles at ±iπ/2, is only good to ~2e-6 at unit variance: measured, and stated in the docstring.)
    for q1, q2, c in COVARIANCES:
        k, k_dot = activation_kernel(name, q1, q2, c, quadrature_points=128)
        assert k.item() == pytest.approx(_integrated_expectation(lambda u, v: fn(u) * fn(v), q1, q2, c),
                                         rel=1e-8, abs=1e-10)
        assert k_dot.item() == pytest.approx(_integrated_expectation(lambda u, v: dfn(u) * dfn(v), q1, q2, c),
                                             rel=1e-8, abs=1e-10)


def test_callable_activation_uses_autograd_derivative_and_matches_named():
    x = _inputs(6, 4)
    named = mlp_kernels(x, None, 2, "tanh", 1.2, 0.1)
    custom = mlp_kernels(x, None, 2, lambda t: torch.tanh(t), 1.2, 0.1)
    for a, b in zip(named, custom):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


# ------------------------------------------------------------------------ linear networks, exactly

@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
def test_identity_activation_matches_parameter_by_parameter_linear_formula(parametrization):
    # Deep linear network, L hidden layers of width n. Layer l (0..L) has input covariance
    # c_l = σw^{2l} q + σb² Σ_{k<l} σw^{2k} (q = x·x'/d) and sits below L - l layers, each multiplying
    # covariances of backpropagated signals by σw². Sum over parameters of ∂f ∂f':
    #   W_l: σw^{2(L-l)} · t_W(l) · c_l,   b_l: σw^{2(L-l)} · t_b,
    # with (t_W, t_b) = (σw², σb²) in NTK and (n_in(l), 1) in standard parametrization.
    sw, sb, depth, width, d = 1.3, 0.4, 3, 50, 4
    x = _inputs(5, d)
    q = (x @ x.T) / d
    nngp_ref = sw ** (2 * (depth + 1)) * q + sb**2 * sum(sw ** (2 * k) for k in range(depth + 1))
    ntk_ref = torch.zeros_like(q)
    for layer in range(depth + 1):
        c_l = sw ** (2 * layer) * q + sb**2 * sum(sw ** (2 * k) for k in range(layer))
        fan_in = d if layer == 0 else width
        t_w, t_b = (sw**2, sb**2) if parametrization == "ntk" else (fan_in, 1.0)
        ntk_ref += sw ** (2 * (depth - layer)) * (t_w * c_l + t_b)
    nngp, ntk = mlp_kernels(x, None, depth, "identity", sw, sb, parametrization, width=width)
    torch.testing.assert_close(nngp, nngp_ref, rtol=1e-13, atol=0)
    torch.testing.assert_close(ntk, ntk_ref, rtol=1e-13, atol=0)


# --------------------------------------------------------------------------- invariants and numerics

@pytest.mark.parametrize("activation, sw, sb", [("relu", math.sqrt(2), 0.0), ("erf", 1.5, 0.1),
                                                 ("tanh", 1.2, 0.05)])
def test_deep_kernels_are_psd_and_symmetric(activation, sw, sb):
    # Depth 50: correlations converge to 1 and the kernels become nearly rank one; clipping ρ and the
    # exact diagonal keep them PSD to round-off: min eigenvalue >= -1e-10 · max.
    x = _inputs(25, 6, seed=7)
    for k in mlp_kernels(x, None, 50, activation, sw, sb, quadrature_points=32):
        assert torch.isfinite(k).all()
        torch.testing.assert_close(k, k.T, rtol=0, atol=0)
        eig = torch.linalg.eigvalsh(k)
        assert eig[0] >= -1e-10 * eig[-1]


def test_cross_kernel_with_itself_equals_the_symmetric_kernel():
    # mlp_kernels(x, x) computes ρ_ii = 1 up to round-off (clipped), mlp_kernels(x, None) exactly 1;
    # arccos has slope ~1/sqrt(1-ρ) there, so 1e-16 in ρ gives ~1e-8 in θ: tolerance 1e-7 relative.
    x = _inputs(8, 5)
    for a, b in zip(mlp_kernels(x, x, 3, "relu", 1.4, 0.1), mlp_kernels(x, None, 3, "relu", 1.4, 0.1)):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=0)


def test_row_blocked_composition_equals_one_block(monkeypatch):
    # Large kernels are composed in row blocks; the blocks must reproduce the one-block result,
    # including the exact ρ = 1 of each self-pair at its offset (matmul round-off only: 1e-13).
    import lmech.theory.kernels as module

    x = _inputs(13, 4, seed=5)
    whole = mlp_kernels(x, None, 3, "relu", 1.4, 0.1)
    cross_whole = mlp_kernels(x, x[:5], 3, "tanh", 1.4, 0.1)
    monkeypatch.setattr(module, "_BLOCK", 30)  # 2 rows per block for 13 columns, on a thread pool
    for a, b in zip(mlp_kernels(x, None, 3, "relu", 1.4, 0.1), whole):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)
    for a, b in zip(mlp_kernels(x, x[:5], 3, "tanh", 1.4, 0.1), cross_whole):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def test_cross_kernel_blocks_match_joint_kernel():
    x1, x2 = _inputs(4, 3, seed=1), _inputs(6, 3, seed=2)
    joint = mlp_kernels(torch.cat([x1, x2]), None, 2, "gelu", 1.1, 0.2)
    cross = mlp_kernels(x1, x2, 2, "gelu", 1.1, 0.2)
    for j, c in zip(joint, cross):
        torch.testing.assert_close(c, j[:4, 4:], rtol=1e-12, atol=1e-14)


def test_dot_product_kernels_match_kernels_of_vectors_with_that_cosine():
    d, t = 7, torch.linspace(-0.95, 0.95, 9, dtype=torch.float64)
    e1, e2 = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    e1[0], e2[1] = 1.0, 1.0
    radius = math.sqrt(d * 1.7)  # |x|²/d = 1.7 = input_variance
    x1 = radius * e1[None, :]
    x2 = radius * (t[:, None] * e1 + torch.sqrt(1 - t[:, None] ** 2) * e2)
    for par in ("ntk", "standard"):
        ref = mlp_kernels(x1, x2, 2, "erf", 1.3, 0.2, par, width=64)
        got = dot_product_kernels(t, 2, "erf", 1.3, 0.2, par, input_variance=1.7, in_features=d, width=64)
        for a, b in zip(ref, got):
            torch.testing.assert_close(a[0], b, rtol=1e-12, atol=1e-14)


def test_kernels_of_a_description_equal_mlp_kernels():
    from lmech.models.mlp import mlp_layers

    x = _inputs(5, 3)
    layers = mlp_layers(2, None, "relu", 1.2, 0.3)
    for a, b in zip(kernels(layers, x), mlp_kernels(x, None, 2, "relu", 1.2, 0.3)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs, name", [
    (dict(x2=torch.zeros(3, 4)), "x2"),
    (dict(depth=-1), "depth"),
    (dict(depth=1.5), "depth"),
    (dict(activation="swish-ish"), "activation"),
    (dict(weight_std=-1.0), "weight_std"),
    (dict(bias_std=-0.1), "bias_std"),
    (dict(parametrization="mup"), "parametrization"),
    (dict(parametrization="standard"), "width"),
    (dict(x1=torch.zeros(3)), "x1"),
    (dict(x1=torch.tensor([[float("nan"), 1.0, 2.0]])), "x1"),
])
def test_bad_input_is_rejected_with_its_name(kwargs, name):
    args = dict(x1=torch.ones(2, 3), x2=None, depth=2, activation="relu", weight_std=1.0, bias_std=0.0,
                parametrization="ntk")
    args.update(kwargs)
    with pytest.raises(BadInput) as err:
        mlp_kernels(**args)
    assert err.value.name == name


def test_activation_must_follow_a_dense_layer():
    from lmech.models.mlp import Dense

    with pytest.raises(BadInput, match="after a Dense"):
        kernels([Activation("relu"), Dense(1)], torch.ones(2, 3))
