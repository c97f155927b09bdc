"""Law: lazy and feature learning are one phase diagram, controlled by α√h.

Chizat, Oyallon & Bach 2019 (arXiv 1812.07956, Sec. 2): scale the centred model F(x) = α (f(x; θ) − f(x; θ0))
and train it by gradient descent on L(θ) = ℓ(F)/α². Then dF/dt = −Θ_f ∇_F ℓ, with Θ_f the tangent kernel
of f: the function-space dynamics start the same for every α, while the parameters move by O(1/α). As
α → ∞ the training is lazy: the kernel stays at its initial value and the trained F is kernel regression
with the initial NTK (for F(θ0) = 0 and the squared loss: F∞(x) = Θ(x, X) Θ(X, X)⁻¹ Y).

Geiger, Spigler, Jacot & Wyart 2020 ("Disentangling feature and lazy training in deep neural networks",
arXiv 1906.08034): for a network of width h in NTK parametrization each parameter moves by O(1/(α√h)),
so the relative change of the weights and of the tangent kernel depends on α and h only through α√h:
measurements from different widths collapse onto one curve in α√h, with the crossover from the feature
(rich) regime to the lazy regime at α√h = O(1) (α* ~ 1/√h).

Setting: a one-hidden-layer MLP in NTK parametrization (erf activation: smooth, so no unit switches on or
off abruptly, and its kernel is closed-form, Williams 1997) on ``n_train`` inputs on the sphere of radius √d with a smooth target (that of
:mod:`lmech.experiments.linearized_training`). For each width h and each value β of α√h (α = β/√h), the
centred model is trained by full-batch GD on ½·mean (F − y)²/α² until the training MSE is below
``loss_tol`` × mean y² ("to convergence"). The step is η = ``lr_fraction`` × 2n/λ_max(Θ_f), re-read from
the current eNTK every ``lr_every`` steps (and after any step that raised the loss): the kernel grows in
the rich regime, and GD is stable iff η < 2n/λ_max (the Gauss–Newton curvature of the loss is Θ_f/n).

Measured at the end: the kernel distance S(Θ_0, Θ_end) of Fort et al. 2020 (arXiv 2010.15110) on the
training inputs (:func:`lmech.instruments.ntk.kernel_distance`), the relative change ‖W − W0‖_F/‖W0‖_F of
the hidden-layer weights (:func:`lmech.instruments.features.relative_weight_change`), the test MSE.

Verdicts:

1. ``collapse_weights``: the relative weight change collapses in α√h. Collapse metric: with every width
   sampled at the same α√h values, spread(β) = max_h log m(β, h) − min_h log m(β, h); the metric is
   max_β spread(β) divided by the range of log m over the whole grid (≈ 3–4 decades). Threshold 0.1:
   the widths' curves differ by at most a tenth of the range the measurement spans (measured ≈ 0.01;
   the same metric against α alone, reported as ``spread_vs_alpha``, is 10–25× larger).
2. ``collapse_kernel``: the kernel distance collapses in α√h on the feature-learning side and through the
   crossover, α√h ≤ 1: max_β max_h S / min_h S ≤ 2 (measured ≈ 1.4; against α, ≈ 3 and more). Beyond the
   crossover the kernel's first-order change is a zero-mean fluctuation over units (the output weights
   are symmetric at initialization), of size 1/(α√h · √h), so S falls like 1/((α√h)² h): the lazy tail of
   S is not a function of α√h alone. ``lazy_tail_S_beta2_h`` reports S·(α√h)²·h at the largest α√h: the
   same number (≈ 3) for every width confirms it.
3. ``crossover``: β* = the α√h at which the (width-averaged) relative weight change crosses 1 — the
   weights have moved by their own size — must lie within a decade of 1, in [0.1, 10].
4. ``lazy_corner``: at the largest α√h and width, |test MSE of the network / test MSE of the α → ∞ limit
   − 1| ≤ 0.1 (the issue's tolerance). The limit is kernel gradient flow with the analytic NTK Θ∞ from
   F = 0, stopped by the networks' own rule (training MSE ≤ ``loss_tol`` · mean y²): stopping at a finite
   training loss regularizes, and the lazy network follows that flow (Chizat et al. 2019, Sec. 2). The
   converged ridgeless regression with Θ∞ and with the network's initial eNTK (which differs from Θ∞ by
   O(1/√h)) are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmech.config import MAX_ELEMENTS, MAX_PARAMETERS, MAX_STEPS, MAX_WIDTH, check_budget, mlp_parameters, spec
from lmech.data.synthetic import RegressionTask, generator, sphere_regression
from lmech.devices import resolve_device, resolve_dtype
from lmech.errors import BadInput
from lmech.experiments.base import Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.registry import register
from lmech.instruments.features import relative_weight_change
from lmech.instruments.ntk import empirical_ntk, kernel_distance
from lmech.models.mlp import ACTIVATIONS, mlp
from lmech.theory.kernels import mlp_kernels
from lmech.theory.linearized import linearized_predictions

HIDDEN_WEIGHT = "layers.0.weight"


@dataclass(frozen=True)
class LazyRichConfig(RunConfig):
    widths: tuple[int, ...] = spec((256, 1024, 4096), "hidden widths h", min=1, max=MAX_WIDTH, max_items=16)
    alpha_sqrt_h: tuple[float, ...] = spec((0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
                                           "values β of α√h (α = β/√h for every width)", min=0.0, max=1e6,
                                           min_exclusive=True, max_items=32)
    activation: str = spec("erf", "hidden nonlinearity (smooth, with a closed-form kernel; module docstring)",
                           choices=tuple(ACTIVATIONS))
    weight_std: float = spec(1.4142135623730951, "σ_w of both layers", min=0.0, max=100.0, min_exclusive=True)
    bias_std: float = spec(0.1, "σ_b of both layers", min=0.0, max=100.0)
    in_features: int = spec(8, "input dimension d (inputs on the sphere of radius √d)", min=2, max=4096)
    n_train: int = spec(48, "training inputs (full batch)", min=2, max=4096)
    n_test: int = spec(500, "test inputs", min=1, max=2**16)
    loss_tol: float = spec(1e-3, "converged when the training MSE ≤ loss_tol · mean y²", min=0.0, max=1.0,
                             min_exclusive=True)
    max_steps: int = spec(20000, "step cap per run (a run that hits it is reported as not converged)", min=1,
                           max=MAX_STEPS)
    lr_fraction: float = spec(0.45, "η = lr_fraction · 2n/λ_max(eNTK)", min=0.0, max=1.0, min_exclusive=True)
    lr_every: int = spec(10, "steps between re-readings of λ_max(eNTK)", min=1, max=MAX_STEPS)
    collapse_tolerance: float = spec(0.1, "verdict: collapse metric of the weight change (module docstring)", min=0.0,
                                     max=10.0, min_exclusive=True)
    kernel_collapse_max: float = spec(1.0, "the kernel-distance collapse is judged for α√h up to this value "
                                      "(module docstring: beyond it S falls like 1/(α²h²))", min=0.0, max=1e6,
                                      min_exclusive=True)
    kernel_collapse_factor: float = spec(2.0, "verdict: widths' kernel distances at the same α√h within this factor",
                                         min=1.0, max=1e3)
    lazy_tolerance: float = spec(0.1, "verdict: relative test-MSE gap to NTK regression in the lazy corner",
                                 min=0.0, max=10.0, min_exclusive=True)
    dtype: str = spec("float64", "training dtype", choices=("float32", "float64"))

    def check(self) -> None:
        super().check()
        if len(set(self.widths)) < 2:
            raise BadInput("widths", self.widths, "at least 2 distinct widths (a collapse compares widths)")
        if len(set(self.alpha_sqrt_h)) < 3:
            raise BadInput("alpha_sqrt_h", self.alpha_sqrt_h, "at least 3 distinct values")
        params = mlp_parameters(self.in_features, max(self.widths), 1)
        check_budget("widths", self.widths, params, MAX_PARAMETERS, "parameters of the widest network")
        check_budget("widths", self.widths, max(self.n_train, self.n_test) * params, MAX_ELEMENTS,
                     "elements of the widest network's per-example gradients (max(n_train, n_test)·parameters)")


def _task(cfg: LazyRichConfig) -> RegressionTask:
    return sphere_regression(cfg.n_train, cfg.n_test, cfg.in_features, generator(cfg.seed))


def _network(cfg: LazyRichConfig, width: int):
    """The width-h network; every β of one width starts from the same initialization."""
    seed = (cfg.seed * 1_000_003 + width * 1_009 + 11) % (2**63 - 1)
    return mlp(cfg.in_features, width, 1, cfg.activation, cfg.weight_std, cfg.bias_std, "ntk", seed=seed,
               dtype=resolve_dtype(cfg.dtype), device=resolve_device(cfg.device))


def ntk_regression_mse(cfg: LazyRichConfig, task: RegressionTask) -> tuple[float, float]:
    """The α → ∞ limit of the trained centred model: kernel gradient flow with the analytic NTK Θ∞ from F = 0.

    Returns (test MSE when the flow's training MSE first reaches ``loss_tol`` · mean y² — the stopping rule of
    the networks —, test MSE of the converged ridgeless regression Θ∞(x, X) Θ∞(X, X)⁻¹ Y).
    """
    x = torch.cat([task.x_train, task.x_test])
    _, k = mlp_kernels(x, None, 1, cfg.activation, cfg.weight_std, cfg.bias_std, "ntk")
    n = cfg.n_train
    k_train, k_test = k[:n, :n], k[n:, :n]
    scale = float(task.y_train.pow(2).mean())

    def run(t: float):
        p = linearized_predictions(k_train, task.y_train, t, 1.0, k_test_train=k_test, dynamics="flow")
        return float((p.train - task.y_train).pow(2).mean()) / scale, float((p.test - task.y_test).pow(2).mean())

    lo, hi = 0.0, 1.0
    while run(hi)[0] > cfg.loss_tol and hi < 1e12:
        lo, hi = hi, hi * 4
    for _ in range(60):  # bisection on the monotone training MSE of the flow
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if run(mid)[0] > cfg.loss_tol else (lo, mid)
    return run(hi)[1], run(math.inf)[1]


def _lr(cfg: LazyRichConfig, net, x: torch.Tensor) -> float:
    lam = float(torch.linalg.eigvalsh(empirical_ntk(net, x).double())[-1])
    return cfg.lr_fraction * 2.0 * x.shape[0] / lam


def train_centred(cfg: LazyRichConfig, task: RegressionTask, width: int, beta: float) -> dict:
    """Train F = α(f − f0), α = β/√h, by GD on ½·mean(F − y)²/α²; return the measurements (module docstring)."""
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    net = _network(cfg, width)
    alpha = beta / math.sqrt(width)
    x, y, x_test, y_test = (t.to(device, dtype) for t in (task.x_train, task.y_train, task.x_test, task.y_test))
    with torch.no_grad():
        f0, f0_test = net(x)[:, 0], net(x_test)[:, 0]
    theta0 = {k: p.detach().clone() for k, p in net.named_parameters()}
    k0 = empirical_ntk(net, x)
    k0_test = empirical_ntk(net, x_test, x)
    entk_pred = k0_test.double() @ torch.linalg.solve(k0.double(), y.double())
    params = list(net.parameters())
    scale = float(y.pow(2).mean())
    lr, prev, steps, converged, diverged = _lr(cfg, net, x), math.inf, 0, False, False
    for step in range(cfg.max_steps + 1):
        resid = alpha * (net(x)[:, 0] - f0) - y
        rel = float(resid.detach().pow(2).mean()) / scale
        if not math.isfinite(rel):
            diverged = True
            break
        if rel <= cfg.loss_tol:
            converged = True
            break
        if step == cfg.max_steps:
            break
        if step and (step % cfg.lr_every == 0 or rel > prev):
            lr = _lr(cfg, net, x)
        prev = rel
        loss = 0.5 * resid.pow(2).mean() / alpha**2
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
        steps = step + 1
    with torch.no_grad():
        f_test = alpha * (net(x_test)[:, 0] - f0_test)
    finite = not diverged and bool(torch.isfinite(f_test).all())
    k_end = empirical_ntk(net, x) if finite else None
    return {"width": width, "alpha_sqrt_h": beta, "alpha": alpha, "steps": steps, "converged": converged,
            "diverged": diverged, "train_mse_rel": rel,
            "kernel_distance": kernel_distance(k0, k_end) if finite else float("nan"),
            "weight_change": relative_weight_change(net, theta0)[HIDDEN_WEIGHT] if finite else float("nan"),
            "test_mse": float((f_test - y_test).double().pow(2).mean()) if finite else float("nan"),
            "init_entk_regression_mse": float((entk_pred - y_test.double()).pow(2).mean())}


def _common_curves(xs: dict, ms: dict, points: int = 25) -> tuple[np.ndarray, np.ndarray] | None:
    """log m of every width on a common log-x grid: the shared abscissae if there are ≥ 2, else ``points``
    values over the overlap of the widths' ranges (linear interpolation in log-log). None if impossible."""
    logs = {h: (np.log(np.asarray(xs[h], float)), np.log(np.asarray(ms[h], float))) for h in xs}
    if any(len(lx) < 2 or not np.all(np.isfinite(lm)) for lx, lm in logs.values()):
        return None
    lo = max(lx.min() for lx, _ in logs.values())
    hi = min(lx.max() for lx, _ in logs.values())
    if hi <= lo:
        return None
    shared = sorted(set.intersection(*(set(np.round(lx, 12)) for lx, _ in logs.values())))
    grid = np.array(shared) if len(shared) >= 2 else np.linspace(lo, hi, points)
    curves = []
    for lx, lm in logs.values():
        order = np.argsort(lx)
        curves.append(np.interp(grid, lx[order], lm[order]))
    return grid, np.array(curves)


