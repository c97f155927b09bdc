"""Neural scaling laws in parameters and data: the Chinchilla form, fitted as Epoch AI's replication does.

The law (Hoffmann et al. 2022, arXiv 2203.15556, eq. 2, "Approach 3"):

    L(N, D) = E + A / N^α + B / D^β,

N the parameters, D the training tokens. It is fitted in the log-sum-exp form of Hoffmann et al.
(App. D.2), with a = log A, b = log B, e = log E:

    log L̂(N, D) = LSE(a − α log N, b − β log D, e),

by minimizing the Huber loss (δ = 10⁻³) of the log-loss residuals, summed over the runs,

    f(θ) = Σ_i ρ_δ(log L̂(N_i, D_i) − log L_i),   ρ_δ(r) = r²/2 if |r| ≤ δ else δ(|r| − δ/2),

with L-BFGS from a grid of 4,500 initial points, α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1},
a, b ∈ {0, 5, …, 25} (Hoffmann et al. App. D.2; Besiroglu et al. 2024, arXiv 2404.10102, who showed
that the original paper's parameters and intervals were wrong and refitted its data this way). The
best start is then polished by Newton's method on the exact Hessian. Confidence intervals come from
a nonparametric bootstrap (resampling the runs with replacement and refitting, Besiroglu et al. §3;
percentile intervals).

Since δ = 10⁻³ is far smaller than the typical residual (~10⁻²), ρ_δ is linear on most points: the
fit is close to least absolute deviations, which is what makes it robust to the outliers of a loss
curve, and its objective is nearly flat along a valley in (A, B). The optimizer is
:func:`lmech.laws.lbfgs.lbfgs_batch`: every start of a fit (and every start of every bootstrap
replicate) in one vectorized batch, with an analytic gradient and pruning of starts that merge into
a better one or stall above it (``BENCHMARKS.md``, ``scaling_fit``, measures it against SciPy's
``minimize(method="L-BFGS-B")`` looped over the starts).

Compute-optimal allocation for a budget of C = 6ND FLOP (Hoffmann et al. eq. 4, App. D.2): with
G = (αA / (βB))^{1/(α+β)},

    N_opt(C) = G (C/6)^{β/(α+β)},   D_opt(C) = G⁻¹ (C/6)^{α/(α+β)},

and the tokens per parameter D_opt / N_opt at C.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmech.errors import BadInput
from lmech.laws.lbfgs import CONVERGED, LINE_SEARCH_FAILED, MAX_ITER, lbfgs_batch

#: The fitted parameters, in the order of :attr:`ChinchillaLaw.theta` (a, b, e, α, β) after exp(a, b, e).
PARAMS = ("E", "A", "B", "alpha", "beta")
#: The published refit of Besiroglu et al. 2024 (Table 1, "Our estimate"), on the 240 points of
#: Hoffmann et al. Fig. 4 that remain after dropping the five with the highest loss.
EPOCH_ESTIMATE = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
#: Hoffmann et al. 2022, eq. 10 (as Besiroglu et al. quote it, unrounded in their notebook).
CHINCHILLA_ESTIMATE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
#: Huber threshold on the log-loss residuals (Hoffmann et al. App. D.2).
HUBER_DELTA = 1e-3


def chinchilla_grid() -> np.ndarray:
    """The 5 × 5 × 5 × 6 × 6 = 4,500 initial points (a, b, e, α, β) of Hoffmann et al. App. D.2:
    α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25}."""
    exps, es, logs = np.arange(0.0, 2.5, 0.5), np.arange(-1.0, 1.5, 0.5), np.arange(0.0, 30.0, 5.0)
    return np.array([(a, b, e, al, be) for al, be, e, a, b in itertools.product(exps, exps, es, logs, logs)])


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, eq. 2)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @classmethod
    def from_theta(cls, theta) -> ChinchillaLaw:
        """From the fitted coordinates θ = (a, b, e, α, β) = (log A, log B, log E, α, β)."""
        a, b, e, al, be = (float(v) for v in theta)
        return cls(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=al, beta=be)

    @property
    def theta(self) -> np.ndarray:
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in PARAMS}

    def loss(self, N, D) -> np.ndarray:
        """L(N, D), evaluated as exp(LSE(·)) (the fitted form)."""
        return np.exp(log_loss(self.theta[None], np.log(np.asarray(N, float)), np.log(np.asarray(D, float)))[0])

    def compute_optimal(self, C) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) minimizing L under 6ND = C (Hoffmann et al. eq. 4); needs α, β > 0."""
        return compute_optimal(self.theta[None], C)

    def tokens_per_parameter(self, C) -> np.ndarray:
        """D_opt(C) / N_opt(C)."""
        n, d = self.compute_optimal(C)
        return d / n


