"""Law: a scaling law fitted on small language models predicts a larger one before it is trained.

Hoffmann et al. 2022 (arXiv 2203.15556, eq. 2, "Approach 3"): the loss of a language model with N
parameters trained on D tokens is L(N, D) = E + A/N^α + B/D^β. Fitted as Besiroglu et al. 2024
(arXiv 2404.10102) refit it (:mod:`lmech.laws.scaling`: Huber loss on log-losses, L-BFGS from Hoffmann
et al.'s 4,500 starts, bootstrap intervals), the law is tested the way a physicist would: fit on small
models, then predict a larger one before it is trained.

Setting: tiny decoder-only transformers (:class:`lmech.models.transformer.TinyTransformer`, one block,
two heads, context 16 bytes, μP with the smallest width as base so that one learning rate serves every
width; Yang et al. 2022, arXiv 2203.03466) of widths 8, 12, 16, 20, 24 (N = 2,840 to 13,128 non-embedding
parameters), trained with Adam (learning rate 2e-2, constant, batches of 64 windows) on the byte-level
docstring corpus of the Python standard library (:func:`lmech.data.corpus.load_corpus`, 50 kB), every
width from the same generator state on the same batches (common random numbers: the widths differ by
their width, not by their luck). One run per width; the D axis comes from ``checkpoints`` validation
losses along each run, log-spaced over its second half (at constant learning rate the loss after s
steps is that of a run of s steps; the first half is left out: there every width still sits on the
unigram plateau, ~3.0 nats/byte, and the additive form does not hold). Each checkpoint evaluates the
tail-averaged weights (``averaging`` c: w̄_t = w̄_(t−1) + (c/t)(w_t − w̄_(t−1)), about the last t/c
steps; Polyak & Juditsky 1992), which removes the step-to-step jitter of a constant learning rate as
annealing would. N counts the non-embedding parameters (Kaplan et al. 2020, arXiv 2001.08361, §3), D
the training tokens (steps × batch × context).

``measure`` trains the grid (or reads it from the run store: each model is kept as a run of
``scaling-law.grid`` and reused by any later run that needs the same model, e.g. a rerun with another
bootstrap or another held-out setting), fits the law, and records its prediction of the held-out
model's final validation loss with a ``level`` prediction interval; only then does it train the
held-out model (``heldout_width`` 32, N = 20,576: 1.6 × the widest fitted one) for
``heldout_steps_fraction`` of the planned steps (1: as planned). The interval is a cluster bootstrap
over the fitted models (the checkpoints of one model share its noise, so whole models are resampled)
plus a resampled log-residual for the new model's own scatter. ``predict`` gives the plan: every
model's N and token counts.

Verdicts on the held-out model's final loss: (1) ``heldout_in_interval``: inside the 90% prediction
interval (agreement: the distance from the prediction in units of the interval's half-width on that
side; holds ≤ 1; inconclusive when the interval is wider than ±10%, a band too loose to test anything);
(2) ``heldout_rel_error``: |measured − predicted| / predicted ≤ 3% (the issue's tolerance).

Measured (quick config, seeds 0, 1, 2): predicted 2.270, 2.265, 2.322 nats/byte, measured 2.266, 2.287,
2.263: errors 0.14%, 0.99%, 2.54%, at 0.05, 0.32 and 0.57 of the interval's half-width on that side (the
intervals reach 2.8-4.4% below and 2.8-5.3% above the prediction). Seeds 3 and 4 also hold: errors 2.50%
and 0.19%, at 0.63 and 0.04 half-widths. The widest fitted model's own final loss, as a naive forecast,
misses by 2.2%, 2.7% and 3.1% (reported as ``widest_fitted_rel_error``): the law beats it at all three
seeds, narrowly at seed 2 (the widths' luck in the timing of their drop off the plateau is the main noise
at these sizes). So 3% is a loose test at this scale; the interval is the sharper one.

Reported, not judged: α and β against the quanta model's α_D = α_N / (1 + α_N) (Michaud et al. 2023,
arXiv 2303.13506: parameter and data scaling from one Zipfian distribution of quanta). Here the fit
gives α = 1.40, 0.08, 1.52 and β = 0.99, 2.19, 1.43 (seeds 0, 1, 2): five widths over a factor 4.6 in N
and a factor 2 in D pin neither exponent, and the data term measures the models' drop off the plateau
at a few hundred steps, not the quanta they have seen; the relation is neither confirmed nor refuted.

Counterexamples: the held-out model trained for half its planned steps (a config; the fitted grid
is read back from the store) and, for free at every seed, the measured held-out run read at its
first checkpoint (half the steps): both criteria are violated (measured 2.567, 2.547, 2.502 at seeds 0, 1,
2: the prediction misses by 13.1%, 12.5%, 7.7%, at 2.5-4.0 half-widths; seeds 3 and 4: 10.1%, 17.2%; the
config case reproduces each of these exactly).

Cost: the quick config trains 6 models × 400 steps (2,400 Adam steps) and fits 4,500 starts plus 100
bootstrap replicates: 19-20 s of CPU time per seed measured on the shared 2-core machine at load average
1-3 (20-26 s at load 13-15), where the former 500-step grid took 24-27 s; about 0.7 s per 100 steps of
one model plus 1-2 s for the fit. That is above the ~10 s target because the law cannot be tested with
much less: below ~250 steps every width is still on the unigram plateau and losses are not ordered by
width; with four fitted widths the fit missed the interval at seed 2; and 300 steps at learning rate
5e-2, or batches of 32 windows, missed 3% at seed 1 or 4 (4.0%, 5.4%). A rerun reads the trained grid
back from the store (2 s); the config counterexample reuses the quick run's grid and trains only its
200-step held-out model. The default config is this grid with 1,000 bootstrap replicates.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmech.config import MAX_ELEMENTS, MAX_PARAMETERS, MAX_STEPS, check_budget, spec
from lmech.errors import BadInput
from lmech.experiments.base import Counterexample, Criterion, Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.registry import register
from lmech.laws.scaling import PARAMS, chinchilla_grid, fit_scaling

#: The store experiment under which each trained model of the grid is kept (and reused).
GRID = "scaling-law.grid"
#: Part of every stored model's key: raise it when ``train_model`` changes what a model's losses are.
GRID_VERSION = 2
#: Criteria tolerances (module docstring).
REL_TOLERANCE = 0.03
VACUOUS_HALF_WIDTH = 0.10


@dataclass(frozen=True)
class ScalingLawConfig(RunConfig):
    widths: tuple[int, ...] = spec((8, 12, 16, 20, 24), "widths of the fitted models (the N axis of the grid)",
                                   min=2, max=4096, max_items=16)
    heldout_width: int = spec(32, "width of the held-out model (wider than every fitted one)", min=2, max=4096)
    depth: int = spec(1, "transformer blocks", min=1, max=16)
    n_head: int = spec(2, "attention heads (every width a multiple of it)", min=1, max=64)
    block_size: int = spec(16, "context length in bytes", min=4, max=1024)
    batch_size: int = spec(64, "sequences per step", min=1, max=1024)
    steps: int = spec(400, "Adam steps of every model (constant learning rate)", min=10, max=MAX_STEPS)
    checkpoints: int = spec(5, "validation losses per model, log-spaced in steps (the D axis)", min=2, max=64)
    first_checkpoint: float = spec(0.5, "first checkpoint as a fraction of the steps", min=0.01, max=1.0)
    lr: float = spec(2e-2, "Adam learning rate of the base width (μP transfers it)", min=0.0, max=10.0,
                     min_exclusive=True)
    averaging: float = spec(8.0, "tail averaging: checkpoints evaluate w̄_t = w̄_(t−1) + min(1, c/t)(w_t − w̄_(t−1)), "
                            "the weights averaged over about the last t/c steps (0: the raw weights)", min=0.0,
                            max=1000.0)
    parametrization: str = spec("mup", "width parametrization (base: the smallest width)",
                                choices=("mup", "sp"))
    corpus_bytes: int = spec(50_000, "bytes of docstrings in the corpus (10% validation)", min=20_000,
                             max=20_000_000)
    eval_windows: int = spec(128, "validation windows of block_size bytes per checkpoint", min=8, max=65_536)
    start_stride: int = spec(1, "L-BFGS starts of the point fit: every k-th point of Hoffmann et al.'s grid of "
                             "4,500 (1: all of them)", min=1, max=450)
    bootstrap: int = spec(100, "bootstrap replicates of the fit", min=20, max=10_000)
    level: float = spec(0.9, "level of the prediction interval", min=0.5, max=0.999)
    replicates: int = spec(1, "independent runs (seeds) of every model; the held-out model's measured loss is "
                           "the mean of its runs", min=1, max=16)
    heldout_steps_fraction: float = spec(1.0, "fraction of the planned steps the held-out model is trained "
                                         "(1: as planned; less: a broken run the prediction knows nothing of)",
                                         min=0.01, max=1.0)
    reuse_grid: bool = spec(True, f"keep every trained model as a run of {GRID} in the run store ($LMECH_STORE "
                            "or ./lab) and reuse it when a run needs the same model")

    def check(self) -> None:
        super().check()
        if len(set(self.widths)) < 3:
            raise BadInput("widths", self.widths, "at least 3 distinct widths (the law has an N exponent)")
        if self.heldout_width <= max(self.widths):
            raise BadInput("heldout_width", self.heldout_width, f"a width above every fitted one (> {max(self.widths)})")
        for w in (*self.widths, self.heldout_width):
            if w % self.n_head:
                raise BadInput("widths", w, f"multiples of n_head = {self.n_head}")
        if len(checkpoint_steps(self)) * len(set(self.widths)) < len(PARAMS) + 1:
            raise BadInput("checkpoints", self.checkpoints, "enough checkpoints for more points than the law's "
                           "5 parameters")
        w = self.heldout_width
        check_budget("heldout_width", w, 12 * self.depth * w * w + 2 * 256 * w, MAX_PARAMETERS,
                     "parameters of the held-out transformer (12·depth·width² + embeddings)")
        check_budget("steps", self.steps, self.steps * (len(self.widths) + 1), MAX_STEPS,
                     "training steps of all models")
        check_budget("eval_windows", self.eval_windows, self.eval_windows * self.block_size * 256, MAX_ELEMENTS,
                     "validation logits (eval_windows·block_size·256)")
        check_budget("batch_size", self.batch_size, self.batch_size * self.block_size * max(256, w, self.block_size),
                     MAX_ELEMENTS, "activations of one batch (batch_size·block_size·max(256, width, block_size))")


def checkpoint_steps(cfg: ScalingLawConfig) -> list[int]:
    """The steps at which each model's validation loss is measured (log-spaced, distinct, ending at ``steps``)."""
    first = max(1, round(cfg.first_checkpoint * cfg.steps))
    steps = np.unique(np.round(np.geomspace(first, cfg.steps, cfg.checkpoints)).astype(int))
    return [int(s) for s in steps]