def collapse_metric(xs: dict, ms: dict) -> float:
    """max over x of the spread of log m between widths, divided by the range of log m over the grid.

    ``xs[h]``, ``ms[h]``: abscissae (α√h or α) and measurements of width h, compared on a common grid
    (:func:`_common_curves`; with α√h shared by every width, the measured points themselves). NaN if a
    measurement is not positive or the ranges do not overlap.
    """
    common = _common_curves(xs, ms)
    if common is None:
        return float("nan")
    _, curves = common
    all_logs = np.log(np.concatenate([np.asarray(ms[h], float) for h in ms]))
    return float(np.max(curves.max(0) - curves.min(0)) / (all_logs.max() - all_logs.min()))


def collapse_factor(xs: dict, ms: dict) -> float:
    """max over x of max_h m / min_h m: the factor by which the widths disagree at the same abscissa."""
    common = _common_curves(xs, ms)
    if common is None:
        return float("nan")
    _, curves = common
    return float(np.exp(np.max(curves.max(0) - curves.min(0))))


def crossover(betas: np.ndarray, weight_change: np.ndarray) -> float:
    """The α√h at which the relative weight change crosses 1 (log-log interpolation); NaN if it does not."""
    order = np.argsort(betas)
    lb, lw = np.log(betas[order]), np.log(weight_change[order])
    for i in range(len(lb) - 1):
        if (lw[i] - 0.0) * (lw[i + 1] - 0.0) <= 0 and lw[i] != lw[i + 1]:
            return float(np.exp(lb[i] + (0.0 - lw[i]) * (lb[i + 1] - lb[i]) / (lw[i + 1] - lw[i])))
    return float("nan")


