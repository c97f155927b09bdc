"""Law: at the edge of stability, sharpness rises to the optimizer's stability threshold and stays there.

Cohen, Kaur, Li, Kolter & Talwalkar 2021 (arXiv 2103.00065): under full-batch gradient descent with
step size η the top Hessian eigenvalue rises (progressive sharpening) until it reaches 2/η, then hovers
there while the loss keeps falling, non-monotonically. Cohen et al. 2022 (arXiv 2207.14484): under
full-batch Adam the *preconditioned* sharpness λ1(P^{-1/2} H P^{-1/2}) equilibrates at
(2 + 2β1)/((1 − β1)η), i.e. 38/η at β1 = 0.9.

Both experiments train a tanh MLP (smooth, so the sharpness is not spiky) with ½·MSE (sum over outputs,
mean over examples) on the first 1,000 scikit-learn digits or on a Chebyshev T6 regression, track the
top-3 eigenvalues by warm-started Lanczos every few steps (:class:`lmech.instruments.SharpnessTracker`)
and judge the criteria listed in each class's docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmech.config import (
    MAX_ELEMENTS,
    MAX_PARAMETERS,
    MAX_ROWS,
    MAX_STEPS,
    MAX_WIDTH,
    check_budget,
    mlp_parameters,
    spec,
)
from lmech.data.digits import digits
from lmech.data.load import law_data, parse_source
from lmech.data.synthetic import chebyshev_regression
from lmech.devices import resolve_device, resolve_dtype
from lmech.errors import BadInput
from lmech.experiments.base import Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.registry import register
from lmech.instruments.sharpness import SharpnessTracker
from lmech.models.mlp import mlp
from lmech.theory.gradient_flow import gradient_flow


def half_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½·‖f(x) − y‖² summed over outputs, averaged over examples (Cohen et al. 2021's square loss)."""
    return 0.5 * (output - target).pow(2).sum(dim=1).mean()


def gd_threshold(lr: float) -> float:
    """2/η: the largest curvature on which gradient descent with step η is stable (Cohen et al. 2021, Sec. 2)."""
    return 2.0 / lr


def adam_threshold(lr: float, beta1: float) -> float:
    """(2 + 2β1)/((1 − β1)η): Adam's stability threshold for the preconditioned sharpness
    (Cohen et al. 2022, arXiv 2207.14484, eq. 3; 38/η at β1 = 0.9)."""
    return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)