def _model(cfg: ScalingLawConfig, width: int, seed: int, device: str = "cpu"):
    from lmech.models.transformer import TinyTransformer

    return TinyTransformer(width=width, depth=cfg.depth, n_head=cfg.n_head, block_size=cfg.block_size,
                           parametrization=cfg.parametrization, base_width=min(cfg.widths), seed=seed,
                           device=device)


def non_embedding_parameters(cfg: ScalingLawConfig, width: int) -> int:
    """N of a model: its parameters except the token and position embedding tables (Kaplan et al. §3)."""
    return _non_embedding(width, cfg.depth, cfg.n_head, cfg.block_size, cfg.parametrization, min(cfg.widths))


@functools.lru_cache(maxsize=256)
def _non_embedding(width: int, depth: int, n_head: int, block_size: int, parametrization: str, base: int) -> int:
    from lmech.models.transformer import TinyTransformer

    model = TinyTransformer(width=width, depth=depth, n_head=n_head, block_size=block_size,
                            parametrization=parametrization, base_width=base, seed=0, device="meta")
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("wte.", "wpe.")))


def _model_key(cfg: ScalingLawConfig, width: int, steps: int, replicate: int) -> dict:
    """Everything a trained model's losses depend on (its run id in the store)."""
    key = {"replicate": replicate} if replicate else {}  # replicate 0: the run of the config's own seed
    return key | {"version": GRID_VERSION, "width": width, "steps": steps, "checkpoints": checkpoint_steps(cfg), "depth": cfg.depth,
                  "n_head": cfg.n_head, "block_size": cfg.block_size, "batch_size": cfg.batch_size, "lr": cfg.lr,
                  "parametrization": cfg.parametrization, "base_width": min(cfg.widths), "averaging": cfg.averaging,
                  "corpus_bytes": cfg.corpus_bytes, "eval_windows": cfg.eval_windows, "seed": cfg.seed}