def log_loss(theta: np.ndarray, lnN: np.ndarray, lnD: np.ndarray) -> np.ndarray:
    """log L̂ = LSE(a − α lnN, b − β lnD, e) for parameter rows θ (P, 5) at points (lnN, lnD): (P, ...)."""
    theta = np.asarray(theta, float)
    lnN, lnD = np.broadcast_arrays(np.asarray(lnN, float), np.asarray(lnD, float))
    shape = (len(theta),) + (1,) * lnN.ndim
    a, b, e, al, be = (theta[:, i].reshape(shape) for i in range(5))
    u1, u2 = a - al * lnN, b - be * lnD
    m = np.maximum(np.maximum(u1, u2), e)
    return m + np.log(np.exp(u1 - m) + np.exp(u2 - m) + np.exp(e - m))


def compute_optimal(theta: np.ndarray, C) -> tuple[np.ndarray, np.ndarray]:
    """N_opt(C), D_opt(C) for parameter rows θ (P, 5): arrays (P, *C.shape), or C's shape when P = 1
    (Hoffmann et al. 2022 eq. 4). Rows with α ≤ 0 or β ≤ 0 give NaN (no interior optimum)."""
    theta = np.asarray(theta, float)
    C = np.asarray(C, float)
    a, b, _, al, be = (theta[:, i].reshape((-1,) + (1,) * C.ndim) for i in range(5))
    with np.errstate(invalid="ignore", divide="ignore"):
        s = al + be
        log_g = (np.log(al) + a - np.log(be) - b) / s
        log_c6 = np.log(C / 6.0)
        n_opt = np.exp(log_g + be / s * log_c6)
        d_opt = np.exp(-log_g + al / s * log_c6)
    ok = (al > 0) & (be > 0)
    n_opt, d_opt = np.where(ok, n_opt, np.nan), np.where(ok, d_opt, np.nan)
    if len(theta) == 1:
        return n_opt[0], d_opt[0]
    return n_opt, d_opt