@dataclass(frozen=True)
class _EoSBase(RunConfig):
    dataset: str = spec("digits", "'digits' (first n_samples scikit-learn digits, standardized, one-hot) or "
                        "'chebyshev' (T6 on n_samples points of [-1, 1])", choices=("digits", "chebyshev"))
    data: str = spec("", "your own dataset instead (lmech.data.law_data): a .npz/.pt/.csv/.parquet file with arrays "
                     "or columns x and y (PATH#x=NAME,y=NAME for others); its first n_samples examples are the "
                     "full batch, used as given; integer labels are one-hot encoded. Empty: the built-in dataset")
    n_samples: int = spec(1000, "training examples (full batch)", min=2, max=2**16)
    width: int = spec(100, "width of each hidden layer", min=1, max=MAX_WIDTH)
    depth: int = spec(2, "number of hidden layers", min=1, max=16)
    weight_std: float = spec(0.577, "standard parametrization: W ~ N(0, weight_std²/fan_in); 0.577 = 1/√3 matches "
                             "the variance of PyTorch's default nn.Linear init used by Cohen et al.", min=0.0,
                             max=100.0, min_exclusive=True)
    steps: int = spec(1000, "full-batch steps per run", min=10, max=MAX_STEPS)
    sharpness_every: int = spec(20, "steps between sharpness measurements (10-20 in Cohen et al.)", min=1,
                              max=MAX_STEPS)
    top_k: int = spec(3, "top Hessian eigenvalues tracked (they bunch at the edge)", min=1, max=1000)
    lanczos_tol: float = spec(1e-3, "relative residual at which Lanczos stops", min=0.0, max=1.0,
                               min_exclusive=True)
    lanczos_max_iter: int = spec(100, "cap on Hessian-vector products per measurement", min=1, max=10**4)
    onset_fraction: float = spec(0.95, "onset = first measurement with sharpness >= onset_fraction × threshold",
                                 min=0.5, max=1.0)
    dtype: str = spec("float64", "training dtype", choices=("float32", "float64"))

    def check(self) -> None:
        super().check()
        if self.dataset == "digits" and self.n_samples > 1797 and not self.data:
            raise BadInput("n_samples", self.n_samples, "<= 1797 (scikit-learn digits)")
        if self.top_k > self.lanczos_max_iter:
            raise BadInput("lanczos_max_iter", self.lanczos_max_iter, f">= top_k = {self.top_k}")
        d_in, d_out = (64, 10) if self.dataset == "digits" else (1, 1)
        if self.data:  # the file and the law's preconditions (full batch, squared-loss targets), before any work
            x, y = law_data(self.data, self.n_samples)
            d_in, d_out = x.shape[1], y.shape[1]
        params = mlp_parameters(d_in, self.width, self.depth, d_out)
        check_budget("width", self.width, params, MAX_PARAMETERS, "parameters of the network")
        if self.top_k > params:
            raise BadInput("top_k", self.top_k, f"<= the network's parameter count ({params})")
        check_budget("lanczos_max_iter", self.lanczos_max_iter, self.lanczos_max_iter * params, MAX_ELEMENTS,
                     "elements of the Lanczos basis (lanczos_max_iter·parameters)")
        check_budget("width", self.width, self.n_samples * self.width, MAX_ELEMENTS,
                     "elements of one layer's activations (n_samples·width)")

    def check_rows(self, runs: int) -> None:
        """``runs`` training runs of ``steps`` + 1 loss rows each stay within MAX_ROWS."""
        check_budget("steps", self.steps, runs * (self.steps + 1), MAX_ROWS, "rows of the loss series (runs·(steps + 1))")


def _data(cfg: _EoSBase) -> tuple[torch.Tensor, torch.Tensor]:
    if cfg.data:
        data = law_data(cfg.data, cfg.n_samples)
        return data.x, data.y
    if cfg.dataset == "digits":
        return digits(cfg.n_samples)
    return chebyshev_regression(cfg.n_samples, degree=6)


def _data_name(cfg: _EoSBase) -> str:
    return parse_source(cfg.data)[0].name if cfg.data else cfg.dataset


def _model(cfg: _EoSBase, x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    return mlp(x.shape[1], cfg.width, cfg.depth, "tanh", weight_std=cfg.weight_std, bias_std=0.0,
               parametrization="sp", out_features=y.shape[1], seed=cfg.seed, dtype=resolve_dtype(cfg.dtype),
               device=resolve_device(cfg.device))


def train_tracked(cfg: _EoSBase, optimizer: str, lr: float, *, beta1: float = 0.9, batch_size: int = 0,
                  progress: Progress | None = None, track: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, int | None]:
    """Train one run; return (per-step losses, sharpness records, diverged step or None).

    ``optimizer``: "gd" (full batch unless ``batch_size``) or "adam" (full batch). The sharpness is
    measured on the full training set every ``sharpness_every`` steps before the step is taken; for Adam
    it is the preconditioned sharpness (P from the optimizer's second-moment state, as Adam steps).
    """
    progress = progress or NullProgress()
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    x, y = (t.to(device, dtype) for t in _data(cfg))
    model = _model(cfg, x, y)
    if optimizer == "gd":
        opt = torch.optim.SGD(model.parameters(), lr=lr)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(beta1, 0.999))
    tracker = SharpnessTracker(k=cfg.top_k, tol=cfg.lanczos_tol, max_iter=cfg.lanczos_max_iter, seed=cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 17)
    n = x.shape[0]
    losses, records, diverged = [], [], None
    for step in range(cfg.steps + 1):
        with torch.no_grad():
            full_loss = float(half_mse(model(x), y))
        losses.append(full_loss)
        if not math.isfinite(full_loss):
            diverged = step
            break
        if track and step % cfg.sharpness_every == 0:
            rec = tracker.measure(model, half_mse, x, y, optimizer=opt)
            records.append({"step": step, **rec, "loss": full_loss})
        if step == cfg.steps:
            break
        if batch_size and batch_size < n:
            idx = torch.randperm(n, generator=gen)[:batch_size].to(device)
            xb, yb = x[idx], y[idx]
        else:
            xb, yb = x, y
        opt.zero_grad(set_to_none=True)
        half_mse(model(xb), yb).backward()
        opt.step()
        progress.advance(1)
    steps_done = np.arange(len(losses))
    loss_frame = pd.DataFrame({"step": steps_done, "t": lr * steps_done, "loss": losses})
    sharp = pd.DataFrame(records)
    threshold = gd_threshold(lr) if optimizer == "gd" else adam_threshold(lr, beta1)
    if not sharp.empty:
        sharp["threshold"] = threshold
        sharp["ratio"] = sharp["lambda_1"] / threshold
    return loss_frame, sharp, diverged


