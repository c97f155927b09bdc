r"""Law: under minibatch SGD the *batch sharpness* rises to 2/η and stays there, while λ_max stays below.

Andreyev & Beneventano 2024 (arXiv 2412.20553, "Edge of Stochastic Stability", Sec. 3-4, Fig. 1):
SGD with step size η and batch size b trains in a regime in which what equilibrates at :math:`2/\eta`
is the batch sharpness (:mod:`lmech.instruments.batch_sharpness`)

.. math:: \operatorname{BS}(\theta) = \mathbb{E}_B\!\left[\frac{g_B^\top H_B\, g_B}{\|g_B\|^2}\right],

the curvature of the minibatch loss along the minibatch step, averaged over the batches SGD draws,
and not the full-batch :math:`\lambda_{\max}` of Cohen et al.'s edge of stability (law
``edge-of-stability``): :math:`\lambda_{\max}` stays below :math:`2/\eta`, the lower the smaller
the batch. With the full batch (b = N) the quotient is :math:`g^\top H g/\|g\|^2 \le \lambda_{\max}`
and the regime is Cohen et al.'s: :math:`\lambda_{\max}` itself reaches :math:`2/\eta`.

The experiment trains a tanh MLP with ½·MSE (sum over outputs, mean over examples) on the first
``n_samples`` scikit-learn digits by plain SGD (batches of b distinct examples drawn uniformly at each
step), at every (η, b) of ``lrs`` × ``batch_sizes``, all from the same initialization. The runs are
one stacked model (a leading run axis on every weight, ``torch.baddbmm``), each run with its own
batches and step size, so that the grid costs about one run's dispatch overhead; a test checks each
run against ``torch.optim.SGD`` on the module. Every ``measure_every`` steps each run's batch
sharpness is estimated from ``bs_batches`` fresh batches of its size (one Hessian-vector product per
batch; its standard error is recorded) and its full-batch :math:`\lambda_{\max}` by warm-started
Lanczos (:class:`lmech.instruments.SharpnessTracker`).

**Onset.** The onset of a run is the first of two consecutive measurements at which the batch sharpness
is at least ``onset_fraction`` · 2/η (0.9: the lower edge of the band judged); two, because one estimate
carries a ~4.5% Monte Carlo error and the first steps' catapult can spike it above 0.9 · 2/η once. Preconditions, judged, never
assumed:

* a run whose first measurement (step 0) is already at the onset cannot show the rise: inconclusive;
* a run that never reaches the onset is *still sharpening* (inconclusive: the budget was too short)
  when its ratio over the last third of the measurements exceeds that of the middle third and would
  reach the onset within two more run lengths at that rate, else it *stalled* below the edge (violated);
* the criteria at the edge need at least ``MIN_POST_ONSET`` post-onset measurements per run;
  otherwise they are inconclusive.
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
from lmech.devices import resolve_device, resolve_dtype
from lmech.errors import BadInput
from lmech.experiments.base import Counterexample, Criterion, Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.edge_of_stability import _trend, gd_threshold, half_mse
from lmech.experiments.registry import register
from lmech.instruments.sharpness import SharpnessTracker
from lmech.models.mlp import mlp

#: The band of the post-onset median batch sharpness / (2/η) (the issue's tolerance).
EDGE_BAND = (0.9, 1.1)
#: Post-onset measurements a run needs for the criteria judged at the edge.
MIN_POST_ONSET = 5
#: Consecutive measurements at or above the onset fraction that make the onset: one estimate's Monte Carlo
#: error is ~4.5% (16 batches) and the first steps' catapult can spike it above 0.9 × 2/η before the rise.
ONSET_RUN = 2
#: Columns of the measurement series.
RUN_KEYS = ("lr", "batch_size")
# What each criterion measures and why its tolerance is what it is (criteria() and verdict()).
Q_SHARPENING = "min over runs of max_t BS/(2/η) (the batch sharpness reaches the edge)"
WHY_SHARPENING = "the onset is the batch sharpness reaching 0.9 × 2/η, the lower edge of the band judged at the edge"
Q_RATIO = "median over post-onset measurements of BS/(2/η), the run farthest from 1"
WHY_RATIO = ("the issue's band [0.9, 1.1] × 2/η (Andreyev & Beneventano Fig. 1: the batch sharpness hovers at "
             "2/η); the Monte Carlo error of one estimate is reported (bs_relative_se_median)")
Q_LAMBDA = "max over runs and post-onset measurements of λ_max/(2/η)"
WHY_LAMBDA = ("the law: λ_max stays below 2/η while the batch sharpness is at it (under GD, Cohen et al.'s edge, "
              "it reaches and exceeds 2/η); every post-onset measurement must be below")


@dataclass(frozen=True)
class EdgeOfStochasticStabilityConfig(RunConfig):
    n_samples: int = spec(500, "training examples: the first n_samples scikit-learn digits (standardized, "
                          "one-hot), from which SGD draws its batches", min=2, max=1797)
    width: int = spec(64, "width of each hidden layer", min=1, max=MAX_WIDTH)
    depth: int = spec(2, "number of hidden layers", min=1, max=16)
    weight_std: float = spec(0.3, "standard parametrization: W ~ N(0, weight_std²/fan_in); 0.3 starts the batch "
                             "sharpness at 0.4-0.6 of 2/η at the default step sizes", min=0.0, max=100.0,
                             min_exclusive=True)
    lrs: tuple[float, ...] = spec((0.85, 0.95), "SGD step sizes η", min=0.0, max=100.0, min_exclusive=True,
                                  max_items=8)
    batch_sizes: tuple[int, ...] = spec((12, 16), "SGD batch sizes b (b = n_samples: full-batch GD)", min=1,
                                        max=1797, max_items=8)
    steps: int = spec(6000, "SGD steps per run", min=10, max=MAX_STEPS)
    measure_every: int = spec(100, "steps between measurements of the batch sharpness and λ_max", min=1,
                              max=MAX_STEPS)
    bs_batches: int = spec(32, "batches drawn per batch-sharpness estimate (one Hessian-vector product each)",
                           min=2, max=10**4)
    lambda_every: int = spec(2, "λ_max is measured at every lambda_every-th measurement (Lanczos on the full batch "
                             "costs several batch-sharpness estimates)", min=1, max=MAX_STEPS)
    lanczos_tol: float = spec(1e-2, "relative residual at which Lanczos stops (λ_max)", min=0.0, max=1.0,
                              min_exclusive=True)
    lanczos_max_iter: int = spec(100, "cap on Hessian-vector products per λ_max measurement", min=1, max=10**4)
    onset_fraction: float = spec(0.9, "onset = first of two consecutive measurements with batch sharpness >= "
                                 "onset_fraction × 2/η",
                                 min=0.5, max=1.0)
    dtype: str = spec("float64", "training dtype", choices=("float32", "float64"))

    @property
    def runs(self) -> list[tuple[float, int]]:
        """The (η, b) of every run, η outer."""
        return [(lr, b) for lr in self.lrs for b in self.batch_sizes]

    def check(self) -> None:
        super().check()
        if not self.lrs:
            raise BadInput("lrs", self.lrs, "at least one step size")
        if not self.batch_sizes:
            raise BadInput("batch_sizes", self.batch_sizes, "at least one batch size")
        if max(self.batch_sizes) > self.n_samples:
            raise BadInput("batch_sizes", self.batch_sizes, f"batch sizes <= n_samples = {self.n_samples}")
        if len(set(self.lrs)) != len(self.lrs) or len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise BadInput("lrs", (self.lrs, self.batch_sizes), "distinct step sizes and distinct batch sizes")
        params = mlp_parameters(64, self.width, self.depth, 10)
        check_budget("width", self.width, params * len(self.runs), MAX_PARAMETERS,
                     "parameters of the stacked runs (parameters·runs)")
        check_budget("lanczos_max_iter", self.lanczos_max_iter, self.lanczos_max_iter * params, MAX_ELEMENTS,
                     "elements of the Lanczos basis (lanczos_max_iter·parameters)")
        check_budget("width", self.width, self.n_samples * self.width * len(self.runs), MAX_ELEMENTS,
                     "elements of one layer's activations (n_samples·width·runs)")
        check_budget("bs_batches", self.bs_batches, self.bs_batches * len(self.runs) * params, MAX_ELEMENTS,
                     "elements of the weight copies of one batch-sharpness estimate (bs_batches·runs·parameters)")
        check_budget("steps", self.steps, len(self.runs) * (self.steps + 1), MAX_ROWS,
                     "rows of the loss series (runs·(steps + 1))")


def _model(cfg: EdgeOfStochasticStabilityConfig) -> torch.nn.Module:
    return mlp(64, cfg.width, cfg.depth, "tanh", weight_std=cfg.weight_std, bias_std=0.0, parametrization="sp",
               out_features=10, seed=cfg.seed, dtype=resolve_dtype(cfg.dtype), device=resolve_device(cfg.device))


# -- training: the runs as one stacked model ------------------------------------------------------
def _check_plain_dense(model: torch.nn.Module) -> list[torch.Tensor]:
    """The (weight, bias) tensors of an lmech SP MLP whose layers are plain affine maps (no multiplier)."""
    params = [p for _, p in model.named_parameters()]
    for name, module in model.named_modules():
        mults = (getattr(module, "weight_multiplier", 1.0), getattr(module, "bias_multiplier", 1.0))
        if any(float(m) != 1.0 for m in mults):  # pragma: no cover - the law builds SP models only
            raise BadInput("model", name, "an SP MLP without forward multipliers")
    return params


def stacked_forward(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Outputs of R stacked tanh MLPs: ``weights`` = [W1 (R, h, d), b1 (R, h), ...], ``x`` (R, m, d) -> (R, m, o)."""
    h = x
    layers = len(weights) // 2
    for i in range(layers):
        w, b = weights[2 * i], weights[2 * i + 1]
        h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if i < layers - 1:
            h = torch.tanh(h)
    return h