def train_model(cfg: ScalingLawConfig, width: int, steps: int, progress: Progress, replicate: int = 0) -> pd.DataFrame:
    """Train one transformer of ``width`` for ``steps`` Adam steps; its validation loss at every checkpoint
    up to ``steps`` (columns step, tokens, loss, train_loss)."""
    from lmech.data.corpus import load_corpus

    corpus = load_corpus("docstrings", "byte", cfg.corpus_bytes)
    # common random numbers: every width starts from the same generator state and sees the same batches
    seed = (cfg.seed * 1_000_003 + replicate * 7_919) % (2**62)
    model = _model(cfg, width, seed)
    opt = torch.optim.Adam(model.param_groups(cfg.lr, "adam"), lr=cfg.lr)
    data_gen = torch.Generator().manual_seed(seed + 1)
    vx, vy = corpus.batch("val", cfg.eval_windows, cfg.block_size, torch.Generator().manual_seed(2024))
    marks = set(checkpoint_steps(cfg))
    names = [name for name, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    average = [p.detach().clone() for p in params]
    rows, train_loss = [], float("nan")
    for step in range(1, steps + 1):
        x, y = corpus.batch("train", cfg.batch_size, cfg.block_size, data_gen)
        loss = model.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        train_loss = float(loss.detach())
        if cfg.averaging:
            with torch.no_grad():
                torch._foreach_lerp_(average, params, min(1.0, cfg.averaging / step))
        progress.advance(1)
        if step in marks or step == steps:
            with torch.no_grad():
                weights = dict(zip(names, average if cfg.averaging else params))
                logits = torch.func.functional_call(model, weights, (vx,))
                val = float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), vy.reshape(-1)))
            rows.append({"step": step, "tokens": step * cfg.batch_size * cfg.block_size, "loss": val,
                         "train_loss": train_loss})
            if not math.isfinite(val):
                break
    return pd.DataFrame(rows)