def onset_index(ratio: np.ndarray, fraction: float) -> int | None:
    """Index of the first measurement whose ratio sharpness/threshold reaches ``fraction``, or None."""
    hits = np.nonzero(np.asarray(ratio) >= fraction)[0]
    return int(hits[0]) if len(hits) else None


def _tag(frame: pd.DataFrame, **cols) -> pd.DataFrame:
    return frame.assign(**cols)


# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EdgeOfStabilityConfig(_EoSBase):
    lrs: tuple[float, ...] = spec((0.2, 0.25, 0.3), "GD step sizes η (2/η a few times the initial sharpness)",
                                  min=0.0, max=100.0, min_exclusive=True, max_items=16)
    control_lr: float = spec(0.02, "a small η whose 2/η is never reached: GD must track gradient flow", min=0.0,
                             max=100.0, min_exclusive=True)
    flow_rtol: float = spec(1e-7, "relative tolerance of the RK45 gradient-flow reference", min=1e-13,
                            max=0.1)
    flow_tolerance: float = spec(0.02, "verdict: max relative gap between control GD and gradient-flow loss",
                                 min=0.0, max=1.0, min_exclusive=True)
    sgd_batch_sizes: tuple[int, ...] = spec((), "mini-batch sizes of the reported (not judged) SGD runs at the "
                                            "largest η", min=1, max=2**16, max_items=16)

    def check(self) -> None:
        super().check()
        if not self.lrs:
            raise BadInput("lrs", self.lrs, "at least one step size")
        if self.control_lr >= min(self.lrs):
            raise BadInput("control_lr", self.control_lr, f"< min(lrs) = {min(self.lrs)}")
        self.check_rows(len(self.lrs) + 1 + len(self.sgd_batch_sizes))