def _stacked_loss_and_gradient(weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                               mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    r"""Per-run losses :math:`\sum_i m_{ri}\,\tfrac12\|f_r(x_{ri}) - y_{ri}\|^2` of R stacked tanh MLPs and their
    gradients, by backpropagation written out (the chain rule through :func:`stacked_forward`; one batched matrix
    product per layer and direction, no autograd graph: at these sizes autograd's bookkeeping costs as much as the
    arithmetic). Tested against autograd and ``torch.optim.SGD``."""
    layers = len(weights) // 2
    acts = [x]
    h = x
    for i in range(layers):
        h = torch.baddbmm(weights[2 * i + 1].unsqueeze(1), h, weights[2 * i].transpose(1, 2))
        if i < layers - 1:
            h = torch.tanh(h)
            acts.append(h)
    err = h - y
    losses = 0.5 * (err.pow(2).sum(2) * mask).sum(1)
    delta = err * mask.unsqueeze(2)  # dL/d(pre-activation) of the output layer, (R, m, o)
    grads: list[torch.Tensor] = [None] * len(weights)  # type: ignore[list-item]
    for i in reversed(range(layers)):
        a = acts[i]
        grads[2 * i] = torch.bmm(delta.transpose(1, 2), a)
        grads[2 * i + 1] = delta.sum(1)
        if i > 0:
            delta = torch.bmm(delta, weights[2 * i]) * (1.0 - a * a)
    return losses, grads


@dataclass
class StackedSGD:
    """R copies of one MLP trained by plain SGD, run r with step ``lrs[r]`` on its own batches of ``sizes[r]``
    distinct examples (``torch.randperm(n)[:b]`` from its own generator, as ``torch.optim.SGD`` on batches drawn
    that way). A run whose batch loss is not finite stops (its ``diverged`` step is recorded)."""

    weights: list[torch.Tensor]
    lrs: torch.Tensor
    sizes: list[int]
    generators: list[torch.Generator]
    diverged: list[int | None]
    _mask: torch.Tensor | None = None
    _shapes: list | None = None

    @classmethod
    def start(cls, model: torch.nn.Module, lrs: list[float], sizes: list[int], seed: int) -> StackedSGD:
        base = _check_plain_dense(model)
        r = len(lrs)
        weights = [p.detach().unsqueeze(0).repeat(r, *([1] * p.ndim)).clone().requires_grad_(True) for p in base]
        gens = [torch.Generator().manual_seed(seed * 1000 + 17 + i) for i in range(r)]
        dtype, device = base[0].dtype, base[0].device
        return cls(weights, torch.tensor(lrs, dtype=dtype, device=device), list(sizes), gens, [None] * r)

    def step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> np.ndarray:
        """One SGD step of every live run; returns each run's batch loss before the step (NaN once diverged)."""
        n, bmax, r = x.shape[0], max(self.sizes), len(self.sizes)
        if self._mask is None or self._mask.dtype != x.dtype:
            mask = torch.zeros(r, bmax, dtype=x.dtype)
            for i, b in enumerate(self.sizes):
                mask[i, :b] = 1.0 / b  # run i uses the first b indices of its permutation
            self._mask = mask.to(x.device)
            self._shapes = [(-1, *([1] * (w.ndim - 1))) for w in self.weights]
        idx = torch.stack([torch.randperm(n, generator=gen)[:bmax] for gen in self.generators]).to(x.device)
        with torch.no_grad():
            losses, grads = _stacked_loss_and_gradient([w.detach() for w in self.weights], x[idx], y[idx], self._mask)
        values = losses.cpu().numpy().astype(float)
        if not np.isfinite(values).all() or any(d is not None for d in self.diverged):
            live = torch.ones(r, dtype=x.dtype, device=x.device)
            for i, v in enumerate(values):
                if self.diverged[i] is None and not math.isfinite(v):
                    self.diverged[i] = step
                if self.diverged[i] is not None:
                    live[i] = 0.0
                    values[i] = math.nan
            rates = self.lrs * live
            grads = [torch.nan_to_num(g) for g in grads]
        else:
            rates = self.lrs
        with torch.no_grad():
            torch._foreach_sub_(self.weights, torch._foreach_mul(grads, [rates.view(s) for s in self._shapes]))
        return values

    def batch_sharpness(self, x: torch.Tensor, y: torch.Tensor, runs: list[int], num_batches: int,
                        generators: list[torch.Generator]) -> tuple[np.ndarray, np.ndarray]:
        r"""Each listed run's batch sharpness, estimated from ``num_batches`` batches of its own size drawn as
        :func:`lmech.instruments.batch_sharpness.batch_sharpness` draws them (from ``generators[run]``): every
        (run, batch) pair is one leaf copy of the run's weights, so one gradient with its graph and one
        Hessian-vector product serve them all. Returns (estimates, standard errors), one per listed run."""
        n, m = x.shape[0], num_batches
        bmax = max(self.sizes[i] for i in runs)
        idx = torch.zeros(len(runs) * m, bmax, dtype=torch.long)
        mask = torch.zeros(len(runs) * m, bmax, dtype=x.dtype)
        for a, i in enumerate(runs):
            b = self.sizes[i]
            for j in range(m):
                idx[a * m + j, :b] = torch.randperm(n, generator=generators[i])[:b]
                mask[a * m + j, :b] = 1.0 / b
        idx, mask = idx.to(x.device), mask.to(x.device)
        sel = torch.tensor(runs, device=x.device).repeat_interleave(m)
        copies = [w.detach()[sel].clone().requires_grad_(True) for w in self.weights]
        with torch.enable_grad():
            out = stacked_forward(copies, x[idx])
            losses = (0.5 * (out - y[idx]).pow(2).sum(2) * mask).sum(1)
            grads = torch.autograd.grad(losses.sum(), copies, create_graph=True)
            direction = [g.detach() for g in grads]
            hg = torch.autograd.grad(sum((g * d).sum() for g, d in zip(grads, direction)), copies)
        ghg = sum((d * h).flatten(1).sum(1) for d, h in zip(direction, hg)).double()
        gg = sum(d.pow(2).flatten(1).sum(1) for d in direction).double()
        q = (ghg / gg).view(len(runs), m).cpu().numpy()
        return q.mean(1), q.std(1, ddof=1) / math.sqrt(m)

    def load(self, model: torch.nn.Module, run: int) -> torch.nn.Module:
        """``model`` with run ``run``'s current weights."""
        with torch.no_grad():
            for p, w in zip(_check_plain_dense(model), self.weights):
                p.copy_(w[run])
        return model


def train(cfg: EdgeOfStochasticStabilityConfig, progress: Progress | None = None) -> tuple[pd.DataFrame, pd.DataFrame, int | None]:
    """Train every run; return (batch losses per step, measurements, first diverged step or None)."""
    progress = progress or NullProgress()
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    x, y = (t.to(device, dtype) for t in digits(cfg.n_samples))
    runs = cfg.runs
    model = _model(cfg)
    sgd = StackedSGD.start(model, [lr for lr, _ in runs], [b for _, b in runs], cfg.seed)
    trackers = [SharpnessTracker(k=1, tol=cfg.lanczos_tol, max_iter=cfg.lanczos_max_iter, seed=cfg.seed)
                for _ in runs]
    bs_gens = [torch.Generator().manual_seed(cfg.seed * 1000 + 501 + i) for i in range(len(runs))]
    loss_rows = np.full((cfg.steps, len(runs)), np.nan)
    records = []
    for step in range(cfg.steps + 1):
        if step % cfg.measure_every == 0:
            with torch.no_grad():
                full = (0.5 * (stacked_forward(sgd.weights, x.expand(len(runs), *x.shape)) - y).pow(2)
                        .sum(2).mean(1)).cpu().numpy().astype(float)
            for i in range(len(runs)):
                if sgd.diverged[i] is None and not math.isfinite(full[i]):
                    sgd.diverged[i] = step
            live = [i for i in range(len(runs)) if sgd.diverged[i] is None]
            if live:
                values, errors = sgd.batch_sharpness(x, y, live, cfg.bs_batches, bs_gens)
            for a, i in enumerate(live):
                lr, b = runs[i]
                if step % (cfg.measure_every * cfg.lambda_every) == 0:
                    lam = trackers[i].measure(sgd.load(model, i), half_mse, x, y)
                    lam_1, hvps = lam["lambda_1"], lam["hvps"]
                else:
                    lam_1, hvps = math.nan, 0
                thr = gd_threshold(lr)
                records.append({"lr": lr, "batch_size": b, "step": step, "batch_sharpness": float(values[a]),
                                "batch_sharpness_se": float(errors[a]), "lambda_1": lam_1, "threshold": thr,
                                "bs_ratio": float(values[a]) / thr, "lambda_ratio": lam_1 / thr,
                                "loss": float(full[i]), "hvps": cfg.bs_batches + hvps})
        if step == cfg.steps or all(d is not None for d in sgd.diverged):
            break
        loss_rows[step] = sgd.step(x, y, step)
        progress.advance(1)
    loss = pd.DataFrame({"step": np.repeat(np.arange(cfg.steps), len(runs)),
                         "lr": np.tile([lr for lr, _ in runs], cfg.steps),
                         "batch_size": np.tile([b for _, b in runs], cfg.steps),
                         "batch_loss": loss_rows.reshape(-1)})
    columns = ("lr", "batch_size", "step", "batch_sharpness", "batch_sharpness_se", "lambda_1", "threshold",
               "bs_ratio", "lambda_ratio", "loss", "hvps")
    sharp = pd.DataFrame(records) if records else pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
    diverged = [d for d in sgd.diverged if d is not None]
    return loss, sharp, (min(diverged) if diverged else None)


# -- judging one run ------------------------------------------------------------------------------
@dataclass
class StochasticEdgeRun:
    """What one (η, b) run says: ``sharpening`` holds / violated / inconclusive (``note``: why); ``unjudged``:
    why the criteria at the edge cannot be judged on it (None: they can)."""

    label: str
    start: float
    peak: float
    onset_step: int | None
    sharpening: str
    note: str | None
    unjudged: str | None
    bs_median: float = math.nan
    lambda_max: float = math.nan
    lambda_median: float = math.nan
    post_onset: int = 0
    diverged: bool = False


def stochastic_onset(ratio: np.ndarray, fraction: float) -> int | None:
    """Index of the first of ONSET_RUN consecutive measurements whose ratio BS/(2/η) reaches ``fraction``."""
    ok = np.nan_to_num(np.asarray(ratio, dtype=float), nan=0.0) >= fraction
    for i in range(len(ok) - ONSET_RUN + 1):
        if ok[i:i + ONSET_RUN].all():
            return i
    return None


def judge_run(label: str, rows: pd.DataFrame, fraction: float, diverged: bool = False) -> StochasticEdgeRun:
    """Judge one run's measurements (rows of the measurement series, by step) against the edge."""
    rows = rows.sort_values("step")
    ratio = rows["bs_ratio"].to_numpy(dtype=float)
    lam = rows["lambda_ratio"].to_numpy(dtype=float)
    steps = rows["step"].to_numpy()
    if len(ratio) == 0:
        return StochasticEdgeRun(label, math.nan, math.nan, None, "violated" if diverged else "inconclusive",
                                 "no measurement", "the edge was never reached", diverged=diverged)
    start, peak = float(ratio[0]), float(np.nanmax(ratio))
    k = stochastic_onset(ratio, fraction)
    if start >= fraction:
        state, note = "inconclusive", (f"started at batch sharpness {start:.3f} × 2/η >= {fraction:g}: 'rises to "
                                       "2/η' is untested (a smaller η starts below it)")
    elif k is not None:
        state, note = "holds", None
    elif diverged:
        state, note = "violated", f"diverged below the edge (peak ratio {peak:.3f})"
    else:
        state, note = _trend(ratio, fraction)
    run = StochasticEdgeRun(label, start, peak, None if k is None else int(steps[k]), state, note, None,
                            diverged=diverged)
    if k is None:
        run.unjudged = "the batch sharpness never reached the onset"
        return run
    if start >= fraction:
        run.unjudged = "the run started at the edge: no onset to judge after"
        return run
    post, post_lam = ratio[k:], lam[k:]
    post_lam = post_lam[np.isfinite(post_lam)]
    run.post_onset = len(post)
    run.bs_median = float(np.median(post))
    run.lambda_max = float(np.max(post_lam)) if len(post_lam) else math.nan
    run.lambda_median = float(np.median(post_lam)) if len(post_lam) else math.nan
    if diverged:
        run.unjudged = "the run diverged"
    elif len(post) < MIN_POST_ONSET:
        run.unjudged = (f"onset at step {run.onset_step}: {len(post)} post-onset measurements (needs "
                        f"{MIN_POST_ONSET}): run longer or measure more often")
    return run


def _outcome(runs: list[StochasticEdgeRun], value, worst, within) -> tuple[float, str | None]:
    """(agreement, inconclusive reason): the worst value over the judged runs; violated if any is out of
    tolerance, else inconclusive if some run could not be judged."""
    judged = [value(r) for r in runs if r.unjudged is None]
    agreement = float(worst(judged)) if judged else math.nan
    if any(not within(v) for v in judged):
        return agreement, None
    reasons = [f"{r.label}: {r.unjudged}" for r in runs if r.unjudged is not None]
    return agreement, ("; ".join(reasons) or None)


def _with(measurement: Result, sharp: pd.DataFrame) -> Result:
    return replace(measurement, series={**measurement.series, "sharpness": sharp})


def _scaled(measurement: Result, column: str, factor: float, *, after_onset: bool, fraction: float) -> Result:
    """A copy of ``measurement`` with ``column`` (and its ratio) × ``factor`` (at and after each run's onset only
    if ``after_onset``)."""
    sharp = measurement.series["sharpness"].copy()
    mask = np.ones(len(sharp), dtype=bool)
    if after_onset:
        mask[:] = False
        for _, rows in sharp.groupby(list(RUN_KEYS), sort=False):
            rows = rows.sort_values("step")
            k = stochastic_onset(rows["bs_ratio"].to_numpy(dtype=float), fraction)
            if k is not None:
                mask[sharp.index.get_indexer(rows.index[k:])] = True
    ratio = {"batch_sharpness": "bs_ratio", "lambda_1": "lambda_ratio"}[column]
    sharp.loc[mask, [column, ratio]] = sharp.loc[mask, [column, ratio]] * factor
    return _with(measurement, sharp)


def _stalled(config, prediction, measurement: Result) -> Result:
    """A copy of ``measurement`` whose batch sharpness levels off at 0.7 × 2/η (capped there)."""
    sharp = measurement.series["sharpness"].copy()
    cap = 0.7 * sharp["threshold"]
    sharp["batch_sharpness"] = np.minimum(sharp["batch_sharpness"], cap)
    sharp["bs_ratio"] = sharp["batch_sharpness"] / sharp["threshold"]
    return _with(measurement, sharp)


@register
class EdgeOfStochasticStability(Experiment):
    """Verdicts (Andreyev & Beneventano 2024), every (η, b) run of the grid (preconditions: module docstring):

    * ``batch_sharpening``: the batch sharpness, first measured below 0.9 · 2/η, reaches it within the run
      (still rising at the end of the budget, or started above: inconclusive; stalled below: violated);
    * ``batch_edge_ratio``: the median over post-onset measurements of batch sharpness / (2/η) lies in
      [0.9, 1.1] for every run (the run farthest from 1 is judged);
    * ``lambda_below_edge``: the largest post-onset full-batch λ_max / (2/η), over every run, is below 1.
      The paper's corollary that λ_max sits lower for smaller batches is reported (``lambda_median_b*``),
      not judged.

    Quick config (500 digits, width 64, weight_std 0.3, float32; η = 0.85 and 0.95 × b = 12 and 16, 4,000
    steps; 16 Monte Carlo batches per estimate every 200 steps, λ_max every 400), measured at seeds 0, 1, 2:
    the batch sharpness starts at 0.39-0.46 × 2/η, onsets at steps 800-3,000; post-onset medians 0.922-1.015
    (worst run per seed 0.922, 0.930, 0.960: 0.022 inside the band's lower edge at worst, about one standard
    error of a median of 6-16 estimates whose own Monte Carlo error is 4.5%); the largest post-onset λ_max
    0.918, 0.937, 0.871 × 2/η (margin ≥ 0.063), its median over the step sizes 0.764-0.768 at b = 12 against 0.840-0.860 at b = 16 at every
    seed (reported). The equilibrium is approached slowly: over 3,000 steps one seed's run (η = 0.95,
    b = 12) has a median 0.87 (violated) or, with a single-estimate onset, the catapult's early spike as its
    onset; 4,000 steps is what the budget affords. Longer is not safer: over 5,000 steps (measured every 250)
    seed 1's η = 0.95, b = 12 run diverges at step 4,132 (an SGD catapult that does not come back) and its
    η = 0.85, b = 16 median is 0.895 (violated), while seeds 0 and 2 hold (worst 0.922, 1.028): the
    equilibrium at 2/η is marginal at these step sizes, not a wide basin. Full-batch GD (b = N = 500, η = 1, 400 steps, the
    ``full-batch-gd`` counterexample): the quotient g·Hg/|g|² sits at 0.99 × 2/η (median) and λ_max reaches
    1.16 × 2/η at seed 0 (violated at seeds 0, 1 and 2). 200 steps (``too-short``): the ratio ends at
    0.69-0.71 at seed 0, still rising: inconclusive at seeds 0, 1 and 2.

    Cost (CPU time, one thread, three entries at once on the 2-core machine loaded ~8x, so upper bounds):
    quick entry 7.7-7.9 s (4,000 stacked SGD steps ~2.5 s, 10 Lanczos calls per run most of the rest),
    full-batch-gd counterexample 3.0 s, too-short 0.5 s, smoke < 1 s. The default config (float64, 6,000 steps, 32 batches per estimate every 100 steps) is
    about 4x the quick entry's work: under a minute, not measured in this session.
    """

    name = "edge-of-stochastic-stability"
    law = ("Under minibatch SGD with step size η the batch sharpness, the expected curvature of the minibatch loss "
           "along its own gradient, rises to 2/η and stays there while the full-batch λ_max stays below 2/η.")
    citation = "Andreyev & Beneventano 2024, arXiv 2412.20553 (Fig. 1, Sec. 4)"
    Config = EdgeOfStochasticStabilityConfig

    def quick_config(self) -> EdgeOfStochasticStabilityConfig:
        # float32 (Cohen et al.'s GPU runs are), 16 Monte Carlo batches per estimate (4.5% error each), 4,000
        # steps: the slowest run (onset at step 3,000, seed 1) keeps 6 post-onset estimates (class docstring)
        return EdgeOfStochasticStabilityConfig(dtype="float32", steps=4000, measure_every=200, bs_batches=16)

    def smoke_config(self) -> EdgeOfStochasticStabilityConfig:
        return replace(self.quick_config(), steps=60, measure_every=20, bs_batches=4)

    def default_config(self) -> EdgeOfStochasticStabilityConfig:
        return EdgeOfStochasticStabilityConfig()

    def criteria(self) -> list[Criterion]:
        """Declared for `lmech list`; the onset threshold is the config's ``onset_fraction`` (0.9 by default)."""
        return [Criterion("batch_sharpening", Q_SHARPENING, (0.9, math.inf), WHY_SHARPENING),
                Criterion("batch_edge_ratio", Q_RATIO, EDGE_BAND, WHY_RATIO),
                Criterion("lambda_below_edge", Q_LAMBDA, 1.0 - 1e-9, WHY_LAMBDA)]

    def counterexamples(self) -> list[Counterexample]:
        quick = self.quick_config()
        frac = quick.onset_fraction
        gd = replace(quick, batch_sizes=(quick.n_samples,), lrs=(1.0,), steps=400, measure_every=50)
        too_short = replace(quick, steps=200, measure_every=50, lrs=(0.85,))
        return [
            Counterexample("stalled-below-edge", ("batch_sharpening",), perturb=_stalled,
                           why="the batch sharpness capped at 0.7 × 2/η: a batch sharpness that levels off at 70% "
                               "of 2/η (no rise to the edge) must be judged stalled, not still rising"),
            Counterexample("above-edge", ("batch_edge_ratio",),
                           perturb=lambda c, p, m: _scaled(m, "batch_sharpness", 1.2, after_onset=True,
                                                           fraction=frac),
                           why="the batch sharpness after onset ×1.2: an equilibrium 20% above 2/η, beyond the band"),
            Counterexample("lambda-at-edge", ("lambda_below_edge",),
                           perturb=lambda c, p, m: _scaled(m, "lambda_1", 1.4, after_onset=False, fraction=frac),
                           why="λ_max ×1.4: a full-batch sharpness that reaches 2/η, as under full-batch GD"),
            Counterexample("full-batch-gd", ("lambda_below_edge",), config=gd,
                           why="b = N is full-batch GD: the batch sharpness is g·Hg/|g|² <= λ_max, and λ_max itself "
                               "rises to 2/η (Cohen et al. 2021): the full-batch sharpness does not stay below"),
            Counterexample("too-short", ("batch_sharpening", "batch_edge_ratio", "lambda_below_edge"),
                           config=too_short, expect="inconclusive",
                           why="200 steps end while the batch sharpness is still rising: no onset, the edge "
                               "is untested"),
        ]

    def predict(self, config: EdgeOfStochasticStabilityConfig) -> Result:
        runs = config.runs
        return Result(series={"thresholds": pd.DataFrame({"lr": [lr for lr, _ in runs],
                                                          "batch_size": [b for _, b in runs],
                                                          "threshold": [gd_threshold(lr) for lr, _ in runs]})})

    def measure(self, config: EdgeOfStochasticStabilityConfig, progress: Progress | None = None) -> Result:
        progress = progress or NullProgress()
        progress.start(config.steps, self.name)
        loss, sharp, diverged = train(config, progress)
        measurement = Result(series={"loss": loss, "sharpness": sharp}, diverged_at=diverged)
        edge = self.edge_runs(config, measurement)
        summary = {}
        for (lr, b), run in edge.items():
            summary[f"onset_step_lr_{lr:g}_b{b}"] = math.nan if run.onset_step is None else float(run.onset_step)
            summary[f"bs_median_lr_{lr:g}_b{b}"] = run.bs_median
            summary[f"lambda_median_lr_{lr:g}_b{b}"] = run.lambda_median
        for b in config.batch_sizes:
            values = [r.lambda_median for (lr, bb), r in edge.items() if bb == b]
            summary[f"lambda_median_b{b}"] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
        if len(sharp):
            summary["bs_relative_se_median"] = float(np.nanmedian(sharp["batch_sharpness_se"] / sharp["batch_sharpness"]))
        measurement.summary.update(summary)
        return measurement

    def edge_runs(self, config: EdgeOfStochasticStabilityConfig, measurement: Result) -> dict:
        sharp, loss = measurement.series["sharpness"], measurement.series["loss"]
        out = {}
        for lr, b in config.runs:
            rows = sharp[(sharp.lr == lr) & (sharp.batch_size == b)]
            batch_loss = loss[(loss.lr == lr) & (loss.batch_size == b)]["batch_loss"].to_numpy(dtype=float)
            diverged = measurement.diverged_at is not None and not np.isfinite(batch_loss).all()
            out[(lr, b)] = judge_run(f"η={lr:g}, b={b}", rows, config.onset_fraction, diverged=diverged)
        return out

    def verdict(self, config: EdgeOfStochasticStabilityConfig, prediction: Result, measurement: Result):
        edge = self.edge_runs(config, measurement)
        runs = list(edge.values())
        per = {f"η={lr:g},b={b}": r for (lr, b), r in edge.items()}
        lo, hi = EDGE_BAND
        agreement = min((r.peak for r in runs), default=math.nan)
        reasons = [f"{r.label}: {r.note}" for r in runs if r.sharpening == "inconclusive"]
        sharpening_why = None if any(r.sharpening == "violated" for r in runs) else ("; ".join(reasons) or None)
        if not all(math.isfinite(r.peak) for r in runs):
            agreement = math.nan
        ratio, why_ratio = _outcome(runs, lambda r: r.bs_median,
                                    lambda v: max(v, key=lambda m: abs(m - 1.0)), lambda v: lo <= v <= hi)
        lam, why_lam = _outcome(runs, lambda r: r.lambda_max, max, lambda v: v < 1.0)
        grid = (f"{len(config.lrs)} step sizes × {len(config.batch_sizes)} batch sizes")
        if not why_ratio and (len(config.lrs) < 2 or len(config.batch_sizes) < 2) and config.batch_sizes != (config.n_samples,):
            why_ratio = f"the law is judged on at least 2 step sizes and 2 batch sizes ({grid} given)"
        return [
            self.make_verdict("batch_sharpening", Q_SHARPENING, config.onset_fraction, [r.peak for r in runs], agreement,
                              (config.onset_fraction, math.inf), inconclusive=sharpening_why,
                              why=WHY_SHARPENING,
                              per_run={k: r.peak for k, r in per.items()},
                              onset_step={k: r.onset_step for k, r in per.items()}),
            self.make_verdict("batch_edge_ratio", Q_RATIO, 1.0, [r.bs_median for r in runs], ratio, EDGE_BAND, inconclusive=why_ratio,
                              why=WHY_RATIO,
                              per_run={k: r.bs_median for k, r in per.items()},
                              post_onset_measurements={k: r.post_onset for k, r in per.items()}),
            self.make_verdict("lambda_below_edge", Q_LAMBDA, "< 1",
                              [r.lambda_max for r in runs], lam, 1.0 - 1e-9, inconclusive=why_lam,
                              why=WHY_LAMBDA,
                              per_run={k: r.lambda_max for k, r in per.items()},
                              median_per_run={k: r.lambda_median for k, r in per.items()}),
        ]

    def figures(self, config: EdgeOfStochasticStabilityConfig, prediction: Result, measurement: Result,
                outdir: Path):
        return [_figure(self, config, measurement, outdir / "edge-of-stochastic-stability.png")]


def _figure(exp: EdgeOfStochasticStability, config, measurement: Result, path: Path) -> Path:
    from lmech.report import plotting as P

    sharp, loss = measurement.series["sharpness"], measurement.series["loss"]
    fig, axes = P.panels(4, size=(5.0, 3.8))
    ax_bs, ax_lam, ax_loss, ax_sum = axes[:4]
    runs = config.runs
    cols = P.colors(len(runs))
    lo, hi = EDGE_BAND
    handles = []
    edge = exp.edge_runs(config, measurement)
    for color, (lr, b) in zip(cols, runs):
        rows = sharp[(sharp.lr == lr) & (sharp.batch_size == b)].sort_values("step")
        ax_bs.plot(rows["step"], rows["bs_ratio"], color=color, linewidth=1.4)
        lam = rows[np.isfinite(rows["lambda_ratio"].to_numpy(dtype=float))]  # λ_max every lambda_every-th time
        ax_lam.plot(lam["step"], lam["lambda_ratio"], color=color, linewidth=1.4, marker="o", markersize=3)
        onset = edge[(lr, b)].onset_step
        if onset is not None:
            ax_bs.axvline(onset, color=color, linewidth=0.8, linestyle=":")
        ls = loss[(loss.lr == lr) & (loss.batch_size == b)]
        window = max(1, config.steps // 50)
        smooth = ls["batch_loss"].rolling(window, min_periods=1).mean()
        ax_loss.plot(ls["step"], smooth, color=color, linewidth=1.0)
        handles.append(P.line_handle(f"η={lr:g}, b={b}", color=color, linewidth=1.4))
    for ax in (ax_bs, ax_lam):
        ax.axhspan(lo, hi, color="grey", alpha=0.15)
        ax.axhline(1.0, **P.THEORY)
    ax_bs.set(xlabel="step", ylabel="batch sharpness / (2/η)", title="batch sharpness rises to 2/η")
    P.legend_below(ax_bs, handles + [P.theory_handle("2/η"), P.band_handle(f"band [{lo:g}, {hi:g}]")], ncol=3)
    ax_lam.set(xlabel="step", ylabel="λ_max / (2/η)", title="full-batch λ_max stays below 2/η")
    P.legend_below(ax_lam, [P.theory_handle("2/η")], ncol=1)
    ax_loss.set(yscale="log", xlabel="step", ylabel=f"batch loss (mean of {max(1, config.steps // 50)} steps)",
                title=f"SGD on {config.n_samples} digits")
    xs = np.arange(len(runs))
    ax_sum.errorbar(xs - 0.1, [edge[r].bs_median for r in runs], fmt="o", color="C0")
    ax_sum.errorbar(xs + 0.1, [edge[r].lambda_median for r in runs], fmt="s", color="C3")
    ax_sum.axhspan(lo, hi, color="grey", alpha=0.15)
    ax_sum.axhline(1.0, **P.THEORY)
    ax_sum.set_xticks(list(xs), [f"η={lr:g}\nb={b}" for lr, b in runs])
    ax_sum.set_xlim(-0.5, len(runs) - 0.5)
    ax_sum.set(ylabel="median after onset / (2/η)", title="batch sharpness at 2/η, λ_max below")
    P.legend_below(ax_sum, [P.line_handle("batch sharpness", color="C0", marker="o", linestyle="none"),
                            P.line_handle("λ_max", color="C3", marker="s", linestyle="none"), P.theory_handle("2/η")],
                   ncol=3)
    return P.save(fig, path)