def trained(cfg: ScalingLawConfig, width: int, steps: int, progress: Progress, replicate: int = 0) -> pd.DataFrame:
    """The losses of one model: from the store when ``reuse_grid`` and it is there, else trained (and kept)."""
    store = None
    if cfg.reuse_grid:
        from lmech.store import RunStore, run_id

        store = RunStore()
        key = _model_key(cfg, width, steps, replicate)
        try:
            rec = store.read(GRID, run_id(GRID, key), full=True)
        except OSError:
            rec = None
        if rec is not None and rec.status == "done":
            progress.advance(steps)
            return rec.series("losses")
    curve = train_model(cfg, width, steps, progress, replicate)
    if store is not None:
        try:
            handle = store.begin(GRID, key, {"label": f"width={width} steps={steps}"})
            handle.write_series("losses", curve)
            handle.finish("done")
        except OSError:  # a read-only or full store: the result stands, it is just not kept
            pass
    return curve


@register
class ScalingLaw(Experiment):
    """Verdicts: the held-out model's measured loss inside the fit's prediction interval and within 3%."""

    name = "scaling-law"
    law = ("A Chinchilla law L = E + A/N^α + B/D^β fitted on small transformers predicts the final loss of a wider "
           "one before it is trained: within the fit's 90% prediction interval and within 3%.")
    citation = ("Hoffmann et al. 2022, arXiv 2203.15556 (eq. 2, Approach 3); fitted as Besiroglu et al. 2024, "
                "arXiv 2404.10102")
    Config = ScalingLawConfig

    def default_config(self) -> ScalingLawConfig:
        """The quick grid with Besiroglu et al.'s 1,000 bootstrap replicates (a few seconds more)."""
        return ScalingLawConfig(bootstrap=1000)

    def quick_config(self) -> ScalingLawConfig:
        return ScalingLawConfig()

    def smoke_config(self) -> ScalingLawConfig:
        return ScalingLawConfig(widths=(8, 12, 16), heldout_width=24, steps=40, checkpoints=3, bootstrap=20,
                                eval_windows=16, start_stride=45, reuse_grid=False)

    def criteria(self) -> list[Criterion]:
        return [
            Criterion("heldout_in_interval", "|measured − predicted| in half-widths of the prediction interval "
                      "(held-out final loss)", 1.0,
                      why="the bootstrap prediction interval holds the fit's uncertainty (whole models resampled) "
                          "and one run's scatter about the surface; outside it the law mispredicts the larger model"),
            Criterion("heldout_rel_error", "|measured − predicted| / predicted (held-out final loss)", REL_TOLERANCE,
                      why="the issue's 3%; measured 0.1-2.5% (seeds 0, 1, 2), while stopping the held-out run "
                          "at half its steps misses by 7-13%"),
        ]

    def counterexamples(self) -> list[Counterexample]:
        def stopped_early(config, prediction, measurement):
            held = measurement.series["heldout"]
            first = held[held["step"] == held["step"].min()]  # the first checkpoint: half the steps, same runs
            series = dict(measurement.series) | {"heldout": first.reset_index(drop=True)}
            summary = dict(measurement.summary) | _heldout_summary(first)
            return Result(series=series, summary=summary, arrays=dict(measurement.arrays))

        both = ("heldout_in_interval", "heldout_rel_error")
        return [
            Counterexample(
                "held-out trained for half its steps", both, config=ScalingLawConfig(heldout_steps_fraction=0.5),
                why="a broken run: the prediction is for the planned run, and one stopped at half its tokens (the "
                    "fitted grid unchanged, read back from the store) sits 7-13% above the law's curve there"),
            Counterexample(
                "held-out read at its first checkpoint", both, perturb=stopped_early,
                why="the same broken run without training it again: the measured run's own validation loss at "
                    "its first checkpoint (half the planned steps) put in place of its final one"),
        ]

    # -- the plan: what is known before anything is trained --------------------------------------
    def predict(self, config: ScalingLawConfig) -> Result:
        """The grid's and the held-out model's sizes and token counts (the fit itself needs the small
        models trained: ``measure`` fits them and records the held-out prediction before training it)."""
        widths = sorted(set(config.widths)) + [config.heldout_width]
        plan = pd.DataFrame([{"width": w, "N": non_embedding_parameters(config, w), "step": s,
                              "tokens": s * config.batch_size * config.block_size, "heldout": w == config.heldout_width}
                             for w in widths for s in checkpoint_steps(config)])
        held = plan[plan.heldout]
        return Result(series={"plan": plan}, summary={"heldout_N": float(held["N"].iloc[0]),
                                                      "planned_tokens": float(held["tokens"].max())})

    # -- measurement: train and fit the grid, predict the held-out model, then train it -----------
    def measure(self, config: ScalingLawConfig, progress: Progress | None = None) -> Result:
        progress = progress or NullProgress()
        held_steps = max(1, round(config.steps * config.heldout_steps_fraction))
        widths = sorted(set(config.widths))
        reps = range(config.replicates)
        progress.start((config.steps * len(widths) + held_steps) * config.replicates, "scaling-law")
        frames = []
        for width in widths:
            for r in reps:
                curve = trained(config, width, config.steps, progress, r)
                frames.append(curve.assign(width=width, replicate=r, N=float(non_embedding_parameters(config, width))))
        grid = pd.concat(frames, ignore_index=True)
        bad = ~np.isfinite(grid["loss"].to_numpy(float))
        if bad.any():  # a small model blew up: no law to fit
            return Result(series={"grid": grid}, diverged_at=int(grid["step"][bad].iloc[0]))
        fit = fit_scaling(grid["N"].to_numpy(float), grid["tokens"].to_numpy(float), grid["loss"].to_numpy(float),
                          bootstrap=config.bootstrap, seed=config.seed,
                          groups=(grid["width"] * 64 + grid["replicate"]).to_numpy(),
                          bootstrap_starts=2, chunk=config.bootstrap, starts=chinchilla_grid()[::config.start_stride])
        # the prediction for the planned held-out run, made (and recorded) before the model is trained
        n_held = float(non_embedding_parameters(config, config.heldout_width))
        tokens = np.array([s * config.batch_size * config.block_size for s in checkpoint_steps(config)], float)
        N = np.full_like(tokens, n_held)
        lo, hi = fit.predict_interval(N, tokens, level=config.level, runs=config.replicates)
        slo, shi = fit.predict_interval(N, tokens, level=config.level, kind="confidence")
        predicted = pd.DataFrame({"step": checkpoint_steps(config), "tokens": tokens, "N": n_held,
                                  "loss": fit.predict(N, tokens), "lo": lo, "hi": hi, "surface_lo": slo,
                                  "surface_hi": shi})
        params, ci = fit.params, fit.intervals(0.95)
        table = pd.DataFrame({"param": list(PARAMS), "estimate": [params[k] for k in PARAMS],
                              "lo95": [ci[k][0] for k in PARAMS], "hi95": [ci[k][1] for k in PARAMS]})
        quanta_beta = params["alpha"] / (1 + params["alpha"])
        summary = {f"fit_{k}": params[k] for k in PARAMS} | {
            "fit_objective": fit.objective, "quanta_beta": quanta_beta, "beta_over_quanta": params["beta"] / quanta_beta,
            "predicted_loss": float(predicted["loss"].iloc[-1]), "predicted_lo": float(lo[-1]),
            "predicted_hi": float(hi[-1]), "heldout_N": n_held,
            "widest_fitted_loss": float(grid[(grid.width == widths[-1]) & (grid.step == grid.step.max())]["loss"].mean())}

        held = pd.concat([trained(config, config.heldout_width, held_steps, progress, r).assign(replicate=r)
                          for r in reps], ignore_index=True).assign(width=config.heldout_width, N=n_held)
        finite = np.isfinite(held["loss"].to_numpy(float))
        diverged = None if finite.all() else int(held["step"][~finite].iloc[0])
        summary |= _heldout_summary(held)
        return Result(series={"grid": grid, "prediction": predicted, "heldout": held, "params": table},
                      summary=summary, arrays={"fit": fit}, diverged_at=diverged)

    # -- verdict ----------------------------------------------------------------------------------
    def verdict(self, config: ScalingLawConfig, prediction: Result, measurement: Result):
        m = measurement.summary
        nan = float("nan")
        pred, lo, hi = m.get("predicted_loss", nan), m.get("predicted_lo", nan), m.get("predicted_hi", nan)
        measured = m.get("heldout_loss", nan)
        side = (hi - pred) if measured >= pred else (pred - lo)
        position = abs(measured - pred) / side if side > 0 else float("inf")
        half = max(hi - pred, pred - lo) / pred if pred > 0 else nan
        vacuous = (f"the {config.level:.0%} prediction interval is ±{half:.0%} of the prediction, wider than "
                   f"±{VACUOUS_HALF_WIDTH:.0%}: it cannot tell a good prediction from a bad one") \
            if half > VACUOUS_HALF_WIDTH else None
        rel = abs(measured - pred) / pred
        common = {"heldout_width": config.heldout_width, "heldout_N": prediction.summary["heldout_N"],
                  "planned_tokens": prediction.summary["planned_tokens"], "heldout_tokens": m.get("heldout_tokens", nan),
                  "alpha": m.get("fit_alpha", nan), "beta": m.get("fit_beta", nan),
                  "quanta_beta": m.get("quanta_beta", nan), "widest_fitted_loss": m.get("widest_fitted_loss", nan),
                  "widest_fitted_rel_error": abs(measured - m.get("widest_fitted_loss", nan)) / measured}
        return [
            self.make_verdict(
                "heldout_in_interval", f"|measured − predicted| in half-widths of the {config.level:.0%} "
                "prediction interval", [lo, hi], measured, position, inconclusive=vacuous, **common),
            self.make_verdict(
                "heldout_rel_error", "|measured − predicted| / predicted (held-out final loss)", pred, measured, rel,
                **common),
        ]

    # -- figures ----------------------------------------------------------------------------------
    def figures(self, config: ScalingLawConfig, prediction: Result, measurement: Result, outdir: Path):
        from lmech.report import plotting as P

        if "prediction" not in measurement.series:  # a small model diverged: draw the grid alone
            return self._grid_figure(config, measurement, outdir)
        grid, held_pred = measurement.series["grid"], measurement.series["prediction"]
        held = measurement.series["heldout"]
        fit = measurement.arrays.get("fit")
        s = measurement.summary
        fig, (ax, ax_res) = P.panels(2, ncols=2, size=(5.8, 4.2))
        widths = sorted(set(grid["width"]))
        for color, width in zip(P.colors(len(widths) + 1), widths):
            g = grid[grid.width == width]
            n = float(g["N"].iloc[0])
            ax.plot(6 * n * g["tokens"], g["loss"], "o", color=color, label=f"width {width} (N = {n:,.0f})")
            d = np.geomspace(g["tokens"].min(), g["tokens"].max(), 50)
            law = _law(s)
            ax.plot(6 * n * d, law(n, d), color=color, **{k: v for k, v in P.THEORY.items() if k != "color"})
        n_h = float(held_pred["N"].iloc[0])
        c_h = 6 * n_h * held_pred["tokens"]
        ax.fill_between(c_h, held_pred["lo"], held_pred["hi"], color="crimson", alpha=0.18,
                        label=f"held-out: {config.level:.0%} prediction band")
        ax.plot(c_h, held_pred["loss"], color="crimson", **{k: v for k, v in P.THEORY.items() if k != "color"})
        ax.plot(6 * n_h * held["tokens"], held["loss"], "s", color="crimson", markeredgecolor="black",
                label=f"held-out width {config.heldout_width} (N = {n_h:,.0f}), measured")
        ax.set(xscale="log", xlabel="compute C = 6ND (FLOP, non-embedding N)",
               ylabel="validation loss (nats/byte)", title="loss vs compute; dashed: the fitted law")
        ax.legend(fontsize=7, frameon=False)
        if fit is not None:
            from lmech.report.scaling_plots import iso_loss_panel

            iso_loss_panel(ax_res, fit, grid["N"].to_numpy(float), grid["tokens"].to_numpy(float),
                           grid["loss"].to_numpy(float), resolution=80)
            ax_res.plot(6 * n_h * held["tokens"].iloc[-1], n_h, "s", color="crimson", markeredgecolor="black",
                        markersize=8, zorder=4)
        fig.suptitle(f"fit: E = {s['fit_E']:.3g}, A = {s['fit_A']:.3g}, α = {s['fit_alpha']:.3f}, B = {s['fit_B']:.3g}, "
                     f"β = {s['fit_beta']:.3f}; quanta model α/(1+α) = {s['quanta_beta']:.3f}", fontsize=9)
        return [P.save(fig, outdir / "scaling_law.png")]

    def _grid_figure(self, config: ScalingLawConfig, measurement: Result, outdir: Path) -> list[Path]:
        from lmech.report import plotting as P

        grid = measurement.series["grid"]
        fig, (ax,) = P.panels(1, ncols=1)
        for color, width in zip(P.colors(len(set(grid["width"]))), sorted(set(grid["width"]))):
            g = grid[grid.width == width]
            ax.plot(g["tokens"], g["loss"], "o-", color=color, label=f"width {width}")
        ax.set(xscale="log", xlabel="tokens D", ylabel="validation loss", title="grid (a model diverged: no fit)")
        ax.legend(fontsize=8, frameon=False)
        return [P.save(fig, outdir / "scaling_law.png")]


def _heldout_summary(held: pd.DataFrame) -> dict:
    """The held-out measurement: the mean over its runs of the loss at their last checkpoint."""
    last = held[held["step"] == held["step"].max()]
    return {"heldout_loss": float(last["loss"].mean()), "heldout_tokens": float(last["tokens"].iloc[0]),
            "heldout_runs": float(len(last))}


def _law(summary: dict):
    from lmech.laws.scaling import ChinchillaLaw

    law = ChinchillaLaw(**{k: summary[f"fit_{k}"] for k in PARAMS})
    return law.loss


__all__ = ["GRID", "ScalingLaw", "ScalingLawConfig", "checkpoint_steps", "non_embedding_parameters", "trained"]