@register
class EdgeOfStability(Experiment):
    """Verdicts (Cohen et al. 2021), every η of the sweep:

    (i) progressive sharpening: the sharpness reaches 0.95 · 2/η within the run;
    (ii) equilibrium: the median of sharpness/(2/η) after onset lies in [0.95, 1.07];
    (iii) the loss at the end is below the loss at onset, while ≥ 5% of post-onset steps increase it;
    (iv) the control η stays below 2/η with a monotone loss and tracks gradient flow (RK45 on the same model).
    """

    name = "edge-of-stability"
    law = ("Under full-batch gradient descent with step size η the top Hessian eigenvalue rises until it "
           "reaches 2/η and then hovers there while the loss keeps decreasing non-monotonically.")
    citation = "Cohen, Kaur, Li, Kolter & Talwalkar 2021, arXiv 2103.00065 (Fig. 1)"
    Config = EdgeOfStabilityConfig

    def quick_config(self) -> EdgeOfStabilityConfig:
        # float32 like Cohen et al.'s GPU runs, and 1.6x faster here: the quick law book's budget
        # (`make run` < 3 min). Every verdict keeps its margin (float64 is the default config's dtype).
        return EdgeOfStabilityConfig(dtype="float32")

    def smoke_config(self) -> EdgeOfStabilityConfig:
        return EdgeOfStabilityConfig(n_samples=200, steps=60, lrs=(0.2,), control_lr=0.05, sharpness_every=20)

    def default_config(self) -> EdgeOfStabilityConfig:
        return EdgeOfStabilityConfig(steps=2500, lrs=(0.15, 0.2, 0.25, 0.3), sgd_batch_sizes=(50, 200))

    def lawbook(self, quick: bool = True) -> list[tuple[str, EdgeOfStabilityConfig]]:
        base = self.quick_config() if quick else self.default_config()
        cheb = replace(base, dataset="chebyshev", n_samples=20, lrs=CHEBYSHEV_LRS, control_lr=CHEBYSHEV_CONTROL_LR,
                       steps=max(base.steps, 3000), sgd_batch_sizes=())
        return [("digits", base), ("chebyshev", cheb)]

    def predict(self, config: EdgeOfStabilityConfig) -> Result:
        thresholds = pd.DataFrame({"lr": list(config.lrs) + [config.control_lr],
                                   "threshold": [gd_threshold(lr) for lr in config.lrs + (config.control_lr,)],
                                   "control": [False] * len(config.lrs) + [True]})
        # Gradient flow from the same initialization: the reference the control run must track.
        x, y = _data(config)
        model = _model(config, x, y)
        # Flow times cover the control run and the slowest edge run, so the figure shows the edge runs
        # leaving the flow once they reach 2/η while the control stays on it.
        # Capped at 5× the control's horizon (enough to show the edge runs departing): beyond it the flow
        # gets stiff (its sharpness grows) and an explicit solver would crawl.
        control = config.control_lr * config.steps
        horizon = min(max(control, min(config.lrs) * config.steps), 5 * control)
        times = np.linspace(0.0, horizon, 401)
        flow = gradient_flow(model, half_mse, x, y, times, rtol=config.flow_rtol, atol=1e-12)
        flow_frame = pd.DataFrame({"t": flow.times, "loss": flow.losses})
        return Result(series={"thresholds": thresholds, "gradient_flow": flow_frame},
                      summary={"flow_evaluations": flow.evaluations})

    def measure(self, config: EdgeOfStabilityConfig, progress: Progress | None = None) -> Result:
        progress = progress or NullProgress()
        runs = [("gd", lr, 0) for lr in config.lrs] + [("gd", config.control_lr, 0)]
        runs += [("gd", max(config.lrs), b) for b in config.sgd_batch_sizes]
        progress.start(config.steps * len(runs), "edge-of-stability")
        losses, sharps, diverged = [], [], None
        for _, lr, batch in runs:
            loss, sharp, div = train_tracked(config, "gd", lr, batch_size=batch, progress=progress)
            kind = "control" if lr == config.control_lr else ("sgd" if batch else "gd")
            losses.append(_tag(loss, lr=lr, batch_size=batch, kind=kind))
            sharps.append(_tag(sharp, lr=lr, batch_size=batch, kind=kind))
            if div is not None and diverged is None:
                diverged = div
        loss_frame, sharp_frame = pd.concat(losses, ignore_index=True), pd.concat(sharps, ignore_index=True)
        hvps = sharp_frame.groupby("warm")["hvps"].mean() if "warm" in sharp_frame else pd.Series(dtype=float)
        summary = {"hvps_per_measurement_warm": float(hvps.get(True, float("nan"))),
                   "hvps_per_measurement_cold": float(hvps.get(False, float("nan")))}
        # Reported, not judged: mini-batch SGD at the largest η sits below 2/η, further as the batch shrinks.
        lr_max = max(config.lrs)
        for batch in (0,) + tuple(config.sgd_batch_sizes):
            sel = sharp_frame[(sharp_frame.lr == lr_max) & (sharp_frame.batch_size == batch)
                              & (sharp_frame.kind != "control")]
            late = sel[sel.step >= config.steps // 2]["ratio"]
            summary[f"late_ratio_batch_{batch or 'full'}"] = float(late.median()) if len(late) else float("nan")
        return Result(series={"loss": loss_frame, "sharpness": sharp_frame}, summary=summary, diverged_at=diverged)

    def verdict(self, config: EdgeOfStabilityConfig, prediction: Result, measurement: Result):
        loss, sharp = measurement.series["loss"], measurement.series["sharpness"]
        peaks, medians, drops, bumps = {}, {}, {}, {}
        for lr in config.lrs:
            s = sharp[(sharp.kind == "gd") & (sharp.lr == lr)]
            l_run = loss[(loss.kind == "gd") & (loss.lr == lr)]
            ratio = s["ratio"].to_numpy() if len(s) else np.array([np.nan])
            peaks[lr] = float(np.nanmax(ratio)) if np.isfinite(ratio).any() else float("nan")
            k = onset_index(ratio, config.onset_fraction)
            if k is None or len(l_run) < config.steps + 1:
                medians[lr], drops[lr], bumps[lr] = float("nan"), float("nan"), float("nan")
                continue
            onset_step = int(s["step"].iloc[k])
            medians[lr] = float(np.median(ratio[k:]))
            post = l_run["loss"].to_numpy()[onset_step:]
            drops[lr] = float(post[-1] / post[0])
            bumps[lr] = float(np.mean(np.diff(post) > 0))
        lrs = list(config.lrs)
        worst_median = max(medians.values(), key=lambda m: abs(m - 1.01) if math.isfinite(m) else math.inf)
        verdicts = [
            self.make_verdict("sharpening", "min over η of max_t λ1/(2/η) (progressive sharpening reaches the edge)",
                              config.onset_fraction, [peaks[lr] for lr in lrs], min(peaks.values()),
                              (config.onset_fraction, math.inf), per_lr=peaks),
            self.make_verdict("edge_ratio", "median over post-onset measurements of λ1/(2/η), the η farthest from 1",
                              1.0, [medians[lr] for lr in lrs], worst_median, (0.95, 1.07), per_lr=medians),
            self.make_verdict("loss_decrease", "max over η of loss(end)/loss(onset)",
                              "< 1", [drops[lr] for lr in lrs], max(drops.values()), 1.0, per_lr=drops),
            self.make_verdict("non_monotone", "min over η of the fraction of post-onset steps that increase the loss",
                              ">= 0.05", [bumps[lr] for lr in lrs], min(bumps.values()), (0.05, 1.0), per_lr=bumps),
        ]
        c_sharp = sharp[sharp.kind == "control"]
        c_loss = loss[loss.kind == "control"]
        c_peak = float(c_sharp["ratio"].max()) if len(c_sharp) else float("nan")
        increases = np.diff(c_loss["loss"].to_numpy())
        rise = float(max(np.max(increases / c_loss["loss"].to_numpy()[:-1]), 0.0)) if len(increases) else float("nan")
        flow = prediction.series["gradient_flow"]
        flow = flow[flow["t"] <= config.control_lr * config.steps]
        gd_at_flow = np.interp(flow["t"].to_numpy(), c_loss["t"].to_numpy(), c_loss["loss"].to_numpy())
        gap = float(np.max(np.abs(gd_at_flow - flow["loss"].to_numpy()) / flow["loss"].to_numpy()))
        verdicts += [
            self.make_verdict("control_below_edge", f"max_t λ1/(2/η) at the control η = {config.control_lr:g}",
                              "< 1", c_peak, c_peak, 1.0),
            self.make_verdict("control_monotone", "largest relative one-step loss increase of the control run",
                              0.0, rise, rise, 0.0),
            self.make_verdict("control_tracks_flow", "max_t |L_GD(t/η) − L_flow(t)| / L_flow(t) for the control run",
                              "gradient flow (RK45)", "GD", gap, config.flow_tolerance),
        ]
        return verdicts

    def figures(self, config: EdgeOfStabilityConfig, prediction: Result, measurement: Result, outdir: Path):
        return [_figure(config, prediction, measurement, outdir / f"edge-of-stability-{config.dataset}.png",
                        "2/η", title=f"GD on {_data_name(config)}")]


CHEBYSHEV_LRS = (0.15, 0.2, 0.25)
CHEBYSHEV_CONTROL_LR = 0.02


def _figure(config, prediction, measurement, path: Path, threshold_name: str, title: str) -> Path:
    from lmech.report import plotting as P

    loss, sharp = measurement.series["loss"], measurement.series["sharpness"]
    fig, (ax_loss, ax_sharp, ax_top, ax_ctrl) = P.panels(4)
    runs = sorted({(k, lr, b) for k, lr, b in zip(sharp["kind"], sharp["lr"], sharp["batch_size"])},
                  key=lambda r: (r[0] != "gd", r[1]))
    cols = P.colors(len(runs))
    for color, (kind, lr, b) in zip(cols, runs):
        label = f"η={lr:g}" + (f" (batch {b})" if b else "") + (" control" if kind == "control" else "")
        sel_l = loss[(loss.kind == kind) & (loss.lr == lr) & (loss.batch_size == b)]
        sel_s = sharp[(sharp.kind == kind) & (sharp.lr == lr) & (sharp.batch_size == b)]
        ax_loss.plot(sel_l["step"], sel_l["loss"], color=color, label=label, linewidth=1.2)
        ax_sharp.plot(sel_s["step"], sel_s["lambda_1"], color=color, label=label, linewidth=1.5)
        ax_sharp.axhline(sel_s["threshold"].iloc[0], **{**P.THEORY, "color": color})
    ax_loss.set(yscale="log", xlabel="step", ylabel="training loss", title=f"{title}: loss")
    ax_loss.legend(fontsize=7, frameon=False)
    edge = [t for (k, _, _), t in zip(runs, [sharp[(sharp.kind == k) & (sharp.lr == lr)]["threshold"].iloc[0]
                                              for k, lr, _ in runs]) if k != "control"]
    ax_sharp.set(xlabel="step", ylabel="sharpness λ1", title=f"sharpness; dashed: {threshold_name} (theory)",
                 ylim=(0, 1.5 * max(edge)) if edge else None)
    first = sharp[(sharp.kind == runs[0][0]) & (sharp.lr == runs[0][1]) & (sharp.batch_size == runs[0][2])]
    for i in range(config.top_k):
        if f"lambda_{i + 1}" in first:
            ax_top.plot(first["step"], first[f"lambda_{i + 1}"], label=f"λ{i + 1}", linewidth=1.2)
    ax_top.axhline(first["threshold"].iloc[0], **P.THEORY)
    ax_top.set(xlabel="step", ylabel="eigenvalue", title=f"top-{config.top_k} eigenvalues bunch at the edge "
               f"(η={runs[0][1]:g})")
    ax_top.legend(fontsize=7, frameon=False)
    flow = prediction.series.get("gradient_flow")
    if flow is not None:
        ctrl = loss[loss.kind == "control"]
        ax_ctrl.plot(ctrl["t"], ctrl["loss"], color="C0", label=f"GD η={config.control_lr:g}", **P.MEASURED)
        ax_ctrl.plot(flow["t"], flow["loss"], **P.THEORY, label="gradient flow (RK45)")
        for color, (kind, lr, _b) in zip(cols, runs):
            if kind == "gd":
                sel = loss[(loss.kind == kind) & (loss.lr == lr)]
                sel = sel[sel["t"] <= flow["t"].max()]
                ax_ctrl.plot(sel["t"], sel["loss"], color=color, linewidth=0.8, alpha=0.7, label=f"GD η={lr:g}")
        ax_ctrl.set(yscale="log", xlabel="time t = η·step", ylabel="loss",
                    title="control GD tracks gradient flow; edge runs leave it")
        ax_ctrl.legend(fontsize=7, frameon=False)
    else:
        ax_ctrl.set_visible(False)
    return P.save(fig, path)


# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EdgeOfStabilityAdamConfig(_EoSBase):
    steps: int = spec(800, "full-batch Adam steps per run", min=10, max=MAX_STEPS)
    lrs: tuple[float, ...] = spec((2e-3, 4e-3), "Adam learning rates η at β1 = beta1", min=0.0, max=10.0,
                                  min_exclusive=True, max_items=16)
    beta1: float = spec(0.9, "Adam's β1 for the main runs", min=0.0, max=0.999)
    alt_beta1: float = spec(0.5, "a second β1, to test the formula's β1 dependence (one run at alt_lr)", min=0.0,
                            max=0.999)
    alt_lr: float = spec(2e-3, "learning rate of the alt_beta1 run", min=0.0, max=10.0, min_exclusive=True)
    tolerance: float = spec(0.1, "verdict: median preconditioned sharpness/threshold after onset in 1 ± tolerance",
                            min=0.0, max=1.0, min_exclusive=True)

    def check(self) -> None:
        super().check()
        if not self.lrs:
            raise BadInput("lrs", self.lrs, "at least one learning rate")
        self.check_rows(len(self.lrs) + 1)


@register
class EdgeOfStabilityAdam(Experiment):
    """Verdicts (Cohen et al. 2022), every (η, β1) run: the preconditioned sharpness reaches
    ``onset_fraction`` × (2 + 2β1)/((1 − β1)η), and its median after onset lies within 1 ± 0.1 of it."""

    name = "edge-of-stability-adam"
    law = ("Under full-batch Adam the preconditioned sharpness λ1(P^-1/2 H P^-1/2) rises to (2 + 2β1)/((1 − β1)η), "
           "38/η at β1 = 0.9, and equilibrates there.")
    citation = "Cohen, Ghorbani, Krishnan, Agarwal, Medapati, Badura, Suo, Cardoze, Nado, Dahl & Gilmer 2022, " \
               "arXiv 2207.14484 (eq. 3)"
    Config = EdgeOfStabilityAdamConfig

    def quick_config(self) -> EdgeOfStabilityAdamConfig:
        return EdgeOfStabilityAdamConfig(dtype="float32")  # as EdgeOfStability.quick_config

    def smoke_config(self) -> EdgeOfStabilityAdamConfig:
        return EdgeOfStabilityAdamConfig(n_samples=200, steps=60, lrs=(2e-3,), sharpness_every=20)

    def default_config(self) -> EdgeOfStabilityAdamConfig:
        return EdgeOfStabilityAdamConfig(steps=2000, lrs=(5e-4, 1e-3, 2e-3))

    def _runs(self, config: EdgeOfStabilityAdamConfig) -> list[tuple[float, float]]:
        return [(lr, config.beta1) for lr in config.lrs] + [(config.alt_lr, config.alt_beta1)]

    def predict(self, config: EdgeOfStabilityAdamConfig) -> Result:
        runs = self._runs(config)
        frame = pd.DataFrame({"lr": [lr for lr, _ in runs], "beta1": [b for _, b in runs],
                              "threshold": [adam_threshold(lr, b) for lr, b in runs]})
        return Result(series={"thresholds": frame})

    def measure(self, config: EdgeOfStabilityAdamConfig, progress: Progress | None = None) -> Result:
        progress = progress or NullProgress()
        runs = self._runs(config)
        progress.start(config.steps * len(runs), "edge-of-stability-adam")
        losses, sharps, diverged = [], [], None
        for lr, beta1 in runs:
            loss, sharp, div = train_tracked(config, "adam", lr, beta1=beta1, progress=progress)
            kind = "main" if beta1 == config.beta1 else "alt_beta1"
            losses.append(_tag(loss, lr=lr, beta1=beta1, batch_size=0, kind=kind))
            sharps.append(_tag(sharp, lr=lr, beta1=beta1, batch_size=0, kind=kind))
            if div is not None and diverged is None:
                diverged = div
        sharp_frame = pd.concat(sharps, ignore_index=True)
        hvps = sharp_frame.groupby("warm")["hvps"].mean() if "warm" in sharp_frame else pd.Series(dtype=float)
        return Result(series={"loss": pd.concat(losses, ignore_index=True), "sharpness": sharp_frame},
                      summary={"hvps_per_measurement_warm": float(hvps.get(True, float("nan")))},
                      diverged_at=diverged)

    def verdict(self, config: EdgeOfStabilityAdamConfig, prediction: Result, measurement: Result):
        sharp = measurement.series["sharpness"]
        peaks, medians = {}, {}
        for lr, beta1 in self._runs(config):
            s = sharp[(sharp.lr == lr) & (sharp.beta1 == beta1)]
            ratio = s["ratio"].to_numpy()
            key = f"lr={lr:g},beta1={beta1:g}"
            peaks[key] = float(np.nanmax(ratio)) if np.isfinite(ratio).any() else float("nan")
            k = onset_index(np.nan_to_num(ratio, nan=0.0), config.onset_fraction)
            medians[key] = float(np.median(ratio[k:])) if k is not None else float("nan")
        worst = max(medians.values(), key=lambda m: abs(m - 1.0) if math.isfinite(m) else math.inf)
        keys = list(medians)
        return [
            self.make_verdict("sharpening", "min over runs of max_t λ1(P⁻¹H)/threshold",
                              config.onset_fraction, [peaks[k] for k in keys], min(peaks.values()),
                              (config.onset_fraction, math.inf), per_run=peaks),
            self.make_verdict("edge_ratio", "median post-onset λ1(P⁻¹H) / ((2+2β1)/((1−β1)η)), the run farthest from 1",
                              1.0, [medians[k] for k in keys], worst, (1 - config.tolerance, 1 + config.tolerance),
                              per_run=medians, thresholds={k: adam_threshold(lr, b) for k, (lr, b) in
                                                           zip(keys, self._runs(config))}),
        ]

    def figures(self, config: EdgeOfStabilityAdamConfig, prediction: Result, measurement: Result, outdir: Path):
        from lmech.report import plotting as P

        loss, sharp = measurement.series["loss"], measurement.series["sharpness"]
        fig, (ax_loss, ax_ratio) = P.panels(2)
        for color, (lr, beta1) in zip(P.colors(len(self._runs(config))), self._runs(config)):
            label = f"η={lr:g}, β1={beta1:g}"
            sel_l = loss[(loss.lr == lr) & (loss.beta1 == beta1)]
            sel_s = sharp[(sharp.lr == lr) & (sharp.beta1 == beta1)]
            ax_loss.plot(sel_l["step"], sel_l["loss"], color=color, label=label, linewidth=1.2)
            ax_ratio.plot(sel_s["step"], sel_s["ratio"], color=color, label=label, **P.MEASURED)
        ax_ratio.axhline(1.0, **P.THEORY, label="(2+2β1)/((1−β1)η)")
        ax_ratio.axhspan(1 - config.tolerance, 1 + config.tolerance, color="grey", alpha=0.12)
        ax_loss.set(yscale="log", xlabel="step", ylabel="training loss", title=f"Adam on {_data_name(config)}: loss")
        ax_ratio.set(xlabel="step", ylabel="λ1(P⁻¹H) / threshold",
                     title="preconditioned sharpness / Adam threshold (dashed: theory)")
        ax_loss.legend(fontsize=7, frameon=False)
        ax_ratio.legend(fontsize=7, frameon=False)
        return [P.save(fig, outdir / f"edge-of-stability-adam-{config.dataset}.png")]
