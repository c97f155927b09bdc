"""A test-only law for the sweep tests: gradient descent on a quadratic, which diverges for lr > 2/h.

Imported by the tests and, through ``LMECH_PLUGINS=sweep_toys`` (with this folder on the path), by
every sweep worker. ``crash`` makes a run fail on purpose: ``raise`` raises inside ``measure`` (a
failed run with a traceback), ``exit`` kills the worker process (``os._exit``) as a segfault would.
``sleep`` makes each run last at least that long (for interruption tests).

``toy-rounds`` is the same law measured the way ``catapult`` bisects its boundaries: ``rounds`` rounds,
round r the learning rates ``lrs`` × (r + 1), each round a sweep of its points
(:func:`lmech.experiments.point_sweep.run_points`) unless ``executor`` is ``inline``; ``interrupt_after``
raises KeyboardInterrupt after that many rounds (Ctrl-C in the middle of a measurement).

The law: GD with step ``lr`` on L(x) = h/2 ‖x‖² gives x_t = (1 − lr·h)^t x_0, so
L_t = (1 − lr·h)^{2t} L_0: it converges iff lr < 2/h and blows up otherwise (the classical stability
threshold of gradient descent, e.g. Cohen et al. 2021, arXiv 2103.00065, sec. 2).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmech.config import spec
from lmech.experiments.base import Experiment, Result, RunConfig
from lmech.experiments.point_sweep import INLINE, PointsConfig, run_points
from lmech.experiments.registry import _REGISTRY, register

NAME = "toy-quadratic"


@dataclass(frozen=True)
class ToyConfig(RunConfig):
    curvature: float = spec(1.0, "curvature h of L(x) = h/2 |x|^2", min=0.0, max=1e6, min_exclusive=True)
    lr: float = spec(0.5, "learning rate", min=0.0, max=1e6, min_exclusive=True)
    steps: int = spec(50, "GD steps", min=1, max=10**6)
    dim: int = spec(4, "dimension of x", min=1, max=10**4)
    width: int = spec(1, "a dummy integer field (for integer grids)", min=1, max=10**6)
    sleep: float = spec(0.0, "seconds each run waits before training", min=0.0, max=600.0)
    crash: str = spec("none", "none | raise | exit: make the run fail", choices=("none", "raise", "exit"))


class ToyQuadratic(Experiment):
    name = NAME
    law = "Gradient descent on a quadratic of curvature h contracts by |1 − lr·h| per step and diverges for lr > 2/h."
    citation = "Cohen et al. 2021, arXiv 2103.00065, sec. 2 (stability of GD on a quadratic)"
    Config = ToyConfig

    def quick_config(self) -> ToyConfig:
        return ToyConfig()

    def _x0(self, cfg: ToyConfig) -> torch.Tensor:
        gen = torch.Generator().manual_seed(cfg.seed)
        return torch.randn(cfg.dim, generator=gen, dtype=torch.float64)

    def predict(self, config: ToyConfig) -> Result:
        x0 = self._x0(config)
        q = 1.0 - config.lr * config.curvature
        loss0 = 0.5 * config.curvature * float(x0 @ x0)
        t = np.arange(config.steps + 1)
        with np.errstate(over="ignore"):
            loss = loss0 * np.abs(q) ** (2.0 * t)
        return Result(series={"loss": pd.DataFrame({"step": t, "loss": loss})},
                      summary={"stable": float(abs(q) < 1)})

    def measure(self, config: ToyConfig, progress=None) -> Result:
        if config.sleep:
            time.sleep(config.sleep)
        if config.crash == "raise":
            raise RuntimeError(f"toy crash at lr={config.lr}")
        if config.crash == "exit":
            os._exit(17)
        x = self._x0(config).clone().requires_grad_(True)
        losses, diverged = [], None
        for k in range(config.steps + 1):
            loss = 0.5 * config.curvature * (x @ x)
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                diverged = k
                break
            if k == config.steps:
                break
            (g,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x -= config.lr * g
        frame = pd.DataFrame({"step": np.arange(len(losses)), "loss": losses})
        return Result(series={"loss": frame}, summary={"final_loss": losses[-1]}, diverged_at=diverged)

    def verdict(self, config: ToyConfig, prediction: Result, measurement: Result):
        pred = prediction.series["loss"]["loss"].to_numpy()
        meas = measurement.series["loss"]["loss"].to_numpy()
        n = len(meas)
        with np.errstate(invalid="ignore", over="ignore"):
            rel = np.abs(meas - pred[:n]) / np.maximum(np.abs(pred[:n]), 1e-300)
        err = float(np.max(rel)) if measurement.diverged_at is None else float("nan")
        return [self.make_verdict("loss_rel_err", "max_t |L_t measured − L_0 q^{2t}| / L_0 q^{2t}", "closed form",
                                  "GD", err, 1e-9)]

    def figures(self, config: ToyConfig, prediction: Result, measurement: Result, outdir: Path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 2))
        ax.semilogy(measurement.series["loss"]["step"], measurement.series["loss"]["loss"])
        path = outdir / "toy.png"
        fig.savefig(path, dpi=40)
        plt.close(fig)
        return [path]


if NAME not in _REGISTRY:
    register(ToyQuadratic)

ROUNDS = "toy-rounds"


@dataclass(frozen=True)
class RoundsConfig(PointsConfig):
    lrs: tuple[float, ...] = spec((0.1, 0.2), "learning rates of the first round (a point: one of them)", min=0.0,
                                  max=1.0, min_exclusive=True, max_items=8)
    rounds: int = spec(2, "rounds of points: round r runs lrs × (r + 1)", min=1, max=8)
    interrupt_after: int = spec(0, "raise KeyboardInterrupt after this many rounds (0: never)", min=0, max=8)
    steps: int = spec(20, "GD steps on L(x) = x²/2 from x = 1", min=1, max=1000)


class ToyRounds(Experiment):
    name = ROUNDS
    law = "Gradient descent on x²/2 with step lr < 1 gives L_t = (1 − lr)^{2t} L_0."
    citation = "Cohen et al. 2021, arXiv 2103.00065, sec. 2 (stability of GD on a quadratic)"
    Config = RoundsConfig

    def quick_config(self) -> RoundsConfig:
        return RoundsConfig()

    def predict(self, config: RoundsConfig) -> Result:
        return Result()

    def _point(self, config: RoundsConfig, lr: float) -> pd.DataFrame:
        x, losses = 1.0, []
        for _ in range(config.steps + 1):
            losses.append(0.5 * x * x)
            x -= lr * x
        return pd.DataFrame({"lr": lr, "step": np.arange(config.steps + 1), "loss": losses})

    def measure(self, config: RoundsConfig, progress=None) -> Result:
        frames = []
        for r in range(config.rounds):
            part = replace(config, lrs=tuple(lr * (r + 1) for lr in config.lrs))
            if config.executor == "inline":
                frames += [self._point(part, lr) for lr in part.lrs]
            else:
                fixed = {**INLINE, "rounds": 1, "interrupt_after": 0}
                done = run_points(ROUNDS, part, ("lrs",), executor=config.executor, store=config.store,
                                  workers=config.workers, ray_address=config.ray_address, fixed=fixed)
                frames += [series["loss"] for _, series in done]
            if config.interrupt_after == r + 1:
                raise KeyboardInterrupt
        return Result(series={"loss": pd.concat(frames, ignore_index=True)})

    def verdict(self, config: RoundsConfig, prediction: Result, measurement: Result):
        loss = measurement.series["loss"]
        theory = 0.5 * (1.0 - loss["lr"]) ** (2 * loss["step"])
        err = float(np.max(np.abs(loss["loss"] - theory) / theory))
        return [self.make_verdict("loss_rel_err", "max_t |L_t / (1 − lr)^{2t} L_0 − 1|", "closed form", "GD", err,
                                  1e-9)]

    def figures(self, config: RoundsConfig, prediction: Result, measurement: Result, outdir: Path):
        return []


if ROUNDS not in _REGISTRY:
    register(ToyRounds)