@register
class LazyRich(Experiment):
    """Verdicts: collapse of kernel distance and weight change in α√h, crossover near α√h = 1, lazy corner
    equals NTK regression (module docstring)."""

    name = "lazy-rich"
    law = ("Trained networks of output scale α and width h move their weights and tangent kernel by amounts that "
           "depend on α√h alone, crossing over from feature learning to lazy (kernel) training at α√h of order 1.")
    citation = ("Geiger, Spigler, Jacot & Wyart 2020, arXiv 1906.08034; Chizat, Oyallon & Bach 2019, "
                "arXiv 1812.07956 (Sec. 2)")
    Config = LazyRichConfig

    def quick_config(self) -> LazyRichConfig:
        return LazyRichConfig(widths=(256, 1024), alpha_sqrt_h=(0.1, 0.3, 1.0, 3.0, 10.0, 100.0))

    # -- theory ------------------------------------------------------------------------------------
    def predict(self, config: LazyRichConfig) -> Result:
        stopped, converged = ntk_regression_mse(config, _task(config))
        return Result(series={"lazy_limit": pd.DataFrame({
            "quantity": ["ntk_flow_test_mse_at_loss_tol", "ntk_regression_test_mse", "crossover"],
            "value": [stopped, converged, 1.0]})},
            summary={"ntk_flow_test_mse": stopped, "ntk_regression_test_mse": converged},
            arrays={"ntk_mse": stopped, "ntk_mse_converged": converged})

    # -- experiment --------------------------------------------------------------------------------
    def measure(self, config: LazyRichConfig, progress: Progress | None = None) -> Result:
        progress = progress or NullProgress()
        task = _task(config)
        progress.start(len(config.widths) * len(config.alpha_sqrt_h), "lazy-rich")
        rows = []
        for width in config.widths:
            for beta in config.alpha_sqrt_h:
                rows.append(train_centred(config, task, width, beta))
                progress.advance(1)
        grid = pd.DataFrame(rows)
        return Result(series={"grid": grid},
                      summary={"runs_converged": float(grid["converged"].mean()),
                               "max_steps_used": float(grid["steps"].max())})

    # -- verdict -----------------------------------------------------------------------------------
    def verdict(self, config: LazyRichConfig, prediction: Result, measurement: Result):
        grid = measurement.series["grid"]
        widths = sorted(set(grid["width"]))
        by = {h: grid[grid.width == h].sort_values("alpha_sqrt_h") for h in widths}
        betas = {h: by[h]["alpha_sqrt_h"].to_numpy() for h in widths}
        alphas = {h: by[h]["alpha"].to_numpy() for h in widths}
        weights = {h: by[h]["weight_change"].to_numpy() for h in widths}
        metric = collapse_metric(betas, weights)
        verdicts = [self.make_verdict(
            "collapse_weights", "max over α√h of the spread of log ‖W − W0‖/‖W0‖ (hidden layer) between widths / "
            "its range over the grid", 0.0, metric, metric, config.collapse_tolerance,
            spread_vs_alpha=collapse_metric(alphas, weights))]
        rich = {h: by[h]["alpha_sqrt_h"].to_numpy() <= config.kernel_collapse_max for h in widths}
        kernel = {h: by[h]["kernel_distance"].to_numpy() for h in widths}
        factor = collapse_factor({h: betas[h][rich[h]] for h in widths}, {h: kernel[h][rich[h]] for h in widths})
        lazy_tail = {h: float(by[h]["kernel_distance"].iloc[-1] * by[h]["alpha_sqrt_h"].iloc[-1] ** 2 * h)
                     for h in widths}
        verdicts.append(self.make_verdict(
            "collapse_kernel", f"max over α√h ≤ {config.kernel_collapse_max:g} of max_h S / min_h S (kernel distance "
            "S(Θ0, Θend) of the widths at the same α√h)", 1.0, factor, factor, config.kernel_collapse_factor,
            factor_vs_alpha=collapse_factor({h: alphas[h][rich[h]] for h in widths},
                                            {h: kernel[h][rich[h]] for h in widths}),
            lazy_tail_S_beta2_h=lazy_tail))
        mean_w = np.exp(np.mean([np.log(by[h]["weight_change"].to_numpy()) for h in widths], axis=0))
        beta_star = crossover(betas[widths[0]], mean_w)
        verdicts.append(self.make_verdict(
            "crossover", "α√h at which the width-averaged relative weight change crosses 1", 1.0, beta_star,
            beta_star, (0.1, 10.0)))
        corner = by[widths[-1]].iloc[-1]
        ntk_mse = prediction.arrays["ntk_mse"]
        gap = abs(float(corner["test_mse"]) / ntk_mse - 1.0)
        if not bool(corner["converged"]):
            gap = float("nan")
        verdicts.append(self.make_verdict(
            "lazy_corner", f"|test MSE(network, α√h={corner['alpha_sqrt_h']:g}, h={widths[-1]}) / test MSE(NTK "
            "regression) − 1|", ntk_mse, float(corner["test_mse"]), gap, config.lazy_tolerance,
            init_entk_regression=float(corner["init_entk_regression_mse"]),
            ntk_regression_converged=prediction.arrays["ntk_mse_converged"]))
        return verdicts

    # -- figures -----------------------------------------------------------------------------------
    def figures(self, config: LazyRichConfig, prediction: Result, measurement: Result, outdir: Path):
        from lmech.report import plotting as P

        grid = measurement.series["grid"]
        widths = sorted(set(grid["width"]))
        cols = P.colors(len(widths))
        fig, (ax_alpha, ax_s, ax_w, ax_test) = P.panels(4)
        for color, h in zip(cols, widths):
            sel = grid[grid.width == h].sort_values("alpha_sqrt_h")
            ax_alpha.plot(sel["alpha"], sel["kernel_distance"], "o", color=color, label=f"h={h}", **P.MEASURED)
            ax_s.plot(sel["alpha_sqrt_h"], sel["kernel_distance"], "o", color=color, label=f"h={h}", **P.MEASURED)
            ax_w.plot(sel["alpha_sqrt_h"], sel["weight_change"], "o", color=color, label=f"h={h}", **P.MEASURED)
            ax_test.plot(sel["alpha_sqrt_h"], sel["test_mse"], "o", color=color, label=f"h={h}", **P.MEASURED)
        ax_alpha.set(xscale="log", yscale="log", xlabel="output scale α", ylabel="kernel distance S(Θ0, Θend)",
                     title="against α: one curve per width")
        ax_s.set(xscale="log", yscale="log", xlabel="α√h", ylabel="kernel distance S(Θ0, Θend)",
                 title="against α√h: the widths collapse")
        ax_w.set(xscale="log", yscale="log", xlabel="α√h", ylabel="‖W − W0‖_F / ‖W0‖_F (hidden layer)",
                 title="relative weight change")
        b = np.array(sorted(set(grid["alpha_sqrt_h"])), dtype=float)
        lazy = grid[grid.alpha_sqrt_h == b.max()]["weight_change"].mean()
        ax_w.plot(b, lazy * b.max() / b, **P.THEORY, label="∝ 1/(α√h) (lazy)")
        ax_w.axhline(1.0, color="grey", linewidth=0.7, linestyle=":")
        ax_test.axhline(prediction.arrays["ntk_mse"], **P.THEORY, label="Θ∞ kernel flow, same stop (α → ∞)")
        ax_test.set(xscale="log", xlabel="α√h", ylabel="test MSE", title="test error")
        for ax in (ax_alpha, ax_s, ax_w, ax_test):
            ax.axvline(1.0, color="grey", linewidth=0.6, alpha=0.5)
            ax.legend(fontsize=7, frameon=False)
        return [P.save(fig, outdir / "lazy-rich.png")]
