r"""Infinite-width NNGP and NTK of fully connected networks, composed layer by layer.

The kernels are read from the same description (:class:`lmech.models.mlp.Dense`,
:class:`lmech.models.mlp.Activation`) that :class:`lmech.models.mlp.MLP` builds a finite network from,
the neural-tangents ``stax`` design (Novak et al. 2020, arXiv 1912.02803): each layer maps the pair
(NNGP :math:`\Sigma`, NTK :math:`\Theta`) of its input to that of its output.

Input. For inputs :math:`x, x' \in \mathbb R^d`: :math:`\Sigma^{(0)} = x\cdot x'/d`, :math:`\Theta^{(0)} = 0`.

Dense (gains :math:`g_W, g_b, t_W, t_b` from :mod:`lmech.param.parametrization`):

.. math::  \Sigma \leftarrow g_W\,\Sigma + g_b, \qquad \Theta \leftarrow t_W\,\Sigma + t_b + g_W\,\Theta

(NTK parametrization: :math:`g_W = t_W = \sigma_w^2`, :math:`g_b = t_b = \sigma_b^2`, Jacot et al. 2018,
arXiv 1806.07572, Theorem 1; Lee et al. 2018, arXiv 1711.00165, eq. 4; standard parametrization:
:math:`t_W = n_{in}`, :math:`t_b = 1`, neural-tangents' convention of Sohl-Dickstein et al. 2020,
arXiv 2001.07301, which needs the finite widths).

Activation φ, with :math:`(u, v)` centered Gaussian of covariance
:math:`\begin{pmatrix} q_1 & c \\ c & q_2 \end{pmatrix}` read from the pre-activation NNGP:

.. math::  \Sigma \leftarrow \mathbb E[\varphi(u)\varphi(v)], \qquad
           \Theta \leftarrow \mathbb E[\varphi'(u)\varphi'(v)]\;\Theta .

Closed forms, with :math:`\rho = c/\sqrt{q_1 q_2}` clipped to [-1, 1] and :math:`\theta = \arccos\rho`:

* ReLU, the arc-cosine kernels of Cho & Saul 2009 (NIPS, "Kernel methods for deep learning", eq. 6 with
  n = 1 and n = 0): :math:`\mathbb E[\varphi\varphi] = \frac{\sqrt{q_1q_2}}{2\pi}(\sin\theta + (\pi-\theta)
  \cos\theta)`, :math:`\mathbb E[\varphi'\varphi'] = \frac{\pi-\theta}{2\pi}`;
* leaky ReLU :math:`\varphi(x) = a\min(x,0) + b\max(x,0) = b\,\mathrm{relu}(x) - a\,\mathrm{relu}(-x)`:
  by bilinearity and :math:`(u,-v)` having angle :math:`\pi-\theta`,
  :math:`\mathbb E[\varphi\varphi] = \frac{\sqrt{q_1q_2}}{2\pi}\big((a^2+b^2)
  (\sin\theta+(\pi-\theta)\cos\theta) - 2ab(\sin\theta - \theta\cos\theta)\big)`,
  :math:`\mathbb E[\varphi'\varphi'] = \frac{(a^2+b^2)(\pi-\theta) + 2ab\,\theta}{2\pi}`
  (neural-tangents' ``ABRelu``);
* erf, Williams 1997 (NIPS, "Computing with infinite networks", eq. 11):
  :math:`\mathbb E[\varphi\varphi] = \frac{2}{\pi}\arcsin\frac{2c}{\sqrt{(1+2q_1)(1+2q_2)}}`, and from
  :math:`\mathbb E[e^{-u^2-v^2}] = \det(I + 2C)^{-1/2}`:
  :math:`\mathbb E[\varphi'\varphi'] = \frac{4}{\pi}\big((1+2q_1)(1+2q_2) - 4c^2\big)^{-1/2}`;
* identity: :math:`c` and 1.

Any other elementwise φ (tanh, GELU, SiLU, a callable) is integrated by tensor-product Gauss–Hermite
quadrature on the bivariate Gaussian, :math:`u = \sqrt{q_1}z_1`,
:math:`v = \sqrt{q_2}(\rho z_1 + \sqrt{1-\rho^2}z_2)`, for both φ and φ' (φ' by autograd). Accuracy
(``quadrature_points`` per axis, default 64): spectral for smooth φ, ~1e-15 for erf and ~2e-6 for
tanh's φ' at unit variance, degrading as the pre-activation variance grows (φ(√q z) sharpens);
algebraic only at kinks (relu by quadrature: ~2e-3 in E[φφ], ~3e-2 in E[φ'φ'] at 64 nodes).
Raise ``quadrature_points`` (at most 256) for more.

Numerics: float64 throughout; each activation works with the normalized correlation ρ clipped to
[-1, 1] (and ρ = 1 exactly on the diagonal of a kernel of a set with itself), which keeps deep
compositions (depth 50 and more) PSD up to round-off.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lmech.errors import BadInput
from lmech.models.mlp import Activation, Dense, mlp_layers
from lmech.param.parametrization import Parametrization, get_parametrization

__all__ = [
    "CLOSED_FORM",
    "activation_kernel",
    "kernels",
    "mlp_kernels",
    "dot_product_kernels",
]

#: Activations whose Gaussian expectations have a closed form here; the rest use quadrature.
CLOSED_FORM = ("relu", "leaky_relu", "erf", "identity")

# Elements of (pairs × nodes²) evaluated at once by the quadrature (memory ≈ 8 bytes × 4 × this).
_QUADRATURE_CHUNK = 1 << 21
# Kernel entries composed at once through all layers (a row block, 1 MB per matrix): cache-resident
# elementwise passes take about half the time of whole-matrix ones at 2000 x 2000 (measured). Blocks
# run on a pool of torch.get_num_threads() Python threads (torch releases the GIL); one block after
# the other with multi-threaded operations instead was up to 50x slower on a busy machine (measured).
_BLOCK = 1 << 17


@dataclass
class _State:
    """Per-unit kernels of the current representation: NNGP (n1, n2), NTK (n1, n2), the NNGP diagonals
    of each set, the representation's width (None = infinite), and, when the rows are points of the
    column set itself (rows r0.. of x2 = x1), the offset r0 of their self-pairs (i, r0 + i)."""

    nngp: Tensor
    ntk: Tensor
    var1: Tensor
    var2: Tensor
    width: int | None
    self_pairs: int | None


# ---------------------------------------------------------------- Gaussian expectations of activations

def _correlation(s1: Tensor, s2: Tensor, c: Tensor) -> Tensor:
    """ρ = c / (s1 s2) clipped to [-1, 1], 0 where a standard deviation vanishes (s1, s2 broadcast)."""
    inv1 = torch.where(s1 > 0, 1.0 / torch.where(s1 > 0, s1, torch.ones_like(s1)), torch.zeros_like(s1))
    inv2 = torch.where(s2 > 0, 1.0 / torch.where(s2 > 0, s2, torch.ones_like(s2)), torch.zeros_like(s2))
    return (c * inv1).mul_(inv2).clamp_(-1.0, 1.0)


def _relu_like(s1: Tensor, s2: Tensor, rho: Tensor, a: float, b: float) -> tuple[Tensor, Tensor]:
    theta = torch.arccos(rho)
    sin = torch.sqrt((1.0 - rho * rho).clamp_(min=0.0))
    rest = math.pi - theta
    same = torch.addcmul(sin, rest, rho)            # 2π E[relu(u) relu(v)] / sqrt(q1 q2)
    if a == 0.0:                                    # b·relu: skip the mixed terms
        c = b * b / (2 * math.pi)
        return same.mul_(s1 * c).mul_(s2), rest.mul_(c)
    opposite = sin - theta * rho                    # 2π E[relu(u) relu(-v)] / sqrt(q1 q2)
    k = ((a * a + b * b) * same - 2 * a * b * opposite).mul_(s1 / (2 * math.pi)).mul_(s2)
    k_dot = ((a * a + b * b) * rest + 2 * a * b * theta) / (2 * math.pi)
    return k, k_dot


def _erf(q1: Tensor, q2: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    norm = (1 + 2 * q1) * (1 + 2 * q2)
    k = (2 / math.pi) * torch.arcsin(torch.clamp(2 * c / torch.sqrt(norm), -1.0, 1.0))
    k_dot = (4 / math.pi) / torch.sqrt(norm - 4 * c * c)
    return k, k_dot


def _hermite(points: int) -> tuple[Tensor, Tensor]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)  # weight exp(-z²/2)
    return (torch.as_tensor(nodes, dtype=torch.float64),
            torch.as_tensor(weights / math.sqrt(2 * math.pi), dtype=torch.float64))


def _value_and_derivative(act: Activation, x: Tensor) -> tuple[Tensor, Tensor]:
    fn = act.function
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = fn(x)
        if not isinstance(y, Tensor) or y.shape != x.shape:
            raise BadInput("activation", act.name,
                           "an elementwise torch callable (output shape = input shape)")
        (dy,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    if dy is None:  # a constant function
        dy = torch.zeros_like(x)
    return y.detach().to(torch.float64), dy.detach().to(torch.float64)


def _quadrature(act: Activation, scale1: Tensor, scale2: Tensor, rho: Tensor,
                points: int) -> tuple[Tensor, Tensor]:
    """E[φ(u)φ(v)], E[φ'(u)φ'(v)] for u = s1 z1, v = s2 (ρ z1 + sqrt(1-ρ²) z2), all inputs flat (P,)."""
    z, w = _hermite(points)
    out_k, out_dot = torch.empty_like(rho), torch.empty_like(rho)
    chunk = max(1, _QUADRATURE_CHUNK // (points * points))
    for start in range(0, rho.numel(), chunk):
        sl = slice(start, start + chunk)
        s1, s2, r = scale1[sl, None], scale2[sl, None], rho[sl, None]
        u = s1 * z                                                        # (P, i)
        along = (s2 * r) * z                                              # (P, i)
        across = (s2 * torch.sqrt(torch.clamp(1 - r * r, min=0.0))) * z   # (P, j)
        v = along[:, :, None] + across[:, None, :]                        # (P, i, j)
        fu, du = _value_and_derivative(act, u)
        fv, dv = _value_and_derivative(act, v)
        out_k[sl] = ((fu * w) * (fv @ w)).sum(-1)
        out_dot[sl] = ((du * w) * (dv @ w)).sum(-1)
    return out_k, out_dot


def activation_kernel(activation: str | Callable | Activation, q1, q2, cov, *, method: str = "auto",
                      quadrature_points: int = 64) -> tuple[Tensor, Tensor]:
    r"""Gaussian expectations :math:`(\mathbb E[\varphi(u)\varphi(v)], \mathbb E[\varphi'(u)\varphi'(v)])`.

    :math:`(u, v)` is centered Gaussian with variances ``q1``, ``q2`` and covariance ``cov`` (broadcast
    together). ``method``: ``"closed"`` (the closed forms of the module docstring, for relu, leaky_relu,
    erf, identity), ``"quadrature"`` (Gauss–Hermite with ``quadrature_points`` nodes per axis, any
    elementwise φ), or ``"auto"`` (closed form when there is one). The correlation is clipped to [-1, 1].
    """
    act = activation if isinstance(activation, Activation) else Activation(activation)
    if method not in ("auto", "closed", "quadrature"):
        raise BadInput("method", method, "'auto', 'closed' or 'quadrature'")
    _check_points(quadrature_points)
    closed = isinstance(act.fn, str) and act.fn in CLOSED_FORM
    if method == "closed" and not closed:
        raise BadInput("activation", act.name, f"one of {CLOSED_FORM} for method='closed'")
    q1, q2, cov = (torch.as_tensor(v, dtype=torch.float64) for v in (q1, q2, cov))
    if torch.any(q1 < 0) or torch.any(q2 < 0):
        raise BadInput("q1, q2", "negative variance", "variances >= 0")
    return _expectations(act, torch.sqrt(q1), torch.sqrt(q2), cov, method, quadrature_points)


def _expectations(act: Activation, s1: Tensor, s2: Tensor, cov: Tensor, method: str, points: int,
                  self_pairs: int | None = None) -> tuple[Tensor, Tensor]:
    """activation_kernel on standard deviations s1, s2 (broadcast against cov, not materialized)."""
    rho = _correlation(s1, s2, cov)
    if self_pairs is not None:  # pairs of a point with itself: exactly ρ = 1
        rho.diagonal(offset=self_pairs).fill_(1.0)
    if isinstance(act.fn, str) and act.fn in CLOSED_FORM and method != "quadrature":
        if act.fn == "relu":
            return _relu_like(s1, s2, rho, 0.0, 1.0)
        if act.fn == "leaky_relu":
            return _relu_like(s1, s2, rho, float(act.negative_slope), float(act.positive_slope))
        c = rho * s1 * s2
        if act.fn == "erf":
            return _erf(s1 * s1, s2 * s2, c)
        return c, torch.ones_like(rho)
    s1, s2, rho = torch.broadcast_tensors(s1, s2, rho)
    k, k_dot = _quadrature(act, s1.reshape(-1), s2.reshape(-1), rho.reshape(-1), points)
    return k.reshape(rho.shape), k_dot.reshape(rho.shape)


# ------------------------------------------------------------------------------ layer-by-layer kernels

def _dense(spec: Dense, state: _State) -> _State:
    g = spec.parametrization.kernel_gains(state.width, spec.weight_std, spec.bias_std)
    return _State(
        nngp=torch.mul(state.nngp, g.nngp_weight).add_(g.nngp_bias),
        ntk=torch.mul(state.nngp, g.ntk_weight).add_(g.ntk_bias).add_(state.ntk, alpha=g.nngp_weight),
        var1=g.nngp_weight * state.var1 + g.nngp_bias,
        var2=g.nngp_weight * state.var2 + g.nngp_bias,
        width=None if spec.width is None else int(spec.width),
        self_pairs=state.self_pairs,
    )


def _activation(spec: Activation, state: _State, points: int) -> _State:
    s1, s2 = torch.sqrt(state.var1), torch.sqrt(state.var2)
    k, k_dot = _expectations(spec, s1[:, None], s2[None, :], state.nngp, "auto", points,
                             self_pairs=state.self_pairs)
    var1 = _expectations(spec, s1, s1, state.var1, "auto", points)[0]
    var2 = _expectations(spec, s2, s2, state.var2, "auto", points)[0]
    return _State(k, k_dot.mul_(state.ntk), var1, var2, state.width, state.self_pairs)


def _check_points(points: int) -> None:
    # numpy's Hermite weights overflow beyond ~300 nodes
    if isinstance(points, bool) or not isinstance(points, numbers.Integral) or not 2 <= points <= 256:
        raise BadInput("quadrature_points", points, "an integer in [2, 256]")


def _check_layers(layers: Sequence, in_features: int | None) -> tuple:
    """Validate a description for the kernel recursion, before any work."""
    layers = tuple(layers)
    if not layers or not all(isinstance(spec, (Dense, Activation)) for spec in layers):
        raise BadInput("layers", layers,
                       "a non-empty sequence of lmech.models.mlp Dense and Activation specs")
    width, previous = in_features, None
    for index, spec in enumerate(layers):
        if isinstance(spec, Activation):
            if not isinstance(previous, Dense):
                raise BadInput(f"layers[{index}]", spec, "an Activation directly after a Dense layer (the "
                               "kernel recursion needs Gaussian pre-activations)")
        else:
            spec.parametrization.kernel_gains(width, spec.weight_std, spec.bias_std)
            width = spec.width
        previous = spec
    return layers


def _compose(layers: tuple, state: _State, points: int) -> tuple[Tensor, Tensor]:
    for spec in layers:
        state = _dense(spec, state) if isinstance(spec, Dense) else _activation(spec, state, points)
    return state.nngp, state.ntk


def _as_matrix(name: str, x) -> Tensor:
    if isinstance(x, Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise BadInput(name, type(x).__name__, "a 2-D array or tensor of numbers (n, d)") from err
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise BadInput(name, tuple(x.shape), "a 2-D array or tensor of shape (n, d) with n, d >= 1")
    if not torch.isfinite(x).all():
        raise BadInput(name, "non-finite entries", "finite inputs")
    return x


def kernels(layers: Sequence[Dense | Activation], x1, x2=None, *,
            quadrature_points: int = 64) -> tuple[Tensor, Tensor]:
    r"""NNGP and NTK of the infinite-width network described by ``layers``, between ``x1`` and ``x2``.

    ``layers`` is a description of :mod:`lmech.models.mlp` (each Activation directly after a Dense);
    hidden widths enter only in standard parametrization (see :mod:`lmech.param.parametrization`).
    ``x1`` (n1, d), ``x2`` (n2, d) or None (= x1). Returns two float64 tensors (n1, n2), per output unit.
    """
    _check_points(quadrature_points)
    x1 = _as_matrix("x1", x1)
    x2m = x1 if x2 is None else _as_matrix("x2", x2)
    if x2m.shape[1] != x1.shape[1]:
        raise BadInput("x2", tuple(x2m.shape), f"the same number of features as x1 ({x1.shape[1]})")
    d = x1.shape[1]
    layers = _check_layers(layers, d)
    var1 = (x1 * x1).sum(1) / d
    var2 = var1 if x2 is None else (x2m * x2m).sum(1) / d
    # Row blocks composed through all layers at once, in parallel (see _BLOCK).
    rows = max(1, _BLOCK // x2m.shape[0])
    nngp = torch.empty(x1.shape[0], x2m.shape[0], dtype=torch.float64)
    ntk = torch.empty_like(nngp)

    def compose_block(r0: int) -> None:
        block = slice(r0, r0 + rows)
        state = _State(nngp=x1[block] @ x2m.T / d, ntk=torch.zeros_like(nngp[block]), var1=var1[block],
                       var2=var2, width=d, self_pairs=r0 if x2 is None else None)
        nngp[block], ntk[block] = _compose(layers, state, quadrature_points)

    starts = range(0, x1.shape[0], rows)
    workers = min(torch.get_num_threads(), len(starts))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(compose_block, starts))
    else:
        for r0 in starts:
            compose_block(r0)
    if x2 is None:  # exact symmetry
        nngp, ntk = (nngp + nngp.T) / 2, (ntk + ntk.T) / 2
    return nngp, ntk


def _check_width(width, parametrization: Parametrization, depth: int) -> int | None:
    if width is not None and (isinstance(width, bool) or not isinstance(width, numbers.Integral)
                              or width < 1):
        raise BadInput("width", width, "a positive integer or None (infinite)")
    if width is None and parametrization.name == "standard" and depth > 0:
        raise BadInput("width", None, "a positive integer: the NTK in standard parametrization grows with "
                       "the hidden width (neural-tangents' convention, Sohl-Dickstein et al. 2020)")
    return None if width is None else int(width)


def mlp_kernels(x1, x2, depth: int, activation: str | Callable | Activation, weight_std: float,
                bias_std: float | None, parametrization: str | Parametrization = "ntk", *,
                width: int | None = None, quadrature_points: int = 64) -> tuple[Tensor, Tensor]:
    r"""NNGP and NTK of a fully connected network of ``depth`` hidden layers, each Dense + ``activation``,
    then a Dense readout, every Dense with ``weight_std`` σ_w and ``bias_std`` σ_b.

    The recursion of the module docstring (Jacot et al. 2018, arXiv 1806.07572, Theorem 1; Lee et al.
    2018, arXiv 1711.00165, eq. 4; Cho & Saul 2009 and Williams 1997 for the closed forms). For ReLU in NTK
    parametrization, with :math:`(u, v) \sim \mathcal N(0, \Sigma^{(h)})` the pre-activations of layer h:
    :math:`\Sigma^{(h+1)} = \sigma_w^2\,\mathbb E[\mathrm{relu}(u)\mathrm{relu}(v)] + \sigma_b^2`,
    :math:`\Theta^{(h+1)} = \Sigma^{(h+1)} + \sigma_w^2\,\mathbb E[\mathrm{relu}'(u)\mathrm{relu}'(v)]
    \,\Theta^{(h)}`, from :math:`\Sigma^{(1)} = \Theta^{(1)} = \sigma_w^2 x\cdot x'/d + \sigma_b^2`.

    ``x1`` (n1, d) and ``x2`` (n2, d) are tensors or arrays; ``x2=None`` means x1. ``activation`` is a
    name (``"relu"``, ``"leaky_relu"``, ``"erf"``, ``"identity"``, ``"tanh"``, ``"gelu"``, ``"silu"``,
    ``"sigmoid"``, ``"softplus"``, ``"elu"``, ``"sin"``, ``"cos"``), an :class:`Activation` (leaky-ReLU
    slopes) or an elementwise torch callable (Gauss–Hermite quadrature). ``parametrization`` is
    ``"ntk"`` or ``"standard"``; in standard parametrization the NTK needs the hidden ``width``
    (neural-tangents' convention, module docstring) while the NNGP does not. ``bias_std=None``: no bias.
    Returns ``(nngp, ntk)``, float64 tensors of shape (n1, n2).
    """
    par = get_parametrization(parametrization)
    layers = mlp_layers(depth, _check_width(width, par, depth), activation, weight_std, bias_std, par)
    return kernels(layers, x1, x2, quadrature_points=quadrature_points)


def dot_product_kernels(cosines, depth: int, activation: str | Callable | Activation, weight_std: float,
                        bias_std: float | None, parametrization: str | Parametrization = "ntk", *,
                        input_variance: float = 1.0, in_features: int | None = None,
                        width: int | None = None, quadrature_points: int = 64) -> tuple[Tensor, Tensor]:
    r"""The MLP kernels of :func:`mlp_kernels` as functions of the cosine t between two inputs of equal norm.

    For :math:`|x|^2/d = |x'|^2/d =` ``input_variance`` and :math:`x\cdot x'/d =` ``input_variance``·t,
    the kernels depend on t only (dot-product kernels, e.g. on the sphere of radius
    :math:`\sqrt{d\cdot\text{input\_variance}}`). ``cosines`` is any array of values in [-1, 1]; returns
    ``(nngp(t), ntk(t))`` with its shape. ``in_features`` (d) is needed in standard parametrization.
    """
    t = torch.as_tensor(np.asarray(cosines, dtype=np.float64))
    if t.numel() == 0 or not torch.isfinite(t).all() or torch.any(t.abs() > 1):
        raise BadInput("cosines", "values outside [-1, 1]" if t.numel() else "empty", "cosines in [-1, 1]")
    if not (isinstance(input_variance, numbers.Real) and math.isfinite(input_variance)
            and input_variance > 0):
        raise BadInput("input_variance", input_variance, "a finite number > 0")
    _check_points(quadrature_points)
    par = get_parametrization(parametrization)
    if par.name == "standard" and in_features is None:
        raise BadInput("in_features", None, "the input dimension d (the first layer's fan-in enters the "
                       "NTK in standard parametrization)")
    layers = _check_layers(mlp_layers(depth, _check_width(width, par, depth), activation, weight_std,
                                      bias_std, par), in_features)
    flat = t.reshape(1, -1)
    v = float(input_variance)
    state = _State(nngp=v * flat, ntk=torch.zeros_like(flat), var1=torch.full((1,), v, dtype=torch.float64),
                   var2=torch.full((flat.shape[1],), v, dtype=torch.float64),
                   width=None if in_features is None else int(in_features), self_pairs=None)
    nngp, ntk = _compose(layers, state, quadrature_points)
    return nngp.reshape(t.shape), ntk.reshape(t.shape)
