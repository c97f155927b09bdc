r"""Law: under μP the optimal learning rate does not move with width (μTransfer); under SP it does.

Tensor Programs V (Yang et al. 2022, arXiv 2203.03466, Fig. 1 and §5): train the same architecture at
several widths :math:`n` over a grid of learning rates :math:`\eta`. In the standard parametrization (SP)
the best rate falls with width (with Adam the hidden layers' updates grow like :math:`n\eta`, so
:math:`\eta^* \propto 1/n` asymptotically: −1 in :math:`\log_2\eta` per doubling of width); in μP
(:func:`lmech.param.parametrize` with ``"mup"``, equal to SP at the base width) the best rate is the same
at every width, and at that rate wider is better.

**Measured.** For each parametrization and width, one network (``init_seed``: SP and μP rescale the
same draw) is trained at every rate of the grid (:func:`lmech.experiments.lr_grid.train_lr_grid`: the
rates as one batched model, the same minibatches for all) with Adam; its loss is the mean training loss
over the last quarter of the steps (inf if it diverged). Each curve's optimum is the vertex of a
parabola in :math:`\log_2\eta` through its best grid point and two neighbours on each side
(:func:`lmech.experiments.lr_grid.parabola_optimum`), never the grid's argmin; an optimum at the grid's
edge makes the criteria that read it inconclusive. Networks: a ReLU MLP (``depth`` hidden layers) on the
1797 scikit-learn digits, or the tiny transformer (:class:`lmech.models.transformer.TinyTransformer`) on
byte-level (``tokenization="char"``: character-level) standard-library docstrings
(:func:`lmech.data.corpus.load_corpus`).

**Verdicts** (widths spanning at least 16×, else inconclusive):

* ``mup_shift``: max − min over widths of μP's optimal :math:`\log_2\eta` ≤ 1 (one grid step);
* ``sp_shift``: SP's optimal :math:`\log_2\eta` at the narrowest width minus at the widest ≥ 2;
* ``mup_wider_better``: at the grid rate nearest the narrowest μP network's optimum, the loss rises by
  at most 3% from one width to the next (the loss may not increase; 3% allows for the noise of a
  tail-averaged minibatch loss, well under the measured gains below).

**Points and sweeps.** A measurement is a set of independent points (one per parametrization and
width, :data:`AXES`), each itself a valid one-width config of this law. With ``executor=local`` or
``ray`` they run as a sweep (:func:`lmech.experiments.point_sweep.run_points`: ``SweepSpec`` → ``plan``
→ ``run_sweep``), each a run in the store, so an interrupted measurement resumes and the points can be
spread over a Ray cluster; ``inline`` (default) computes them in this process. The numbers are the same
(``local``: a test; ``ray``: checked by hand on the smoke config with a local Ray of 2 workers).

**Calibration** (2-core machine shared with other jobs, load 7-9; CPU time of one thread):

* quick entry (MLP, depth 2, widths 16/64/256, log2 η = −10…−3, 100 steps of batch 32): 5.5 s of one
  core (plus ~3 s of first-call start-up); at seeds 0, 1, 2: ``mup_shift`` 0.28, 0.38, 0.19 (≤ 1);
  ``sp_shift`` 2.83, 2.42, 2.35 (≥ 2; optima −5.9 → −8.7, −6.0 → −8.5, −5.9 → −8.2); ``mup_wider_better``
  −0.19, −0.10, −0.28 (each width at least 10% lower loss than the previous).
* quick transformer entry (the ``char`` row of the table below: character tokens, depth 1, widths 8/32/128,
  base 8, 2 heads, 8-token windows, batch 4, 32 evaluation windows, 120 steps, log2 η = −11…−3), measured by
  the lead on one machine at load 2, seeds 0, 1, 2, 3, 4: ``mup_shift`` 0.30, 0.71, 0.52, 0.64, 0.43 (≤ 1);
  ``sp_shift`` 4.56, 4.20, 3.47, 4.21, 4.19 (≥ 2); ``mup_wider_better`` −0.021, −0.024, −0.011, −0.012,
  −0.019; 10-13 s of one core per seed. It costs more than the 8 s first set for a quick entry (the law's
  two quick entries together stay under the ~25 s of compute a law has in ``make run``), and its μP shift
  varies with the machine's arithmetic at the same seed (the table's helper measured 0.34, 0.82, 0.35, 0.65,
  0.43): the margin to one grid step, ≥ 0.18 in both sets, is the power of this entry.
* transformer entry of the full law book (depth 1, widths 8/32/128, base 8, 2 heads, 16-byte windows,
  batch 4, 150 steps, log2 η = −11…−2): 20-25 s of one core; seed 0: ``mup_shift`` 0.79, ``sp_shift``
  3.96 (−5.0 → −9.0), ``mup_wider_better`` −0.031; seed 1: 0.48, 3.72 (−5.2 → −8.9), −0.008; seed 2: 0.49,
  4.87 (−4.3 → −9.2), −0.011 (at this size wider is barely better at the narrow network's rate: 1-3% from
  width 32 to 128). Swapped counterexample: ``mup_shift`` 3.96, 3.72, 4.87; ``sp_shift`` −0.79, 0.35, 0.49;
  ``mup_wider_better`` 0.084, 0.072, 0.060.
* **a transformer for the quick law book: the configs measured.** One seed's sweep (SP and μP at three
  widths; depth 1, batch 4, 8-token windows, 32 evaluation windows, 2 heads unless starred), CPU time of
  one core at load 11-15 on the 2-core machine (where the MLP quick entry measures 3.3 s), and
  ``mup_shift`` at seeds 0, 1, 2, 3, 4 (✗: violated, or inconclusive at the grid's edge); wherever
  judged, ``sp_shift`` ≥ 3.4 and ``mup_wider_better`` ≤ 0.015:

  ======  ===========  =====  =======  ========  ====================================  =====
  tokens  widths       steps  log2 η   CPU s     ``mup_shift``, seeds 0-4               holds
  ======  ===========  =====  =======  ========  ====================================  =====
  byte    8/32/128     120    −10…−3   12-14     0.65, 0.61, 1.93 ✗, 0.36, 0.31          4/5
  char    8/32/128     80     −11…−3   6.9-7.6   0.84, 1.62 ✗, 2.45 ✗, 1.15 ✗, 0.98       2/5
  char    8/32/128     100    −11…−3   8.8-10.4  0.51, 1.30 ✗, 1.00, 0.63, 0.63           4/5
  char    8/32/128     120    −11…−3   12-14     0.34, 0.82, 0.35, 0.65, 0.43             5/5
  char    6/24/96      120    −11…−3   9.4-11.5  0.86, 0.40, 1.20 ✗, 0.32, edge ✗         3/5
  char*   4/16/64      120    −11…−3   6.5-7.2   0.55, edge ✗, 0.91 (seeds 0-2)          2/3
  ======  ===========  =====  =======  ========  ====================================  =====

  (``tokenization="char"``: the 95 characters that occur in the 200 kB of docstrings, in place of 256
  bytes; * one head, base width 4.) Also tried on bytes at 8/32/128 and 120 steps: the rate decayed
  linearly to 0 (μP's optimum moves to the grid's largest rate at seeds 0, 1, 2: inconclusive) and one
  head (seed 2: 2.08 ✗). Over seeds 0-4 (characters, 8/32/128) the μP shift is 1.41 ± 0.66 (mean ± sd)
  at 80 steps, 0.81 ± 0.33 at 100 and 0.52 ± 0.21 at 120: a margin below 1 at five seeds needs ~120
  steps, 12-14 s of one core, against the 8 s of a quick entry (the sweep costs ~0.1 s of CPU per step;
  a profile of the width-128 network's sweep puts about half of its time in Adam's update, 2·10⁶
  parameters for 8 rates, and widths 8 and 32, a third of the total, are mostly per-step dispatch).
  Why bytes fail at seed 2: the narrowest network has not left the plateau near the unigram entropy
  (3.21 nats; bigram 2.54) by step 120 (μP at log2 η = −7, −6, −5: loss 3.262, 3.266, 3.290, no bowl), so its parabola vertex (−6.37)
  sits at the plateau's edge while widths 32 and 128 have their bowls at −5.0 and −4.4 (SP's widest
  optimum also lies below the grid's −10). Neither the grid's edge (μP's optima are bracketed) nor the
  noise of the tail average: the loss on the evaluation windows after the last step puts μP's optima at
  −5.9, −5.1, −4.7, still 1.2 apart. On characters the width-8 curve at seed 2 has its bowl (3.22, 3.18,
  3.11, 3.22 at log2 η = −7…−4) and the shift is 0.35.
* counterexample (SP and μP swapped: each criterion judged on the other parametrization's measured
  curves), seeds 0, 1, 2 of the quick entry: ``mup_shift`` 2.83, 2.42, 2.35 (> 1), ``sp_shift`` 0.28,
  0.03, −0.10 (< 2), ``mup_wider_better`` 1.58, 0.75, 0.41 (> 0.03: SP's widest network, at the rate
  tuned on the narrowest, trains worse or diverges).
* default config (MLP, widths 16…1024, log2 η = −12…−1, 100 steps): 91 s of one core; seed 0:
  ``mup_shift`` 0.28, ``sp_shift`` 4.72 (SP's optimum −5.9, −7.2, −8.8, −10.6: a slope near the
  asymptotic −1 per doubling once wide), ``mup_wider_better`` −0.007 (at log2 η = −6 width 1024 trains 0.7%
  below width 256: the gain from width has nearly run out at 100 steps); seeds 1 and 2 (82-84 s each):
  ``mup_shift`` 0.38, 0.33, ``sp_shift`` 2.77, 3.73, ``mup_wider_better`` −0.017, −0.056: the default holds
  at seeds 0, 1, 2. With 200 steps (losses near 0.03, close to
  memorizing the 1797 digits; 162 s of one core) the check comes out violated at seed 0: at log2 η = −7
  the tail-averaged minibatch loss of width 1024 is 8.3% above width 256's (0.0329 against 0.0304), while
  the loss on all 1797 digits after the last step (``final_loss``) is 0.3% below it (0.03444 against
  0.03456; 16: 0.0777, 64: 0.0356). So at 200 steps the gain from width has run out and the 8% comes from the
  last quarter's minibatch losses (their fluctuation at a fixed rate; one seed, measured), not from a loss that
  rises with width.
  The default stays at 100 steps, where the gain is still resolved (seeds 0, 1, 2 above).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from lmech.config import MAX_ELEMENTS, MAX_PARAMETERS, MAX_STEPS, check_budget, spec
from lmech.data.corpus import TOKENIZATIONS
from lmech.devices import resolve_device
from lmech.errors import BadInput
from lmech.experiments.base import Counterexample, Criterion, Experiment, Progress, Result
from lmech.experiments.lr_grid import cross_entropy, train_lr_grid
from lmech.experiments.lr_transfer import (
    check_sweep,
    curve_frame,
    measure_transfer,
    optima,
    shift,
    transfer_figure,
    transferred,
)
from lmech.experiments.point_sweep import PointsConfig
from lmech.experiments.registry import register

MODELS = ("mlp", "transformer")
PARAMETRIZATIONS = ("sp", "mup")
#: the axes along which a measurement splits into independent points (one network each)
AXES = ("parametrizations", "widths")
#: μP: the optimum moves by at most one grid step, a factor 2 (the issue's tolerance)
MUP_SHIFT = 1.0
#: SP: the optimum moves by at least two grid steps, a factor 4
SP_SHIFT = 2.0
#: the smallest width ratio the law is judged over
MIN_SPAN = 16
#: relative increase of the loss from one width to the next that "wider is better" allows (seed noise)
WIDER_TOLERANCE = 0.03
DIGITS_FEATURES, DIGITS_CLASSES = 64, 10


@dataclass(frozen=True)
class MuTransferConfig(PointsConfig):
    model: str = spec("mlp", "network: mlp (scikit-learn digits) or transformer (docstring corpus)", choices=MODELS)
    parametrizations: tuple[str, ...] = spec(PARAMETRIZATIONS, "parametrizations compared", choices=PARAMETRIZATIONS)
    widths: tuple[int, ...] = spec((16, 64, 256, 1024), "widths n (hidden units / model dimension)", min=2,
                                   max=4096, max_items=12)
    base_width: int = spec(16, "width at which μP equals SP (its base shape)", min=2, max=4096)
    log2_lrs: tuple[float, ...] = spec(tuple(float(v) for v in range(-12, 0)), "grid of log2 learning rates "
                                       "(spacing at most 1: a factor 2)", min=-40.0, max=10.0, max_items=40)
    optimizer: str = spec("adam", "optimizer (TP V Fig. 1: Adam)", choices=("adam", "sgd"))
    steps: int = spec(100, "training steps at each learning rate", min=1, max=100_000)
    decay: bool = spec(False, "decay the learning rate linearly to 0 over the steps (else constant)")
    batch_size: int = spec(32, "examples (mlp) or sequences (transformer) per step", min=1, max=1797)
    depth: int = spec(2, "hidden layers (mlp) or blocks (transformer)", min=1, max=16)
    n_samples: int = spec(1797, "digits trained on (mlp); the training loss is measured on all of them", min=16,
                          max=1797)
    n_head: int = spec(2, "attention heads (transformer; the head dimension grows with width)", min=1, max=64)
    block_size: int = spec(16, "tokens per sequence (transformer)", min=2, max=256)
    corpus_bytes: int = spec(200_000, "bytes of docstrings collected (transformer)", min=2_000, max=5_000_000)
    tokenization: str = spec("byte", "tokens of the docstring corpus (transformer): bytes (vocabulary 256) or the "
                             "corpus's characters (vocabulary: those that occur, 95 at 200 kB)", choices=TOKENIZATIONS)
    eval_windows: int = spec(64, "training windows on which the final loss is measured (transformer)", min=1,
                             max=4096)

    def check(self) -> None:
        super().check()
        check_sweep("widths", self.widths, self.log2_lrs, self.parametrizations)
        widest = max(self.widths)
        if self.model == "transformer" and any(w % self.n_head for w in (*self.widths, self.base_width)):
            raise BadInput("widths", self.widths, f"multiples of n_head = {self.n_head} (and base_width too)")
        if self.model == "mlp":
            params = DIGITS_FEATURES * widest + (self.depth - 1) * widest**2 + widest * DIGITS_CLASSES
            tokens = self.batch_size
        else:
            params = 12 * self.depth * widest**2 + 2 * 256 * widest + self.block_size * widest  # at most 256 tokens
            tokens = self.batch_size * self.block_size
        k = len(self.log2_lrs)
        check_budget("widths", self.widths, params * k, MAX_PARAMETERS,
                     "parameters of the widest network times the learning rates trained at once")
        check_budget("batch_size", self.batch_size, tokens * widest * 4 * k, MAX_ELEMENTS,
                     "activations of one step (examples·width·4·learning rates)")
        check_budget("steps", self.steps, self.steps * len(self.widths) * len(self.parametrizations), MAX_STEPS,
                     "training steps of all networks")
        if self.model == "mlp" and self.batch_size > self.n_samples:
            raise BadInput("batch_size", self.batch_size, f"at most n_samples = {self.n_samples}")


# -- the networks and their data ------------------------------------------------------------------
def _mlp(config: MuTransferConfig, width: int, device: str = "cpu") -> nn.Sequential:
    """``depth`` ReLU hidden layers of ``width`` on the 64 digit pixels, a readout to 10 classes."""
    layers: list[nn.Module] = [nn.Linear(DIGITS_FEATURES, width, device=device), nn.ReLU()]
    for _ in range(config.depth - 1):
        layers += [nn.Linear(width, width, device=device), nn.ReLU()]
    layers.append(nn.Linear(width, DIGITS_CLASSES, device=device))
    return nn.Sequential(*layers)


def init_seed(config: MuTransferConfig, width: int) -> int:
    """The initialization seed of the network of ``width`` (shared by the parametrizations: SP and μP start
    from the same draw, which μP rescales)."""
    return (config.seed * 1_000_003 + width * 7_919) % (2**62)


def network(config: MuTransferConfig, parametrization: str, width: int):
    """(model, its :class:`~lmech.param.ParamTable`) at ``width`` in ``parametrization`` (base: ``base_width``)."""
    from lmech.models.init import standard_init_

    seed = init_seed(config, width)
    if config.model == "mlp":
        from lmech.param import parametrize

        net = standard_init_(_mlp(config, width), torch.Generator().manual_seed(seed))
        p = parametrize(net, parametrization, base=_mlp(config, config.base_width, "meta"),
                        delta=_mlp(config, 2 * config.base_width, "meta"))
        return net.to(resolve_device(config.device)), p.table
    from lmech.models.transformer import TinyTransformer

    net = TinyTransformer(vocab_size=corpus(config).vocab_size, block_size=config.block_size, width=width, depth=config.depth,
                          n_head=config.n_head, parametrization=parametrization, base_width=config.base_width,
                          seed=seed, device=resolve_device(config.device))
    return net, net.param_table


def digits_data(n_samples: int, batch_size: int, seed: int):
    """(batches(), eval batch) on the first ``n_samples`` scikit-learn digits (standardized pixels):
    minibatches of ``batch_size`` drawn with replacement from a generator seeded by ``seed`` (the same
    sequence for every network of a run), and all ``n_samples`` digits as the evaluation batch."""
    from lmech.data.digits import digits

    x, y = digits(n_samples, one_hot=False, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)

    def batches():
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        return x[idx], y[idx]

    return batches, (x, y)


def corpus(config: MuTransferConfig):
    """The docstring corpus of a transformer config (:func:`lmech.data.corpus.load_corpus`, cached per process)."""
    from lmech.data.corpus import load_corpus

    return load_corpus("docstrings", config.tokenization, config.corpus_bytes)


def data(config: MuTransferConfig):
    """(batches(), eval batch): a generator of training batches (seeded by the run's seed, the same sequence
    for every network) and the fixed batch on which the final training loss is measured."""
    if config.model == "mlp":
        return digits_data(config.n_samples, config.batch_size, config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    text = corpus(config)
    evaluation = text.batch("train", config.eval_windows, config.block_size,
                              torch.Generator().manual_seed(config.seed + 1))
    return (lambda: text.batch("train", config.batch_size, config.block_size, gen)), evaluation


def learning_rate_curve(config: MuTransferConfig, parametrization: str, width: int) -> pd.DataFrame:
    """One network's learning-rate sweep (:func:`~lmech.experiments.lr_grid.train_lr_grid`): its curve
    (:func:`~lmech.experiments.lr_transfer.curve_frame`)."""
    net, table = network(config, parametrization, width)
    batches, evaluation = data(config)
    run = train_lr_grid(net, table, cross_entropy, batches, [2.0**v for v in config.log2_lrs], config.steps,
                        optimizer=config.optimizer, decay=config.decay, eval_batch=evaluation)
    return curve_frame(run, config.log2_lrs, parametrization, "width", width, config.steps)


@register
class MuTransfer(Experiment):
    """Verdicts: μP's optimum within one grid step across widths, SP's moving by at least two, wider is better."""

    name = "mu-transfer"
    law = ("Under μP the optimal learning rate is the same at every width (it moves by at most a factor 2 over a "
           "16× range of widths, where SP's moves by at least a factor 4), and at the learning rate tuned on the "
           "narrowest network wider networks train to a lower loss.")
    citation = "Yang et al. 2022, Tensor Programs V, arXiv 2203.03466 (Fig. 1, §5)"
    Config = MuTransferConfig

    def default_config(self) -> MuTransferConfig:
        return MuTransferConfig()

    def quick_config(self) -> MuTransferConfig:
        return MuTransferConfig(widths=(16, 64, 256), log2_lrs=tuple(float(v) for v in range(-10, -2)), steps=100)

    def transformer_config(self) -> MuTransferConfig:
        """The tiny transformer on the docstring corpus (measured at seeds 0, 1, 2: module docstring)."""
        return MuTransferConfig(model="transformer", widths=(8, 32, 128), base_width=8, depth=1, batch_size=4,
                                steps=150, log2_lrs=tuple(float(v) for v in range(-11, -1)))

    def transformer_quick_config(self) -> MuTransferConfig:
        """The lean transformer of the quick law book: character tokens, 120 steps (module docstring's table:
        the one config measured to hold at seeds 0-4)."""
        return MuTransferConfig(model="transformer", widths=(8, 32, 128), base_width=8, depth=1, batch_size=4,
                                block_size=8, eval_windows=32, steps=120, tokenization="char",
                                log2_lrs=tuple(float(v) for v in range(-11, -2)))

    def lawbook(self, quick: bool = True) -> list[tuple[str, MuTransferConfig]]:
        """Quick: the MLP and the lean character-level transformer (10-13 s of one core); full: the MLP at
        its default widths and the byte-level transformer (20-25 s)."""
        if quick:
            return [("mlp", self.quick_config()), ("transformer", self.transformer_quick_config())]
        return [("mlp", self.default_config()), ("transformer", self.transformer_config())]

    def smoke_config(self) -> MuTransferConfig:
        return MuTransferConfig(widths=(16, 256), log2_lrs=(-8.0, -7.0, -6.0), steps=5, n_samples=200)

    def criteria(self) -> list[Criterion]:
        return [
            Criterion("mup_shift", "max − min over widths of μP's optimal log2 learning rate (parabola vertex)",
                      MUP_SHIFT, "the issue's tolerance: one grid step, a factor 2"),
            Criterion("sp_shift", "SP's optimal log2 learning rate at the narrowest width minus at the widest",
                      (SP_SHIFT, math.inf), "the issue's threshold: two grid steps, a factor 4 (TP V: SP's Adam optimum "
                      "scales like 1/width in the hidden layers, 4 steps over 16×)"),
            Criterion("mup_wider_better", "largest relative increase of μP's training loss from one width to the "
                      "next, at the learning rate tuned on the narrowest width", WIDER_TOLERANCE,
                      "the loss may not rise; 3% allows for the noise of a tail-averaged minibatch loss, well "
                      "under the measured gains (module docstring)"),
        ]

    def counterexamples(self) -> list[Counterexample]:
        def swapped(config, prediction, measurement):
            curves = measurement.series["curves"].copy()
            curves["parametrization"] = curves["parametrization"].map({"sp": "mup", "mup": "sp"})
            return Result(series={**measurement.series, "curves": curves}, summary=dict(measurement.summary))

        return [Counterexample(
            "SP and μP swapped", ("mup_shift", "sp_shift", "mup_wider_better"), entry="mlp",
            why="the μP criteria judged on SP's curves and the SP criterion on μP's: SP's optimum moves by 2-3 "
                "grid steps, μP's by a fraction of one, and at the rate tuned on the narrowest SP network the "
                "widest SP network trains worse",
            perturb=swapped)]

    # -- theory --------------------------------------------------------------------------------------
    def predict(self, config: MuTransferConfig) -> Result:
        """The theory's statements (TP V §5): μP's optimum is width-independent (within a grid step); SP's Adam
        optimum moves (∝ 1/width in the hidden layers, −1 in log2 per doubling: a line of slope −1)."""
        widths = np.asarray(config.widths, dtype=float)
        frame = pd.DataFrame({"width": widths, "mup_shift_max": MUP_SHIFT,
                              "sp_asymptotic_slope": -1.0 if config.optimizer == "adam" else math.nan})
        return Result(series={"theory": frame}, summary={"mup_shift_max": MUP_SHIFT, "sp_shift_min": SP_SHIFT})

    # -- experiment ----------------------------------------------------------------------------------
    def measure(self, config: MuTransferConfig, progress: Progress | None = None) -> Result:
        """One learning-rate curve per parametrization and width (:func:`learning_rate_curve`), each a point
        of a sweep when ``config.executor`` is local or ray; their parabola optima."""
        return measure_transfer(self.name, config, AXES, "width", learning_rate_curve, MIN_SPAN, progress)

    # -- verdict -------------------------------------------------------------------------------------
    def verdict(self, config: MuTransferConfig, prediction: Result, measurement: Result):
        curves = measurement.series["curves"]
        opt = optima(curves, "width")
        mup_total, _, mup_problem, mup_opt = shift(opt, "mup", "width", MIN_SPAN)
        _, sp_drop, sp_problem, sp_opt = shift(opt, "sp", "width", MIN_SPAN)
        worst, losses, wider_problem = transferred(curves, opt, "mup", "width", MIN_SPAN)
        return [
            self.make_verdict("mup_shift", "max − min over widths of μP's optimal log2 learning rate", 0.0,
                              mup_total, mup_total, inconclusive=mup_problem, optimum_by_width=mup_opt),
            self.make_verdict("sp_shift", "SP's optimal log2 learning rate, narrowest minus widest width",
                              f">= {SP_SHIFT:g}", sp_drop, sp_drop, inconclusive=sp_problem, optimum_by_width=sp_opt),
            self.make_verdict("mup_wider_better", "largest relative rise of μP's loss from one width to the next at "
                              "the narrowest width's optimal rate", 0.0, worst, worst, inconclusive=wider_problem,
                              losses=losses),
        ]

    # -- figures -------------------------------------------------------------------------------------
    def figures(self, config: MuTransferConfig, prediction: Result, measurement: Result, outdir: Path):
        from lmech.report import plotting as P

        fig, ax, opt = transfer_figure(measurement.series["curves"], "width", {"sp": "SP", "mup": "μP"},
                                       f"{config.model}, {config.optimizer}", "mup", MUP_SHIFT)
        sp = opt[opt.parametrization == "sp"].sort_values("width")
        if config.optimizer == "adam" and not sp.empty and math.isfinite(sp["log2_lr"].iloc[0]):
            w = sp["width"].to_numpy(dtype=float)
            ax.plot(w, sp["log2_lr"].iloc[0] - np.log2(w / w[0]), label="SP asymptote: ∝ 1/width", **P.THEORY)
        P.legend_below(ax)
        return [P.save(fig, outdir / f"mu-transfer-{config.model}.png")]