def huber_objective(theta: np.ndarray, lnN: np.ndarray, lnD: np.ndarray, lnL: np.ndarray,
                    weights: np.ndarray | None = None, delta: float = HUBER_DELTA,
                    scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The fit's objective f(θ) = scale · Σ_i w_i ρ_δ(log L̂_i − log L_i) and its gradient, for parameter
    rows θ (P, 5) at once; ``weights`` (n,) or (P, n) (a bootstrap replicate's counts), default 1.

    Written with z₁ = exp(a − e − α lnN), z₂ = exp(b − e − β lnD), s = 1 + z₁ + z₂, so that
    log L̂ = e + log s and ∂ log L̂/∂(a, b, e, α, β) = (z₁, z₂, 1, −z₁ lnN, −z₂ lnD)/s. An overflow
    (far from any fit) gives inf, which the line search rejects.
    """
    a, b, e, al, be = (theta[:, i:i + 1] for i in range(5))
    with np.errstate(over="ignore", invalid="ignore"):  # in place: each (P, n) pass allocates nothing new
        z1 = np.multiply(al, lnN)
        np.subtract(a - e, z1, out=z1)
        np.exp(z1, out=z1)
        z2 = np.multiply(be, lnD)
        np.subtract(b - e, z2, out=z2)
        np.exp(z2, out=z2)
        s = np.add(z1, z2)
        s += 1.0
        r = np.log(s)
        r += e
        r -= lnL
        c = np.clip(r, -delta, delta)  # ρ'_δ(r); ρ_δ(r) = c (r − c/2)
        if weights is None:
            f = np.einsum("pn,pn->p", c, r) - 0.5 * np.einsum("pn,pn->p", c, c)
        else:
            wc = c * weights
            f = np.einsum("pn,pn->p", wc, r) - 0.5 * np.einsum("pn,pn->p", wc, c)
            c = wc
        np.divide(c, s, out=c)  # ψ = w ρ' / s
        z1 *= c
        z2 *= c
        g = np.stack([z1.sum(axis=1), z2.sum(axis=1), c.sum(axis=1), -(z1 @ lnN), -(z2 @ lnD)], axis=1)
    if scale != 1.0:
        f, g = f * scale, g * scale
    f = np.where(np.isfinite(f) & np.all(np.isfinite(g), axis=1), f, np.inf)
    return f, g


def huber_hessian(theta: np.ndarray, lnN: np.ndarray, lnD: np.ndarray, lnL: np.ndarray,
                  weights: np.ndarray | None = None, delta: float = HUBER_DELTA, scale: float = 1.0) -> np.ndarray:
    """The exact Hessian (P, 5, 5) of :func:`huber_objective` (where ρ_δ is twice differentiable):
    Σ_i w_i [ρ''(r_i) J_i J_iᵀ + ρ'(r_i) ∇² log L̂_i], J = ∇ log L̂, and ∇² LSE = Σ_k p_k G_k G_kᵀ − J Jᵀ
    with p the softmax weights of the three terms and G_k their gradients in θ."""
    a, b, e, al, be = (theta[:, i:i + 1] for i in range(5))
    z1 = np.exp((a - e) - al * lnN)
    z2 = np.exp((b - e) - be * lnD)
    s = 1.0 + z1 + z2
    r = np.log(s) + (e - lnL)
    w = np.ones_like(r) if weights is None else np.broadcast_to(weights, r.shape)
    c = np.clip(r, -delta, delta)
    second = (np.abs(r) <= delta).astype(float)
    p1, p2, p3 = z1 / s, z2 / s, 1.0 / s
    J = np.stack([p1, p2, p3, -p1 * lnN, -p2 * lnD], axis=2)  # (P, n, 5)
    H = np.einsum("pn,pni,pnj->pij", w * (second - c), J, J)
    wc = w * c
    m1, m2 = wc * p1, wc * p2
    H[:, 0, 0] += m1.sum(1)
    H[:, 1, 1] += m2.sum(1)
    H[:, 2, 2] += (wc * p3).sum(1)
    H[:, 0, 3] -= m1 @ lnN
    H[:, 3, 0] -= m1 @ lnN
    H[:, 3, 3] += m1 @ (lnN * lnN)
    H[:, 1, 4] -= m2 @ lnD
    H[:, 4, 1] -= m2 @ lnD
    H[:, 4, 4] += m2 @ (lnD * lnD)
    return H * scale


def newton_polish(theta: np.ndarray, objective: Callable, hessian: Callable, *, max_iter: int = 100,
                  ftol: float = 1e-15) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method from each row of θ (P, 5), batched: direction −|H|⁻¹ g, with |H| the Hessian
    with its eigenvalues replaced by their magnitudes (floored at 10⁻¹⁰ of the largest, so the step
    is a descent one at a saddle or on a flat valley), and an Armijo backtracking line search.
    ``objective(θ, rows) -> (f, g)``, ``hessian(θ, rows) -> H``. Stops a row when a step lowers f by
    less than ``ftol`` relative. Every rule is relative: rescaling f changes nothing."""
    x = np.array(theta, float)
    rows = np.arange(len(x))
    f, g = objective(x, rows)
    active = np.isfinite(f)
    for _ in range(max_iter):
        idx = rows[active]
        if len(idx) == 0:
            break
        H = hessian(x[idx], idx)
        lam, V = np.linalg.eigh(H)
        mag = np.abs(lam)
        mag = np.maximum(mag, 1e-10 * mag.max(axis=1, keepdims=True) + 1e-300)
        p = -np.einsum("pij,pj->pi", V, np.einsum("pji,pj->pi", V, g[idx]) / mag)
        slope = np.einsum("pi,pi->p", g[idx], p)
        t = np.ones(len(idx))
        accepted = np.zeros(len(idx), dtype=bool)
        f_new, g_new = f[idx].copy(), g[idx].copy()
        pending = np.arange(len(idx))
        for _ in range(60):
            ft, gt = objective(x[idx[pending]] + t[pending, None] * p[pending], idx[pending])
            ok = np.isfinite(ft) & (ft <= f[idx[pending]] + 1e-4 * t[pending] * slope[pending])
            f_new[pending[ok]], g_new[pending[ok]], accepted[pending[ok]] = ft[ok], gt[ok], True
            pending = pending[~ok]
            if len(pending) == 0:
                break
            t[pending] *= 0.5
        gain = f[idx] - f_new
        moved = accepted & (slope < 0)
        x[idx[moved]] += t[moved, None] * p[moved]
        f[idx[moved]], g[idx[moved]] = f_new[moved], g_new[moved]
        still = moved & (gain > ftol * np.abs(f_new))
        active[idx] = still
    return x, f


# ----------------------------------------------------------------------------------------------------
# the fit


@dataclass
class ScalingFit:
    """A fitted Chinchilla law with its bootstrap.

    ``law``: the point estimate; ``objective``: its Huber objective (unscaled sum); ``residuals``:
    log L − log L̂ at the fitted points; ``bootstrap``: (B, 5) parameter rows θ = (a, b, e, α, β) of the
    replicates (None without a bootstrap); ``starts``: how the starts of the point fit ended.
    """

    law: ChinchillaLaw
    objective: float
    n_points: int
    residuals: np.ndarray
    delta: float = HUBER_DELTA
    bootstrap: np.ndarray | None = None
    seed: int = 0
    starts: dict[str, int] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, float]:
        return self.law.as_dict()

    def samples(self) -> dict[str, np.ndarray]:
        """The bootstrap replicates of each parameter (E, A, B, alpha, beta)."""
        self._need_bootstrap()
        th = self.bootstrap
        return {"E": np.exp(th[:, 2]), "A": np.exp(th[:, 0]), "B": np.exp(th[:, 1]), "alpha": th[:, 3],
                "beta": th[:, 4]}

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """The percentile bootstrap interval of one parameter."""
        if name not in PARAMS:
            raise BadInput("parameter", name, f"one of {', '.join(PARAMS)}")
        lo, hi = _percentiles(self.samples()[name], level)
        return float(lo), float(hi)

    def intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        return {name: self.interval(name, level) for name in PARAMS}

    def standard_errors(self) -> dict[str, float]:
        """Bootstrap standard deviation of each parameter (Besiroglu et al. report these)."""
        return {k: float(np.std(v, ddof=1)) for k, v in self.samples().items()}

    def predict(self, N, D) -> np.ndarray:
        """The point estimate's loss L̂(N, D)."""
        return self.law.loss(N, D)

    def predict_interval(self, N, D, level: float = 0.9, kind: str = "prediction",
                         seed: int | None = None, runs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """A bootstrap interval for the loss at (N, D).

        ``kind="confidence"``: the spread of the fitted surface L̂_b(N, D) over the replicates.
        ``kind="prediction"``: for a new run's measured loss: each replicate's log L̂_b plus a residual
        drawn from the fit's log-residuals (the bootstrap prediction interval of Davison & Hinkley 1997,
        §6.3), so it also holds the scatter of single runs about the surface; ``runs``: for the mean
        of that many independent runs, the mean of as many residuals.
        """
        self._need_bootstrap()
        if kind not in ("confidence", "prediction"):
            raise BadInput("kind", kind, "'confidence' or 'prediction'")
        lnN, lnD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
        logs = log_loss(self.bootstrap, lnN, lnD)  # (B, ...)
        if not (isinstance(runs, (int, np.integer)) and runs >= 1):
            raise BadInput("runs", runs, "a number of runs >= 1")
        if kind == "prediction":
            rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
            draws = rng.choice(np.sort(self.residuals), size=(runs,) + logs.shape)  # sorted: row order is moot
            logs = logs + draws.mean(axis=0)
        lo, hi = _percentiles(np.exp(logs), level, axis=0)
        return lo, hi

    def compute_optimal(self, C, level: float = 0.95) -> dict[str, Any]:
        """N_opt, D_opt and tokens per parameter at budgets C = 6ND, each with its bootstrap interval
        (keys ``N``, ``D``, ``tokens_per_parameter``, each a dict of ``value``, ``lo``, ``hi``)."""
        n, d = self.law.compute_optimal(C)
        out: dict[str, Any] = {"C": np.asarray(C, float), "level": level}
        values = {"N": n, "D": d, "tokens_per_parameter": d / n}
        if self.bootstrap is None:
            return out | {k: {"value": v, "lo": None, "hi": None} for k, v in values.items()}
        nb, db = compute_optimal(self.bootstrap, C)
        reps = {"N": nb, "D": db, "tokens_per_parameter": db / nb}
        for key, v in values.items():
            lo, hi = _percentiles(reps[key], level, axis=0)
            out[key] = {"value": v, "lo": lo, "hi": hi}
        return out

    def to_dict(self, level: float = 0.95) -> dict[str, Any]:
        """JSON-ready: ``params`` (E, A, B, alpha, beta), ``intervals`` and ``standard_errors`` beside them."""
        out: dict[str, Any] = {"params": self.params, "objective": self.objective, "n_points": self.n_points,
                               "huber_delta": self.delta, "starts": self.starts}
        if self.bootstrap is not None:
            out |= {"level": level, "intervals": {k: list(v) for k, v in self.intervals(level).items()},
                    "standard_errors": self.standard_errors(), "bootstrap": len(self.bootstrap),
                    "seed": self.seed}
        return out

    def _need_bootstrap(self) -> None:
        if self.bootstrap is None:
            raise BadInput("bootstrap", 0, "a fit with bootstrap > 0 (intervals come from its replicates)")


def _percentiles(samples: np.ndarray, level: float, axis: int = 0):
    if not 0 < level < 1:
        raise BadInput("level", level, "a number in (0, 1)")
    q = 50 * (1 - level)
    return np.nanpercentile(samples, q, axis=axis), np.nanpercentile(samples, 100 - q, axis=axis)


def check_runs(N, D, L) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs as float arrays, or :class:`BadInput` naming the first bad value and its index."""
    arrays = []
    for name, v in (("N", N), ("D", D), ("loss", L)):
        a = np.asarray(v, dtype=float)
        if a.ndim != 1:
            raise BadInput(name, f"an array of shape {a.shape}", "a 1-D array (one value per run)")
        arrays.append(a)
    if len({len(a) for a in arrays}) != 1:
        raise BadInput("N, D, loss", tuple(len(a) for a in arrays), "three arrays of the same length")
    for name, a in zip(("N", "D", "loss"), arrays):
        bad = np.flatnonzero(~(np.isfinite(a) & (a > 0)))
        if len(bad):
            raise BadInput(f"{name}[{bad[0]}]", float(a[bad[0]]),
                           f"a finite positive number (the fit takes its logarithm; {len(bad)} bad value(s))")
    if len(arrays[0]) < len(PARAMS):
        raise BadInput("runs", len(arrays[0]), f"at least {len(PARAMS)} runs (the law has {len(PARAMS)} parameters)")
    return arrays[0], arrays[1], arrays[2]


class _Problem:
    """The data of a fit in log space, with per-group weights for bootstrap replicates."""

    def __init__(self, N, D, L, delta: float, scale: float):
        self.lnN, self.lnD, self.lnL = np.log(N), np.log(D), np.log(L)
        self.delta, self.scale = delta, scale
        self.weights: np.ndarray | None = None  # (groups, n) or None
        self.group_of: np.ndarray | None = None  # (problems,) group of each problem
        self.hold_e = False  # e held at its start: its gradient and Hessian row are zeroed (fixed_E)

    def _w(self, rows):
        return None if self.weights is None else self.weights[self.group_of[rows]]

    def objective(self, theta, rows):
        f, g = huber_objective(theta, self.lnN, self.lnD, self.lnL, self._w(rows), self.delta, self.scale)
        if self.hold_e:
            g[:, 2] = 0.0
        return f, g

    def hessian(self, theta, rows):
        H = huber_hessian(theta, self.lnN, self.lnD, self.lnL, self._w(rows), self.delta, self.scale)
        if self.hold_e:  # a unit pivot: Newton's step in e is −0/1
            H[:, 2, :] = 0.0
            H[:, :, 2] = 0.0
            H[:, 2, 2] = np.abs(H).max(axis=(1, 2)) + 1.0
        return H


#: Pruning of the batched L-BFGS (see :mod:`lmech.laws.lbfgs`): starts within 10⁻² of a better one are
#: merged, starts that would not reach the best within 100 more iterations at their pace are dropped.
PRUNING = {"merge": 1e-2, "stall_horizon": 100}


def _best_starts(problem: _Problem, x0: np.ndarray, groups: np.ndarray, n_groups: int, *, pruning: dict,
                 polish: int = 1):
    """Run the batch, then Newton-polish the ``polish`` best distinct ends of each group; returns the
    best θ and objective of each group and the batch result."""
    problem.group_of = groups
    res = lbfgs_batch(problem.objective, x0, groups=groups, ftol=1e-10, **pruning)
    ok = np.isin(res.status, (CONVERGED, LINE_SEARCH_FAILED, MAX_ITER)) & np.isfinite(res.f)
    cand_rows = []
    for grp in range(n_groups):
        members = np.flatnonzero(ok & (groups == grp))
        if len(members) == 0:
            members = np.flatnonzero(groups == grp)[:1]
        cand_rows.extend(members[np.argsort(res.f[members], kind="stable")[:polish]])
    cand_rows = np.array(cand_rows)
    problem.group_of = groups[cand_rows]
    x, f = newton_polish(res.x[cand_rows], lambda th, r: problem.objective(th, r),
                         lambda th, r: problem.hessian(th, r))
    better = ~(f <= res.f[cand_rows])  # the polish never makes a start worse; keep its L-BFGS end if so
    x[better], f[better] = res.x[cand_rows][better], res.f[cand_rows][better]
    best_theta, best_f = np.full((n_groups, 5), np.nan), np.full(n_groups, np.inf)
    for i, grp in enumerate(groups[cand_rows]):
        if f[i] < best_f[grp] or not np.isfinite(best_f[grp]):
            best_theta[grp], best_f[grp] = x[i], f[i]
    return best_theta, best_f, res


def fit_scaling(N, D, L, *, bootstrap: int = 0, seed: int = 0, delta: float = HUBER_DELTA,
                starts: np.ndarray | None = None, bootstrap_starts: int = 4, objective_scale: float = 1.0,
                chunk: int = 100, progress=None, pruning: dict | None = None, groups=None,
                fixed_E: float | None = None) -> ScalingFit:
    """Fit L(N, D) = E + A/N^α + B/D^β to runs (N_i, D_i, L_i) as Besiroglu et al. 2024 do (module
    docstring): Huber loss (``delta``) on log-loss residuals, L-BFGS from every row of ``starts``
    (default: the 4,500 points of :func:`chinchilla_grid`), Newton polish of the best five ends.

    ``bootstrap``: number of replicates (0: none). Each resamples the runs with replacement (seeded by
    ``seed``) and is refitted from the point estimate and ``bootstrap_starts`` starts drawn from the
    grid (Besiroglu et al. start each replicate from one point, Hoffmann et al.'s estimate); the
    replicates are solved ``chunk`` at a time in one batch each, reporting to ``progress``
    (``start(total, description)``, ``advance(n)``). ``objective_scale`` multiplies the objective (the
    fit does not depend on it; tests check that). ``pruning``: options of the batched L-BFGS (default
    ``PRUNING``; ``{}`` runs every start to convergence). ``groups``: a label per run; runs that share
    one training (e.g. the checkpoints of one model) share its noise, so the bootstrap then resamples
    whole groups (the cluster bootstrap, Davison & Hinkley 1997, §3.8) instead of single runs.
    ``fixed_E`` > 0: E is not fitted but held at this value (a loss floor known in advance, e.g. 0 up to a
    negligible ``fixed_E`` for a noise-free target): every start's e = log ``fixed_E`` and the fit (L-BFGS,
    Newton polish and bootstrap) moves only (a, b, α, β).
    """
    N, D, L = check_runs(N, D, L)
    if not delta > 0:
        raise BadInput("delta", delta, "a positive Huber threshold")
    if bootstrap < 0:
        raise BadInput("bootstrap", bootstrap, "a number of replicates >= 0")
    if not (np.isfinite(objective_scale) and objective_scale > 0):
        raise BadInput("objective_scale", objective_scale, "a positive finite number")
    grid = chinchilla_grid() if starts is None else np.atleast_2d(np.asarray(starts, float))
    if grid.ndim != 2 or grid.shape[1] != 5 or len(grid) == 0:
        raise BadInput("starts", f"an array of shape {grid.shape}", "rows (a, b, e, alpha, beta)")
    if fixed_E is not None:
        if not (np.isfinite(fixed_E) and fixed_E > 0):
            raise BadInput("fixed_E", fixed_E, "a positive finite loss floor (or None to fit E)")
        grid = grid.copy()
        grid[:, 2] = np.log(fixed_E)
        grid = np.unique(grid, axis=0)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != N.shape:
            raise BadInput("groups", f"an array of shape {groups.shape}", f"one label per run ({len(N)})")
    order = np.lexsort((L, D, N))  # a canonical row order: the bootstrap's resamples do not depend on the input's
    N, D, L = N[order], D[order], L[order]
    cluster = None if groups is None else np.unique(groups[order], return_inverse=True)[1]
    problem = _Problem(N, D, L, delta, objective_scale)
    problem.hold_e = fixed_E is not None
    pruning = PRUNING if pruning is None else pruning
    theta, fbest, res = _best_starts(problem, grid, np.zeros(len(grid), dtype=np.int64), 1,
                                     pruning=pruning, polish=5)
    theta = theta[0]
    law = ChinchillaLaw.from_theta(theta)
    residuals = np.empty(len(N))
    residuals[order] = problem.lnL - log_loss(theta[None], problem.lnN, problem.lnD)[0]  # in the input's order
    fit = ScalingFit(law=law, objective=float(fbest[0] / objective_scale), n_points=len(N), residuals=residuals,
                     delta=delta, seed=seed, starts=res.counts())
    if bootstrap:
        fit.bootstrap = _bootstrap(problem, theta, grid, bootstrap, seed, bootstrap_starts, chunk, progress, pruning,
                                   cluster)
    return fit


def _bootstrap(problem: _Problem, theta: np.ndarray, grid: np.ndarray, n_boot: int, seed: int, n_starts: int,
               chunk: int, progress, pruning: dict, cluster: np.ndarray | None = None) -> np.ndarray:
    """``n_boot`` replicates: resampled counts as weights (of runs, or of whole clusters when ``cluster``
    labels the runs 0..G−1), starts = the point estimate plus ``n_starts`` rows of the grid, solved
    ``chunk`` replicates per batch."""
    rng = np.random.default_rng(seed)
    n = len(problem.lnL)
    if cluster is None:
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(float)
    else:
        G = int(cluster.max()) + 1
        per_group = np.stack([np.bincount(rng.integers(0, G, G), minlength=G) for _ in range(n_boot)])
        counts = per_group[:, cluster].astype(float)
    picks = rng.integers(0, len(grid), size=(n_boot, n_starts))
    if progress is not None:
        progress.start(n_boot, "bootstrap")
    out = np.empty((n_boot, 5))
    per = 1 + n_starts
    for lo in range(0, n_boot, chunk):
        hi = min(lo + chunk, n_boot)
        k = hi - lo
        x0 = np.concatenate([theta[None].repeat(k, 0)[:, None], grid[picks[lo:hi]]], axis=1).reshape(k * per, 5)
        groups = np.repeat(np.arange(k), per)
        problem.weights = counts[lo:hi]
        best, _, _ = _best_starts(problem, x0, groups, k, pruning=pruning, polish=1)
        out[lo:hi] = best
        if progress is not None:
            progress.advance(k)
    problem.weights = None
    return out
