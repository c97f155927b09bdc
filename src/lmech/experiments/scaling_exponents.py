"""Law: the scaling exponents of a linear model on power-law features, in training time, data and model
size, follow from the spectrum's exponent b and the target's exponent a before any training.

Theory (:mod:`lmech.theory.scaling`, whose docstring states the conventions, the dictionary between the
papers and the derivations): features ψ with variances λ_k = k^−b (k ≤ M), a target of power
λ_k w*_k² = k^−a, a student f = wᵀAψ/√N of N Gaussian random projections. Excess-loss exponents when one
resource binds: time (a − 1)/b (gradient descent), data min(a − 1, 2b) (ridgeless), model size
min(a − 1, b). Model size saturates at b, data at 2b: for a "super-easy" task (a − 1 > b) the two differ,
which a summary stating both at 2b (or both at min(a − 1, 2b)) misses.

Measurement: real training on sampled data (:mod:`lmech.data.power_law`), never the theory's equations.

* **N = ∞** (the kernel limit: the student is the linear model on ψ ∈ R^M): ``trials`` data sets of
  ``samples`` Gaussian vectors ψ. Full-batch GD from w = 0 with step η = ``lr`` (λ_1 = 1) on all of them,
  computed exactly through the eigendecomposition of the P×P Gram matrix (w_t = Ψᵀ U diag((1 − (1 −
  ηg/P)^t)/g) Uᵀ y, GD's iterates in closed form), its population loss at log-spaced t; and ridgeless
  regression (GD's t → ∞ limit, the minimum-norm interpolant) on the first P samples for each P in
  ``data_sizes``.
* **finite N**: ``replicates`` independent projections A (N_max × M; the model of size N uses A's first N
  rows). The student's features x = Aψ/√N are drawn directly as Gaussian vectors of covariance
  K = AΛAᵀ/N, in K's eigenbasis (:func:`lmech.data.power_law.regression_samples`). Least squares (GD's
  t → ∞ limit) on P = ``ols_ratio``·N samples for each N in ``model_sizes``: its expected loss is the best
  student's L_N times 1 + N/(P − N − 1) (Gaussian least squares), a constant at fixed P/N, so its exponent
  is that of L_N. Full-batch GD on P = ``gd_ratio``·N samples (N in ``gd_sizes``), and one-pass SGD
  (step γ = ``sgd_lr``/tr K of the draw, batch ``batch``, ``sgd_chains`` independent runs per projection, N in
  ``sgd_sizes``).
* **exact finite-size predictions** of the drawn projections (theory, no training): population GD by the
  eigendecomposition of K, and the one-pass SGD risk by its Volterra equation (Paquette et al. 2024).

Fitting windows (:func:`lmech.laws.power_law.log_log_fit` on the mean over trials / replicates):

* time: the steps t at which GD has learned (2ηt)^(1/b) modes, between ``time_modes`` (4 and 32): below,
  the first modes are discrete (the sum is not yet its integral); above, P/8 modes, the P samples start
  to bind;
* data: all ``data_sizes`` (16 … 256 ≪ M, so M does not bind);
* model: all ``model_sizes`` (12 … 128: below, the first mode's random capture dominates).

Each window is checked before judging, with the deterministic equivalents (DE) of the same quantity
(population GD, eigenlearning, the projection DE of :mod:`lmech.theory.scaling`): the DE's slope over the
window at the config's M must be within half the tolerance of the asymptotic exponent (else the window is
pre-asymptotic), its slope at M and at 16M must agree within 2% (else the cut-off M binds), the window
must span a decade, and the task must lie at least 0.1 from the boundary where the exponent changes form
(a − 1 = b for the model, a − 1 = 2b for the data). A failed check makes the criterion inconclusive, with
its reason; it is never judged.

Verdicts:

1. ``time_exponent``, ``data_exponent``, ``model_exponent``: |fitted/predicted − 1| ≤ 0.10 for
   (a − 1)/b, min(a − 1, 2b) and min(a − 1, b).
2. ``asymmetry`` (judged for super-easy tasks, a − 1 > b): the ratio of the measured data and model exponents
   within 10% of min(a − 1, 2b)/b; the summary putting both at 2b predicts 1.
3. ``gd_curve``, ``sgd_curve``: the replicate-mean measured loss curves against the replicate-mean exact
   predictions for the drawn projections, normalized RMS √mean_t (L_measured/L_predicted − 1)² at the worst
   N: ≤ 0.05 (GD: the P = gd_ratio·N samples' finite-sample error ≈ N/P = 1.6% near the floor) and ≤ 0.1
   (SGD: the mean of replicates × chains one-pass runs, each fluctuating by its own noise).

The compute-optimal frontier of one-pass SGD, measured on an (N, t) grid, and the Chinchilla fit of that grid
are the law ``scaling-frontier`` (:mod:`lmech.experiments.scaling_frontier`: judged within 5% in phase Ia, quick
book; full-book entries in phase II at (6, 4) and phase III at (9, 3) hold at seeds 0, 1 and 2, phase II
thinly, its window still +2.5% pre-asymptotic by the deterministic equivalent: its docstring gives the numbers);
the digits
kernel-regression learning curve is the law ``scaling-digits`` (:mod:`lmech.experiments.scaling_digits`,
error measured on the population whose spectrum is measured: within 15% of the eigenlearning curve's slope).
Last session's first look at digits
(all 1797, ReLU depth-2 NTK and NNGP, kernel spectrum and target tail fitted on 1000 images over modes 4-200,
one-hot or parity target, ridgeless, n = 40-640, 6 splits): b ≈ 1.12 (NTK) / 1.34 (NNGP), a − 1 ≈ 0.65,
predicted data exponent min(a − 1, 2b) ≈ 0.65 against a measured 0.48-0.51 whose local slope drifts from
0.4 to 0.6 across the decade: 25% off, no clean power law at this n; not judged.

Law book (quick): the super-easy task (a, b) = (5, 3) (phase II; data 4, model 3: model size saturates at b
while data does not) and the hard task (3, 3) (phase Ia; every exponent a − 1 = 2, time 2/3), M = 2048.
Measured at seeds 0, 1, 2 (2 cores shared with ~10 other processes, load 10-12): worst relative exponent
error 3.8% (time), 3.3% (data), 5.0% (model), asymmetry 3.3%, all against 10%; GD-curve nRMS ≤ 0.023
(tolerance 0.05), SGD-curve nRMS ≤ 0.045 (0.1). Cost per entry ≈ 6 s of CPU measured on that loaded machine
(one thread; figures included), the smoke config 0.7 s, the cut-off counterexample 0.4 s. The one-pass SGD
runs on :func:`sgd_losses` (float32 iterate, the same float32 draws as the float64 kernel it replaced): the
SGD-curve nRMS at seeds 0-2 is unchanged to 4 digits (0.0445, 0.0382, 0.0350 super-easy; 0.0187, 0.0205,
0.0233 hard), and so is the cost (measure 2.2-3.0 s an entry, before and after, on a less loaded machine:
these runs are small, 8 projections × 16 chains, and step overhead, not arithmetic, sets their time).

Where it fails: at finite P the GD time exponent of a super-easy task is contaminated by a P^−1 t^−(1−1/b)
term (the target's first modes leak into the sample covariance's slow directions, the analogue in data of
Paquette et al.'s F_ac): at (a, b) = (6, 2), P = 256, the measured time exponent is 2.0 against 2.5 (the
window 4-32 modes); it needs P ≫ t^((a−b)/b). The law-book's super-easy task keeps (a − b)/b = 2/3 and the
window at 4-16 modes, where P = 512 suffices (measured 1.28-1.31 against 4/3). At b = 1.2 the cut-off binds
in every window at M = 1024 (counterexample: inconclusive). Other tasks (quick config, replicates 24, seeds
0-2): (4.5, 2.5), phase III, holds with worst error 5.9% (asymmetry) (tests); at b = 2, (2.5, 2) and (3.5, 2),
the data window's DE slope moves 2-3% from M = 2048 to 16M and the model window's is 5.8-5.9% short of the
asymptote, so those criteria are inconclusive (their fitted values were within 1-8%), the time exponent holds
(≤ 7.1%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmech.config import MAX_ELEMENTS, check_budget, spec
from lmech.data.power_law import power_law_features, random_projection, regression_samples
from lmech.data.synthetic import generator
from lmech.errors import BadInput
from lmech.experiments.base import Counterexample, Criterion, Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.registry import register
from lmech.laws.power_law import log_log_fit
from lmech.theory import scaling as S

#: verdict tolerances (module docstring)
EXPONENT_TOL = 0.10
GD_TOL = 0.05
SGD_TOL = 0.10
#: a window's DE slope must be within this share of the tolerance of the asymptotic exponent
PREASYMPTOTIC_SHARE = 0.5
#: the cut-off binds when the DE slope moves by more than this (relative) between M and 16M
CUTOFF_SHIFT = 0.02
#: the smallest span (ratio of last to first) of a fit window
MIN_SPAN = 10.0
#: sgd_losses steps with numpy at most this many coordinates (R·chains·N), with torch above (measured crossover
#: ≈ 16k on one thread: numpy 7 against torch 20 µs a step at 256 coordinates, 62 against 44 µs at 32k)
SMALL_SGD = 16_384


def _log_steps(lo: float, hi: float, count: int) -> np.ndarray:
    return np.unique(np.round(np.geomspace(lo, hi, count)).astype(np.int64))


def _increasing(name: str, values, least: int) -> None:
    if len(values) < least or list(values) != sorted(set(values)):
        raise BadInput(name, values, f"at least {least} distinct increasing values")


@dataclass(frozen=True)
class ScalingExponentsConfig(RunConfig):
    spectrum_exponent: float = spec(3.0, "b: feature variances λ_k = k^-b (the theory needs b > 1)", min=-1e3, max=8.0)
    target_exponent: float = spec(5.0, "a: target power λ_k w*_k² = k^-a (the theory needs a > 1)", min=-1e3, max=16.0)
    features: int = spec(2048, "cut-off M: number of features", min=16, max=2**17)
    # -- N = ∞
    samples: int = spec(512, "P of the N = ∞ GD runs (time exponent); also the largest data set", min=8, max=8192)
    data_sizes: tuple[int, ...] = spec((32, 45, 64, 91, 128, 181, 256, 362, 512), "training-set sizes of the "
                                       "ridgeless learning curve (a decade or more)", min=2, max=8192, max_items=32)
    trials: int = spec(6, "independent data sets at N = ∞", min=1, max=256)
    lr: float = spec(0.5, "GD step η (λ_1 = 1; in units of 1/μ_max of the drawn K at finite N)", min=0.0, max=1.5,
                     min_exclusive=True)
    time_modes: tuple[float, ...] = spec((4.0, 16.0), "time-exponent window: from the step at which GD has "
                                         "learned the first of these numbers of modes, (2ηt)^(1/b), to the last",
                                         min=1.0, max=1e4, max_items=2)
    # -- finite N
    model_sizes: tuple[int, ...] = spec((12, 16, 23, 32, 45, 64, 91, 128), "model sizes N of the model-size "
                                        "exponent (increasing, a decade or more)", min=2, max=2048, max_items=32)
    replicates: int = spec(32, "independent projections A (the model-size exponent)", min=1, max=256)
    curve_replicates: int = spec(8, "of them, the projections of the GD and SGD curves", min=1, max=256)
    ols_ratio: int = spec(8, "P/N of the least-squares (t → ∞) runs", min=2, max=256)
    gd_sizes: tuple[int, ...] = spec((16, 64), "N of the full-batch GD curves (in model_sizes)", min=2, max=2048,
                                     max_items=8)
    gd_ratio: int = spec(64, "P/N of the full-batch GD curves", min=2, max=1024)
    gd_steps: int = spec(4096, "last step of the finite-N GD curves", min=1, max=10**7)
    sgd_sizes: tuple[int, ...] = spec((16, 64), "N of the one-pass SGD curves (in model_sizes)", min=2, max=2048,
                                      max_items=8)
    sgd_lr: float = spec(0.15, "SGD step γ in units of 1/tr K of the draw (at most 1/2: the Volterra kernel's "
                         "mass is then <= 1/2, the expected loss bounded)", min=0.0, max=0.5, min_exclusive=True)
    batch: int = spec(1, "SGD batch size B", min=1, max=1024)
    sgd_steps: int = spec(2000, "one-pass SGD steps", min=2, max=10**6)
    sgd_chains: int = spec(16, "independent SGD runs per projection", min=1, max=256)

    @property
    def a(self) -> float:
        return float(self.target_exponent)

    @property
    def b(self) -> float:
        return float(self.spectrum_exponent)

    def time_window(self) -> tuple[float, float]:
        """(t_lo, t_hi): the steps at which GD has learned ``time_modes`` modes, t = k^b/(2η)."""
        lo, hi = self.time_modes
        return lo**self.b / (2 * self.lr), hi**self.b / (2 * self.lr)

    def check(self) -> None:
        super().check()
        S.check_task(self.target_exponent, self.spectrum_exponent)
        m = self.features
        if len(self.time_modes) != 2 or not self.time_modes[0] < self.time_modes[1]:
            raise BadInput("time_modes", self.time_modes, "two mode counts, first < last")
        if self.time_modes[1] > self.samples:
            raise BadInput("time_modes", self.time_modes, f"mode counts below the samples P = {self.samples}")
        if self.time_window()[1] > 10**7:
            raise BadInput("time_modes", self.time_modes, "a window ending before step 10^7 ((k^b)/(2η))")
        _increasing("data_sizes", self.data_sizes, 3)
        _increasing("model_sizes", self.model_sizes, 3)
        for name in ("gd_sizes", "sgd_sizes"):
            values = getattr(self, name)
            _increasing(name, values, 1)
            if not set(values) <= set(self.model_sizes):
                raise BadInput(name, values, f"sizes among model_sizes {self.model_sizes}")
        if self.data_sizes[-1] > self.samples:
            raise BadInput("samples", self.samples, f">= the largest data size {self.data_sizes[-1]}")
        if self.samples >= m:
            raise BadInput("samples", self.samples, f"fewer samples than features M = {m} (ridgeless interpolation)")
        if self.model_sizes[-1] >= m:
            raise BadInput("model_sizes", self.model_sizes, f"sizes below the features M = {m}")
        n_max = self.model_sizes[-1]
        check_budget("samples", self.samples, self.samples * m, MAX_ELEMENTS, "features of one N = ∞ data set (P·M)")
        check_budget("model_sizes", self.model_sizes, n_max * m, MAX_ELEMENTS, "entries of a projection (N_max·M)")
        if self.curve_replicates > self.replicates:
            raise BadInput("curve_replicates", self.curve_replicates, f"at most replicates = {self.replicates}")
        check_budget("gd_ratio", self.gd_ratio, self.curve_replicates * self.gd_ratio * max(self.gd_sizes) ** 2,
                     MAX_ELEMENTS, "features of the GD data sets (curve_replicates·gd_ratio·N²)")
        check_budget("ols_ratio", self.ols_ratio, self.replicates * self.ols_ratio * n_max**2, MAX_ELEMENTS,
                     "features of the least-squares data sets (replicates·ols_ratio·N²)")
        check_budget("sgd_steps", self.sgd_steps, self.sgd_steps * self.curve_replicates * self.sgd_chains * self.batch
                     * max(self.sgd_sizes), 10**11, "SGD sample entries (steps·curve_replicates·chains·batch·N)")
        check_budget("trials", self.trials, self.trials * self.samples * m, 10**10, "N = ∞ draws (trials·P·M)")


# ================================================================================ the theory's side

def _slope(xs, ys) -> float:
    """−d log L / d log x by least squares over the points."""
    return -float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


def _time_points(cfg: ScalingExponentsConfig) -> np.ndarray:
    return _log_steps(*cfg.time_window(), 12)


def window_checks(cfg: ScalingExponentsConfig) -> pd.DataFrame:
    """Per exponent: the prediction, the DE slope over the config's window at M and at 16M, the window's span
    and the nearby phase boundary (module docstring)."""
    ex = S.exponents(cfg.a, cfg.b)
    rows = {}
    ts = _time_points(cfg)
    for m in (cfg.features, 16 * cfg.features):
        lam, power, _ = S.power_law_task(cfg.a, cfg.b, m)
        slopes = {"time": _slope(ts, S.population_gd(lam, power, cfg.lr, ts)),
                  "data": _slope(cfg.data_sizes, [S.ridgeless_loss(lam, power, p) for p in cfg.data_sizes]),
                  "model": _slope(cfg.model_sizes, [S.best_in_class_loss(lam, power, n) for n in cfg.model_sizes])}
        for key, value in slopes.items():
            rows.setdefault(key, {})["de" if m == cfg.features else "de_16M"] = value
    spans = {"time": ts[-1] / ts[0], "data": cfg.data_sizes[-1] / cfg.data_sizes[0],
             "model": cfg.model_sizes[-1] / cfg.model_sizes[0]}
    model_edge = (f"a − 1 = {cfg.a - 1:g} is within {S.BOUNDARY_MARGIN:g} of b = {cfg.b:g}, where the model "
                  "exponent changes form") if abs(cfg.a - 1 - cfg.b) < S.BOUNDARY_MARGIN else None
    edges = {"time": None, "data": ex.data_boundary, "model": model_edge}
    return pd.DataFrame([{"exponent": k, "predicted": getattr(ex, k), "de_window": v["de"], "de_window_16M": v["de_16M"],
                          "span": spans[k], "boundary": edges[k]} for k, v in rows.items()])


def precondition(row: pd.Series) -> str | None:
    """Why an exponent cannot be judged on its window (module docstring), or None."""
    pred, de, de16 = row["predicted"], row["de_window"], row["de_window_16M"]
    if row["boundary"]:
        return f"phase boundary: {row['boundary']} (logarithmic corrections)"
    if row["span"] < MIN_SPAN:
        return f"fit window too short: it spans {row['span']:.3g}x, less than a decade"
    if abs(de - de16) > CUTOFF_SHIFT * pred:
        return (f"the cut-off M binds: the DE slope over the window is {de:.4g} at M and {de16:.4g} at 16M "
                f"(more than {CUTOFF_SHIFT:.0%} apart)")
    if abs(de / pred - 1) > PREASYMPTOTIC_SHARE * EXPONENT_TOL:
        return (f"pre-asymptotic window: the DE slope over it is {de:.4g}, {abs(de / pred - 1):.1%} from the "
                f"asymptotic {pred:.4g} (more than {PREASYMPTOTIC_SHARE * EXPONENT_TOL:.0%})")
    return None


def predict_exponents(cfg: ScalingExponentsConfig) -> Result:
    """Exponents, phase, the DE curves in t, P and N (the config's M), and the window checks (no training)."""
    ex = S.exponents(cfg.a, cfg.b)
    lam, power, _ = S.power_law_task(cfg.a, cfg.b, cfg.features)
    ts = _log_steps(1, 4 * cfg.time_window()[1], 40)
    ns = np.asarray(cfg.model_sizes)
    best = np.array([S.best_in_class_loss(lam, power, int(n)) for n in ns])
    p = cfg.ols_ratio * ns
    summary = {f"predicted_{k}": v for k, v in ex.as_dict().items() if isinstance(v, float)}
    return Result(series={"time": pd.DataFrame({"step": ts, "loss": S.population_gd(lam, power, cfg.lr, ts)}),
                          "data": pd.DataFrame({"samples": list(cfg.data_sizes),
                                                "loss": [S.ridgeless_loss(lam, power, q) for q in cfg.data_sizes]}),
                          "model": pd.DataFrame({"model_size": ns, "best_loss": best,
                                                 "loss": best * (1 + ns / (p - ns - 1))}),
                          "windows": window_checks(cfg)},
                  summary={**summary, "phase": ex.phase.name}, arrays={"exponents": ex})


# ================================================================================ measurement: N = ∞

def kernel_limit_runs(cfg: ScalingExponentsConfig, progress: Progress) -> tuple[pd.DataFrame, pd.DataFrame]:
    """GD in time on ``samples`` vectors and ridgeless regression on nested subsets, ``trials`` times (N = ∞);
    the population loss ½(w − w*)ᵀΛ(w − w*) of each."""
    lam, _, w_star = S.power_law_task(cfg.a, cfg.b, cfg.features)
    lam_t, w_t = torch.as_tensor(lam), torch.as_tensor(w_star)
    gen = generator(cfg.seed + 11)
    steps = torch.as_tensor(_log_steps(1, 4 * cfg.time_window()[1], 40), dtype=torch.float64)
    time_rows, data_rows = [], []
    p_all = cfg.samples
    for trial in range(cfg.trials):
        psi = power_law_features(p_all, lam_t, gen)  # (P, M)
        y = psi @ w_t
        gram = psi @ psi.T
        for p in cfg.data_sizes:  # ridgeless on the first p samples: w = Ψ_pᵀ G_p⁻¹ y_p
            err = psi[:p].T @ torch.linalg.solve(gram[:p, :p], y[:p]) - w_t
            data_rows.append({"trial": trial, "samples": p, "loss": 0.5 * float((lam_t * err * err).sum())})
        g, u = torch.linalg.eigh(gram)  # full-batch GD in closed form through the Gram eigensystem
        keep = g > g.max() * 1e-12
        g, u = g[keep], u[:, keep]
        basis, proj = psi.T @ u, u.T @ y
        shrink = 1 - cfg.lr * g / p_all
        coef = (1 - shrink[None, :] ** steps[:, None]) / g * proj  # (steps, r)
        err = coef @ basis.T - w_t
        loss = 0.5 * (err * err * lam_t).sum(-1)
        time_rows += [{"trial": trial, "step": int(t), "loss": float(v)} for t, v in zip(steps, loss)]
        progress.advance(1)
    return pd.DataFrame(time_rows), pd.DataFrame(data_rows)


# ================================================================================ measurement: finite N

@dataclass
class Draws:
    """The exact eigensystems of the drawn projections per model size: ``mu``/``theta`` (R, n_sizes, N_max),
    zero-padded beyond N, and ``floor`` (R, n_sizes), the best student's loss L_N."""

    sizes: np.ndarray
    mu: np.ndarray
    theta: np.ndarray
    floor: np.ndarray

    def at(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mu, theta, floor) of model size n: (R, n), (R, n), (R,)."""
        j = int(np.flatnonzero(self.sizes == n)[0])
        return self.mu[:, j, :n], self.theta[:, j, :n], self.floor[:, j]


def draw_projections(cfg: ScalingExponentsConfig) -> Draws:
    """``replicates`` projections A; for each N the exact eigensystem of K = A_N Λ A_Nᵀ/N (the draw's theory)."""
    lam, _, w_star = S.power_law_task(cfg.a, cfg.b, cfg.features)
    lam_t, w_t = torch.as_tensor(lam), torch.as_tensor(w_star)
    gen = generator(cfg.seed + 23)
    ns = np.asarray(cfg.model_sizes)
    n_max = int(ns[-1])
    total = float(np.sum(lam * w_star**2))
    mu = np.zeros((cfg.replicates, len(ns), n_max))
    theta = np.zeros_like(mu)
    floor = np.zeros((cfg.replicates, len(ns)))
    for r in range(cfg.replicates):
        A = random_projection(n_max, cfg.features, gen)
        full_k, full_g = (A * lam_t) @ A.T, A @ (lam_t * w_t)
        for j, n in enumerate(ns):
            es = S.regression_eigensystem((full_k[:n, :n] / n).numpy(), (full_g[:n] / math.sqrt(n)).numpy(), total)
            mu[r, j, :n], theta[r, j, :n], floor[r, j] = es.mu, es.theta, es.floor
    return Draws(ns, mu, theta, floor)


def _population_loss(mu, theta, floor, w):
    return floor + 0.5 * (mu * (w - theta) ** 2).sum(-1)


def least_squares_runs(cfg: ScalingExponentsConfig, draws: Draws) -> pd.DataFrame:
    """Least squares (GD's t → ∞ limit) on P = ols_ratio·N samples of each model, each replicate."""
    gen = generator(cfg.seed + 31)
    rows = []
    for n in draws.sizes:
        mu, theta, floor = (torch.as_tensor(v) for v in draws.at(int(n)))
        x, y = regression_samples(cfg.ols_ratio * int(n), mu, theta, floor, gen)
        xt = x.transpose(-1, -2)
        w = torch.linalg.solve(xt @ x, xt @ y.unsqueeze(-1)).squeeze(-1)
        loss = _population_loss(mu, theta, floor, w)
        rows += [{"replicate": r, "model_size": int(n), "loss": float(v), "floor": float(f)}
                 for r, (v, f) in enumerate(zip(loss, floor))]
    return pd.DataFrame(rows)


def _curve_draws(cfg: ScalingExponentsConfig, draws: Draws, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(v[: cfg.curve_replicates] for v in draws.at(n))


def gd_curve_runs(cfg: ScalingExponentsConfig, draws: Draws) -> pd.DataFrame:
    """Full-batch GD from w = 0 on P = gd_ratio·N samples (closed form through the sample covariance's
    eigensystem; step ``lr``/μ_max of the draw), beside the exact population-GD prediction of the same draw."""
    gen = generator(cfg.seed + 37)
    steps = _log_steps(1, cfg.gd_steps, 30)
    st = torch.as_tensor(steps, dtype=torch.float64)
    rows = []
    for n in cfg.gd_sizes:
        mu_np, theta_np, floor_np = _curve_draws(cfg, draws, n)
        mu, theta, floor = (torch.as_tensor(v) for v in (mu_np, theta_np, floor_np))
        p = cfg.gd_ratio * n
        x, y = regression_samples(p, mu, theta, floor, gen)
        xt = x.transpose(-1, -2)
        s, q = torch.linalg.eigh(xt @ x / p)
        proj = (q.transpose(-1, -2) @ (xt @ y.unsqueeze(-1) / p)).squeeze(-1)  # (R, n)
        lr = cfg.lr / mu_np.max(-1)  # (R,)
        predicted = np.stack([S.population_gd(mu_np[r], mu_np[r] * theta_np[r] ** 2, float(lr[r]), steps,
                                              floor_np[r]) for r in range(len(lr))])
        shrink = 1 - torch.as_tensor(lr)[:, None] * s  # (R, n)
        coef = (1 - shrink[:, None, :] ** st[None, :, None]) / s[:, None, :] * proj[:, None, :]  # (R, T, n)
        w = coef @ q.transpose(-1, -2)
        loss = _population_loss(mu[:, None, :], theta[:, None, :], floor[:, None], w)  # (R, T)
        rows += [{"replicate": r, "model_size": int(n), "step": int(t), "loss": float(loss[r, k]),
                  "predicted": float(predicted[r, k])} for r in range(len(lr)) for k, t in enumerate(steps)]
    return pd.DataFrame(rows)


def sgd_losses(mu, theta, floor, lr, batch: int, chains: int, steps, gen: torch.Generator,
               progress: Progress | None = None, dtype: torch.dtype = torch.float32, chunk: int = 256,
               whole_chunks: bool = False) -> np.ndarray:
    r"""One-pass SGD from w = 0 on the student's features in K's eigenbasis, ``chains`` independent runs per
    draw, all advancing together: per step B fresh samples u = z·√μ (z ~ N(0, I)), y = θ·u + ε (ε ~ N(0, 2L_N)),
    residual r = u·(w − θ) − ε, and :math:`w \leftarrow w - \tfrac{\gamma}{B}\sum_b r_b u_b` (the one-pass SGD
    of Paquette et al. 2024, arXiv 2405.15074, written in K's eigenbasis). Returns
    the population loss :math:`L_N + \tfrac12\sum_i\mu_i(w_i - \theta_i)^2`, averaged over the chains, at
    ``steps`` (increasing, from 0): shape (R, len(steps)), float64.

    ``mu``, ``theta`` (R, n), ``floor`` (R,) and ``lr`` (R,) of the R draws. The draws z, ε are float32
    (torch's generator, in chunks of ``chunk`` steps: shapes (span, R, chains, B, n) then (span, R, chains, B)),
    scaled per chunk to u = z·√(γμ/B) and ε' = ε·√(γ/B), so that a step is e ← e − Σ_b (u_b·e − ε'_b) u_b on the
    iterate e = w − θ, kept in ``dtype`` and updated in place (float32: the loss, read out in float64, agrees
    with a float64 iterate on the same draws to ≪ SGD's noise, tests; float32 draws cost ≈ 10 ns an element
    on one thread here, a float32 step ≈ 2-3 ns a coordinate, against ≈ 27 ns for the former float64 numpy
    kernel; at most :data:`SMALL_SGD` coordinates a step, numpy does the same float32 arithmetic on the same
    memory, its per-call overhead the lower). ``whole_chunks``: draw every chunk whole, the last one's unused steps too, so that the draws of
    step t do not depend on the horizon (a shorter run is then a prefix of a longer one)."""
    mu = np.asarray(mu, dtype=np.float64)
    R, n = mu.shape
    C, B = int(chains), int(batch)
    steps = np.asarray(steps, dtype=np.int64)
    mu64 = torch.as_tensor(mu).view(R, 1, n)
    floor = np.asarray(floor, dtype=np.float64)
    root = np.sqrt(np.asarray(lr, dtype=np.float64) / B)  # √(γ/B): u = z·√(γμ/B) carries the step
    scale = torch.as_tensor(np.sqrt(mu) * root[:, None]).to(dtype).view(R, 1, 1, n)
    noise = torch.as_tensor(np.sqrt(2 * floor) * root).to(dtype).view(1, R, 1, 1)
    err = (-torch.as_tensor(np.asarray(theta, dtype=np.float64))).to(dtype).view(R, 1, n).expand(R, C, n).clone()
    flat = err.numpy()  # the same memory as err
    small = R * C * n <= SMALL_SGD
    out = np.empty((R, len(steps)))
    horizon = int(steps[-1])
    j, t = 0, 0
    while t <= horizon:
        span, start = (chunk if whole_chunks else min(chunk, horizon + 1 - t)), t
        z = torch.randn((span, R, C, B, n), generator=gen, dtype=torch.float32).to(dtype).mul_(scale)
        eps = torch.randn((span, R, C, B), generator=gen, dtype=torch.float32).to(dtype).mul_(noise)
        if B == 1 and small:  # numpy on the same memory: its per-call overhead is lower on small arrays
            draws = zip(z.numpy()[:, :, :, 0, :], eps.numpy()[:, :, :, 0])
        elif B == 1:
            draws = zip(z.squeeze(3).unbind(0), eps.squeeze(3).unbind(0))
        else:
            draws = zip(z.unbind(0), eps.unsqueeze(-1).unbind(0))
        for u, e_ in draws:
            if t > horizon:
                break
            if j < len(steps) and steps[j] == t:
                e = err.double()
                out[:, j] = floor + 0.5 * (mu64 * e * e).sum(-1).mean(-1).numpy()
                j += 1
            if B == 1 and small:  # e ← e − (u·e − ε')u
                resid = np.einsum("rci,rci->rc", u, flat) - e_
                flat -= resid[..., None] * u
            elif B == 1:
                resid = torch.linalg.vecdot(u, err).sub_(e_)  # (R, C)
                err.addcmul_(u, resid.unsqueeze(-1), value=-1)
            else:
                resid = torch.matmul(u, err.unsqueeze(-1)).sub_(e_)  # (R, C, B, 1)
                err.sub_((u * resid).sum(2))
            t += 1
        if progress is not None:
            progress.advance(t - start)
    return out


def sgd_curve_runs(cfg: ScalingExponentsConfig, draws: Draws, progress: Progress) -> pd.DataFrame:
    """One-pass SGD from w = 0 (fresh samples each step, step γ = sgd_lr/tr K, batch B), ``sgd_chains`` runs
    per projection, all advancing together (:func:`sgd_losses`); beside the Volterra prediction of the draw."""
    gen = generator(cfg.seed + 41)
    steps = _log_steps(1, cfg.sgd_steps, 30)
    steps = np.concatenate([[0], steps])
    rows = []
    for n in cfg.sgd_sizes:
        mu, theta, floor = _curve_draws(cfg, draws, n)
        lr = cfg.sgd_lr / mu.sum(-1)  # γ = sgd_lr/tr K per draw: the Volterra kernel's mass stays <= 1/2
        predicted = S.sgd_volterra(mu, mu * theta**2, lr, cfg.batch, steps, floor)  # (R, T)
        out = sgd_losses(mu, theta, floor, lr, cfg.batch, cfg.sgd_chains, steps, gen, progress, chunk=200)
        rows += [{"replicate": r, "model_size": int(n), "step": int(tt), "loss": float(out[r, k]),
                  "predicted": float(predicted[r, k])} for r in range(len(mu)) for k, tt in enumerate(steps)]
    return pd.DataFrame(rows)


def measure_exponents(cfg: ScalingExponentsConfig, progress: Progress | None = None) -> Result:
    """All the runs (module docstring) and the fitted exponents."""
    progress = progress or NullProgress()
    progress.start(cfg.trials + len(cfg.sgd_sizes) * (cfg.sgd_steps + 1), "scaling exponents")
    time_runs, data_runs = kernel_limit_runs(cfg, progress)
    draws = draw_projections(cfg)
    ols = least_squares_runs(cfg, draws)
    gd = gd_curve_runs(cfg, draws)
    sgd = sgd_curve_runs(cfg, draws, progress)
    series = {"time_runs": time_runs, "data_runs": data_runs, "model_runs": ols, "gd_curves": gd, "sgd_curves": sgd}
    losses = pd.concat([time_runs["loss"], data_runs["loss"], ols["loss"], gd["loss"], sgd["loss"]])
    diverged = None if np.all(np.isfinite(losses.to_numpy())) else 0
    fits = fit_exponents(cfg, series) if diverged is None else pd.DataFrame()
    series["fits"] = fits
    summary = {f"measured_{r.exponent}": r.measured for r in fits.itertuples()}
    return Result(series=series, summary=summary, diverged_at=diverged)


def _mean_curve(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    return frame.groupby(x, as_index=False)["loss"].mean()


def fit_exponents(cfg: ScalingExponentsConfig, series: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """log_log_fit of the mean loss in each fit window (module docstring): the exponent −slope with its
    95% interval."""
    lo, hi = cfg.time_window()
    windows = {"time": (series["time_runs"], "step", lo, hi),
               "data": (series["data_runs"], "samples", cfg.data_sizes[0], cfg.data_sizes[-1]),
               "model": (series["model_runs"], "model_size", cfg.model_sizes[0], cfg.model_sizes[-1])}
    rows = []
    for key, (frame, x, a, b) in windows.items():
        curve = _mean_curve(frame, x)
        curve = curve[(curve[x] >= a * (1 - 1e-9)) & (curve[x] <= b * (1 + 1e-9))]
        fit = log_log_fit(curve[x].to_numpy(float), curve["loss"].to_numpy())
        rows.append({"exponent": key, "measured": -fit.slope, "low": -fit.slope_interval[1],
                     "high": -fit.slope_interval[0], "points": fit.n, "first": float(curve[x].min()),
                     "last": float(curve[x].max())})
    return pd.DataFrame(rows)


def curve_gap(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model size: √mean_t (L̄_measured/L̄_predicted − 1)² of the replicate means (step 0 left out: both are
    the target's variance there)."""
    mean = frame[frame.step > 0].groupby(["model_size", "step"], as_index=False)[["loss", "predicted"]].mean()
    mean["ratio"] = mean["loss"] / mean["predicted"] - 1
    return mean.groupby("model_size")["ratio"].apply(lambda r: float(np.sqrt(np.mean(r**2)))).reset_index(name="nrms")


# ================================================================================ the law

def _super_easy(cfg: ScalingExponentsConfig) -> bool:
    return cfg.a - 1 > cfg.b


@register
class ScalingExponents(Experiment):
    """Verdicts: time, data and model-size exponents within 10%; the data/model asymmetry of super-easy tasks
    within 10%; exact GD (nRMS ≤ 0.05) and SGD-Volterra (≤ 0.1) loss curves (module docstring)."""

    name = "scaling-exponents"
    law = ("A linear model on features with variances k^-b and target power k^-a has loss exponents (a − 1)/b in "
           "training time, min(a − 1, 2b) in data and min(a − 1, b) in model size, known before training.")
    citation = ("Bordelon, Atanasov & Pehlevan 2024, arXiv 2402.01092; Paquette, Paquette, Xiao & Pennington 2024, "
                "arXiv 2405.15074; Maloney, Roberts & Sully 2022, arXiv 2210.16859")
    Config = ScalingExponentsConfig

    def default_config(self) -> ScalingExponentsConfig:
        """The super-easy task (a, b) = (5, 3) with more trials and replicates."""
        return ScalingExponentsConfig(trials=12, replicates=64, curve_replicates=16, sgd_chains=16)

    def quick_config(self) -> ScalingExponentsConfig:
        return ScalingExponentsConfig()

    def smoke_config(self) -> ScalingExponentsConfig:
        return ScalingExponentsConfig(trials=2, replicates=2, curve_replicates=2, sgd_chains=2, sgd_steps=200, gd_sizes=(16,),
                                      sgd_sizes=(16,), model_sizes=(12, 16, 32, 64, 128))

    def lawbook(self, quick: bool = True) -> list[tuple[str, ScalingExponentsConfig]]:
        base = self.quick_config() if quick else self.default_config()
        from dataclasses import replace
        return [("super-easy", base),
                ("hard", replace(base, target_exponent=3.0, spectrum_exponent=3.0))]

    def criteria(self) -> list[Criterion]:
        why = ("the DE slope over the same window is within 5% of the asymptote (checked, else inconclusive) and the "
               "fit of the mean of 6 trials / 32 projections scatters by ≤ 5% (seeds 0-2): 10% still separates the "
               "exponent from its rivals (model b = 3 against the summary's 4 at the super-easy task: 33%)")
        return [
            Criterion("time_exponent", "|fitted / predicted − 1| of the GD loss exponent in t, (a − 1)/b",
                      EXPONENT_TOL, why),
            Criterion("data_exponent", "|fitted / predicted − 1| of the ridgeless exponent in P, min(a − 1, 2b)",
                      EXPONENT_TOL, why),
            Criterion("model_exponent", "|fitted / predicted − 1| of the least-squares exponent in N, min(a − 1, b)",
                      EXPONENT_TOL, why),
            Criterion("asymmetry", "|(data / model exponent) / (min(a − 1, 2b)/b) − 1|, super-easy tasks",
                      EXPONENT_TOL, "each exponent within ≤ 5%; the summary's ratio 1 is 25% below the predicted 4/3 "
                                    "at a = 5, b = 3", when="super-easy tasks, a − 1 > b", applies=_super_easy),
            Criterion("gd_curve", "worst N of √mean_t (L_GD / L_population-GD − 1)² (replicate means)", GD_TOL,
                      "P = 64N samples: the sample loss's minimiser is off by ≈ N/P = 1.6% of the floor"),
            Criterion("sgd_curve", "worst N of √mean_t (L_SGD / L_Volterra − 1)² (replicate × chain means)", SGD_TOL,
                      "the Volterra risk is the exact expectation; the mean of 8 × 16 one-pass runs fluctuates by ≤ 6% "
                      "(seeds 0-5)"),
        ]

    def counterexamples(self) -> list[Counterexample]:
        return [
            Counterexample("exponents shifted by 20%", ("time_exponent", "data_exponent", "model_exponent"),
                           perturb=_shift_exponents,
                           why="every measured loss multiplied by x^(−0.2·predicted): a law with exponents 20% "
                               "steeper than the theory's must be caught (10% tolerance)"),
            Counterexample("model exponent at 2b (the summary)", ("asymmetry", "model_exponent"),
                           perturb=_summary_model_exponent,
                           why="the world in which model size saturates at 2b like data (a published summary): "
                               "the model curve steepened to the data exponent min(a − 1, 2b) = 4; the ratio is 1, "
                               "not 2"),
            Counterexample("curves with a 30% faster clock", ("gd_curve", "sgd_curve"), perturb=_faster_clock,
                           why="the GD and SGD loss curves read at 1.3t (a step size 30% larger than the one "
                               "predicted for): the early decay is off by far more than 5% / 10%"),
            Counterexample("finite P at a = 6, b = 2", ("time_exponent",),
                           config=ScalingExponentsConfig(target_exponent=6.0, spectrum_exponent=2.0, samples=256,
                                                         data_sizes=(16, 32, 64, 128, 256), time_modes=(4.0, 32.0),
                                                         trials=2, replicates=2, curve_replicates=2,
                                                         model_sizes=(16, 32, 64), gd_sizes=(16,), sgd_sizes=(16,),
                                                         sgd_steps=50, sgd_chains=1),
                           why="the time exponent (a − 1)/b assumes P = ∞; on P = 256 samples the first modes' power "
                               "leaks into the sample covariance's slow directions, a P^-1 t^-(1-1/b) term that needs "
                               "P ≫ t^((a-b)/b) = t² here: measured 1.82-1.97 against 2.5 (seeds 0-2)"),
            Counterexample("GD on P = 2N samples", ("gd_curve",),
                           config=ScalingExponentsConfig(gd_ratio=2, trials=1, replicates=8, samples=64,
                                                         data_sizes=(4, 8, 16, 32, 64), time_modes=(2.0, 4.0),
                                                         model_sizes=(16, 32, 64), gd_sizes=(16, 64), sgd_sizes=(16,),
                                                         sgd_steps=50, sgd_chains=1),
                           why="full-batch GD on P = 2N samples is GD on a sample loss whose minimiser is far from the "
                               "population's (Gaussian least squares: excess N/(P − N − 1) ≈ 100% of the floor): the "
                               "population-GD prediction fails late in training (nRMS 0.27-0.43, seeds 0-2)"),
            Counterexample("cut-off binds at b = 1.2", ("time_exponent", "data_exponent", "model_exponent"),
                           expect="inconclusive",
                           config=ScalingExponentsConfig(spectrum_exponent=1.2, target_exponent=1.8, features=1024,
                                                         time_modes=(2.0, 64.0),
                                                         trials=2, replicates=2, curve_replicates=2, sgd_chains=1,
                                                         sgd_steps=100,
                                                         gd_sizes=(16,), sgd_sizes=(16,)),
                           why="at b = 1.2 the feature tail Σ_{k>M} k^−b falls as M^−0.2: at M = 1024 the DE slopes "
                               "move by more than 2% between M and 16M in every window, so no exponent is judged"),
        ]

    def predict(self, config: ScalingExponentsConfig) -> Result:
        return predict_exponents(config)

    def measure(self, config: ScalingExponentsConfig, progress: Progress | None = None) -> Result:
        return measure_exponents(config, progress)

    def verdict(self, config: ScalingExponentsConfig, prediction: Result, measurement: Result):
        windows = prediction.series["windows"].set_index("exponent")
        fits = measurement.series["fits"].set_index("exponent") if len(measurement.series["fits"]) else None
        quantities = {c.key: c.quantity for c in self.criteria()}
        out = []
        measured = {}
        for key in ("time", "data", "model"):
            row = windows.loc[key]
            pred = float(row["predicted"])
            if fits is None:
                out.append(self.make_verdict(f"{key}_exponent", quantities[f"{key}_exponent"], pred, float("nan"),
                                             float("nan"), inconclusive="the run diverged"))
                continue
            fit = fits.loc[key]
            measured[key] = float(fit["measured"])
            out.append(self.make_verdict(
                f"{key}_exponent", quantities[f"{key}_exponent"], pred, measured[key],
                abs(measured[key] / pred - 1), inconclusive=precondition(row),
                interval=(float(fit["low"]), float(fit["high"])), window=(float(fit["first"]), float(fit["last"])),
                de_window=float(row["de_window"]), de_window_16M=float(row["de_window_16M"])))
        if _super_easy(config):
            ex = prediction.arrays["exponents"] if "exponents" in prediction.arrays else S.exponents(config.a, config.b)
            pred_ratio = ex.data / ex.model
            ratio = measured["data"] / measured["model"] if {"data", "model"} <= set(measured) else float("nan")
            reasons = [precondition(windows.loc[k]) for k in ("data", "model")]
            out.append(self.make_verdict(
                "asymmetry", quantities["asymmetry"], pred_ratio, ratio, abs(ratio / pred_ratio - 1),
                inconclusive="; ".join(r for r in reasons if r) or None, summary_ratio=1.0))
        for key, name in (("gd_curve", "gd_curves"), ("sgd_curve", "sgd_curves")):
            gaps = curve_gap(measurement.series[name])
            worst = int(np.argmax(gaps["nrms"].to_numpy())) if len(gaps) else 0
            agreement = float(gaps["nrms"].max()) if len(gaps) else float("nan")
            out.append(self.make_verdict(key, quantities[key], 0.0, agreement, agreement,
                                         worst_model_size=int(gaps["model_size"].iloc[worst]) if len(gaps) else None,
                                         per_size=dict(zip(gaps["model_size"].tolist(), gaps["nrms"].tolist()))))
        return out

    def figures(self, config: ScalingExponentsConfig, prediction: Result, measurement: Result, outdir: Path):
        from matplotlib.ticker import NullFormatter

        from lmech.report import plotting as P

        fig, axes = P.panels(6, ncols=3, size=(4.6, 3.6))
        fits = measurement.series.get("fits", pd.DataFrame())
        fits = fits.set_index("exponent") if len(fits) else None
        ex = S.exponents(config.a, config.b)
        lo, hi = config.time_window()
        for ax, key, runs, x, label in ((axes[0], "time", "time_runs", "step", "GD step t (N = ∞)"),
                                        (axes[1], "data", "data_runs", "samples", "training samples P (ridgeless)"),
                                        (axes[2], "model", "model_runs", "model_size", "model size N (least squares)")):
            frame = measurement.series.get(runs)
            pred = prediction.series[key]
            ax.plot(pred[pred.columns[0]], pred["loss"], **P.THEORY, label="DE at this M")
            if frame is not None and len(frame):
                mean = _mean_curve(frame, x)
                ax.plot(mean[x], mean["loss"], "o", color="C0", markersize=4, label="measured (mean)")
                if fits is not None:
                    first, last = fits.loc[key, "first"], fits.loc[key, "last"]
                    anchor = mean[(mean[x] >= first) & (mean[x] <= last)]
                    xs = np.array([first, last])
                    y0 = float(np.exp(np.mean(np.log(anchor["loss"]) + getattr(ex, key) * np.log(anchor[x]))))
                    ax.plot(xs, y0 * xs ** -getattr(ex, key), color="C3", linewidth=2.2, alpha=0.7,
                            label=f"slope −{getattr(ex, key):.3g} (predicted)")
                    ax.set_title(f"{key}: measured {fits.loc[key, 'measured']:.3g}, predicted {getattr(ex, key):.3g}",
                                 fontsize=9)
            if key == "time":
                ax.axvspan(lo, hi, color="grey", alpha=0.12, label="fit window")
            ax.set(xscale="log", yscale="log", xlabel=label, ylabel="population loss")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.legend(fontsize=7, frameon=False)
        for ax, name, title in ((axes[3], "gd_curves", "full-batch GD vs exact population GD"),
                                (axes[4], "sgd_curves", "one-pass SGD vs Volterra")):
            frame = measurement.series.get(name)
            if frame is not None and len(frame):
                mean = frame[frame.step > 0].groupby(["model_size", "step"], as_index=False)[["loss", "predicted"]].mean()
                for color, (n, part) in zip(P.colors(mean.model_size.nunique()), mean.groupby("model_size")):
                    ax.plot(part["step"], part["loss"], color=color, **P.MEASURED, label=f"N = {n}")
                    ax.plot(part["step"], part["predicted"], **{**P.THEORY, "color": color})
            ax.set(xscale="log", yscale="log", xlabel="step", ylabel="population loss", title=title)
            P.theory_legend(ax)
        draw_phase_diagram(axes[5], config)
        return [P.save(fig, outdir / "scaling-exponents.png")]


def draw_phase_diagram(ax, config: ScalingExponentsConfig) -> None:
    """The (b, a) plane: the boundaries a − 1 = b (hard / super-easy, phase Ia / II), a = 2b (II / III) and
    a − 1 = 2b (the data exponent saturates), with this config marked."""
    b = np.linspace(1.0, max(4.0, config.b + 0.5), 50)
    ax.plot(b, 1 + b, color="C0", label="a − 1 = b (model saturates)")
    ax.plot(b, 2 * b, color="C1", label="a = 2b (phase II / III)")
    ax.plot(b, 1 + 2 * b, color="C2", linestyle=":", label="a − 1 = 2b (data saturates)")
    ax.fill_between(b, 1, 1 + b, color="C0", alpha=0.08)
    for x, y, text in ((0.75, 0.1, "Ia (hard)"), (0.5, 0.42, "II"), (0.12, 0.6, "III")):
        ax.text(x, y, text, fontsize=8, transform=ax.transAxes)
    ax.plot([config.b], [config.a], "*", color="C3", markersize=14, label=f"this run (a = {config.a:g}, b = {config.b:g})")
    ax.set(xlabel="spectrum exponent b", ylabel="target exponent a", ylim=(1, max(9.0, config.a + 1)),
           title=f"phase {S.phase(config.a, config.b).name} (compute-optimal SGD)")
    from lmech.report import plotting as P

    P.legend_below(ax)


# ================================================================================ counterexamples

def _copy(measurement: Result) -> Result:
    return Result(series={k: v.copy() for k, v in measurement.series.items()}, summary=dict(measurement.summary),
                  arrays=dict(measurement.arrays), diverged_at=measurement.diverged_at)


def _refit(config: ScalingExponentsConfig, out: Result) -> Result:
    out.series["fits"] = fit_exponents(config, out.series)
    return out


def _shift_exponents(config, prediction, measurement):
    out = _copy(measurement)
    ex = S.exponents(config.a, config.b)
    for runs, x, key in (("time_runs", "step", "time"), ("data_runs", "samples", "data"),
                         ("model_runs", "model_size", "model")):
        frame = out.series[runs]
        frame["loss"] = frame["loss"] * frame[x].astype(float) ** (-0.2 * getattr(ex, key))
    return _refit(config, out)


def _summary_model_exponent(config, prediction, measurement):
    out = _copy(measurement)
    ex = S.exponents(config.a, config.b)
    frame = out.series["model_runs"]
    frame["loss"] = frame["loss"] * frame["model_size"].astype(float) ** (-(ex.data - ex.model))
    return _refit(config, out)


def _faster_clock(config, prediction, measurement):
    out = _copy(measurement)
    for name in ("gd_curves", "sgd_curves"):
        frame = out.series[name]
        parts = []
        for _, part in frame.groupby(["model_size", "replicate"], sort=False):
            part = part.copy()
            t = part["step"].to_numpy(float)
            ok = t > 0
            log_loss = np.log(part["loss"].to_numpy())
            part.loc[ok, "loss"] = np.exp(np.interp(np.log(1.3 * t[ok]), np.log(t[ok]), log_loss[ok]))
            parts.append(part)
        out.series[name] = pd.concat(parts).sort_index()
    return out
