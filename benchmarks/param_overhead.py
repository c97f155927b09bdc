"""Cost of a training step with ``lmech.param.parametrize`` against the same step without it (goal: ratio <= 1.02).

Two workloads, float32, one torch thread:

* an MLP 16-1024-1024-10 (ReLU, cross-entropy, batch 128, Adam): plain ``nn.Sequential`` with
  ``torch.optim.Adam(model.parameters())`` against the same network after
  ``parametrize(model, "mup", base=width-64 model)`` with ``Adam(p.param_groups(...))`` (a forward
  hook on the readout's output, three parameter groups);
* lmech's tiny transformer (width 256, 2 blocks, 4 heads, 8 sequences of 64 byte tokens, AdamW): built
  in SP and stepped with ``AdamW(model.parameters())`` against the same architecture in CompleteP
  relative to width 64 and depth 1 (readout hook, branch multipliers, three parameter groups).

A null row (the plain MLP against a second, identical plain MLP) calibrates the method: its ratio must be
1 within the interval, or the interval is not to be trusted.

Design, so that a 2% effect is resolved on a machine shared with other jobs:

* single steps are timed in ABBA rounds (without, with, with, without; the next round BAAB), so that a load
  that drifts over more than a few steps (tens of ms) cancels in the round's ratio (B1 + B2) / (A1 + A2):
  windows of many steps (tried first: 30, then 120 steps per window) left a null ratio scattering by ±10%
  between windows on today's loaded machine, because even a process's CPU time moves with the load (shared
  caches and memory bandwidth);
* both the process's CPU time (``time.process_time``, one torch thread: not inflated by waiting for a core)
  and the wall time are recorded; the reported ratio is the median over hundreds of rounds, with a 95%
  bootstrap interval of that median (2,000 resamples of the rounds).

``python benchmarks/param_overhead.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

from _record import machine, record
from lmech.models import TinyTransformer
from lmech.models.init import standard_init_
from lmech.param import parametrize

OVERHEAD_NOTE = (
    "What the parametrized step adds: the readout's forward multiplier (a forward hook: since this "
    "version applied to the readout's 10 outputs, `ScaleLinearOutput`, instead of its 1024 input features), "
    "the transformer's branch multipliers (folded into the residual addition, `torch.add(x, branch, alpha=m)`, "
    "which the SP model runs too with m = 1) and more parameter groups (torch's Adam loops over its groups in "
    "Python). The parameters, their count and the arithmetic of the step are otherwise the same. Measured "
    "apart on the MLP the same way (200 rounds each, one run, load 9-11): the readout hook alone 1.007 "
    "[0.996, 1.018] (on the input, as before: 1.011 [0.998, 1.021]), the three groups alone 1.011 [1.000, "
    "1.016]: about 0.4 ms of Python per step in all, 2% of this 20 ms step and 0.4% of the transformer's. "
    "It is a fixed cost per step (a hook call and two more optimizer groups), not a cost per coordinate.")


def mlp(width: int, device: str = "cpu") -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, width, device=device), nn.ReLU(), nn.Linear(width, width, device=device),
                         nn.ReLU(), nn.Linear(width, 10, device=device))


def _mlp_batch():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 16, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    return lambda m: nn.functional.cross_entropy(m(x), y)  # noqa: E731


def mlp_pair():
    plain = standard_init_(mlp(1024), torch.Generator().manual_seed(0))
    twin = mlp(1024)
    twin.load_state_dict(plain.state_dict())
    p = parametrize(twin, "mup", base=mlp(64, "meta"), delta=mlp(128, "meta"))
    loss = _mlp_batch()
    return ((plain, torch.optim.Adam(plain.parameters(), lr=1e-4), loss),
            (twin, torch.optim.Adam(p.param_groups(1e-4, "adam"), lr=1e-4), loss), len(p.param_groups(1e-4)))


def null_pair():
    """The plain MLP against an identical plain MLP: the method's ratio when there is no difference."""
    plain = standard_init_(mlp(1024), torch.Generator().manual_seed(0))
    twin = mlp(1024)
    twin.load_state_dict(plain.state_dict())
    loss = _mlp_batch()
    return ((plain, torch.optim.Adam(plain.parameters(), lr=1e-4), loss),
            (twin, torch.optim.Adam(twin.parameters(), lr=1e-4), loss), 1)


def transformer_pair():
    cfg = dict(vocab_size=256, block_size=64, width=256, depth=2, n_head=4)
    plain = TinyTransformer(**cfg, parametrization="sp", seed=0)
    twin = TinyTransformer(**cfg, parametrization="completep", base_width=64, base_depth=1, seed=0)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 256, (8, 65), generator=gen)
    loss = lambda m: m.loss(idx[:, :-1], idx[:, 1:])  # noqa: E731
    groups = twin.param_groups(1e-4, "adamw", weight_decay=0.1)
    return ((plain, torch.optim.AdamW(plain.parameters(), lr=1e-4, weight_decay=0.1), loss),
            (twin, torch.optim.AdamW(groups, lr=1e-4), loss), len(groups))


def window(model, opt, loss, steps: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``steps`` training steps."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss(model).backward()
        opt.step()
    return time.process_time() - cpu, time.perf_counter() - wall


def median_interval(ratios: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The median of ``ratios`` and the 95% percentile-bootstrap interval of the median."""
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(ratios, size=(resamples, len(ratios)), replace=True), axis=1)
    return float(np.median(ratios)), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def measure(pair, rounds: int, steps: int = 1) -> dict:
    """``rounds`` ABBA/BAAB rounds of ``steps``-step windows; per round the ratio (with)/(without), CPU and wall."""
    (plain, opt_plain, loss), (twin, opt_twin, loss_twin), groups = pair
    a = lambda: window(plain, opt_plain, loss, steps)  # noqa: E731
    b = lambda: window(twin, opt_twin, loss_twin, steps)  # noqa: E731
    window(plain, opt_plain, loss, 5)
    window(twin, opt_twin, loss_twin, 5)
    ta, tb = np.zeros((rounds, 2)), np.zeros((rounds, 2))  # summed (CPU, wall) of the round's two windows
    for k in range(rounds):
        order = (a, b, b, a) if k % 2 == 0 else (b, a, a, b)
        for f in order:
            t = np.asarray(f())
            if f is a:
                ta[k] += t
            else:
                tb[k] += t
    cpu, wall = tb[:, 0] / ta[:, 0], tb[:, 1] / ta[:, 1]
    return {"cpu": median_interval(cpu), "wall": median_interval(wall),
            "plain": float(np.median(ta[:, 0])) / (2 * steps), "param": float(np.median(tb[:, 0])) / (2 * steps),
            "groups": groups, "spread": tuple(np.quantile(cpu, [0.1, 0.9]))}


def main(quick: bool) -> None:
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    workloads = (("MLP 16-1024-1024-10, batch 128, Adam (μP)", mlp_pair, 60 if quick else 400),
                 ("null: the same MLP against a copy of itself", null_pair, 60 if quick else 400),
                 ("tiny transformer w256 L2, 8x64 tokens, AdamW (CompleteP)", transformer_pair, 20 if quick else 120))
    lines = [
        "Training step with `parametrize` (μP / CompleteP) over the same step without it. Per workload, rounds of "
        "four single steps in ABBA order (without, with, with, without; the next round BAAB), each step timed; "
        "per round the ratio (with)/(without) of the summed steps; the median over rounds with its 95% "
        f"bootstrap interval. Machine: {machine()}; load average {load:.1f} at the start. The 2 cores are shared "
        "with other jobs today: wall times are inflated and even a process's CPU time moves with the load (cache "
        "and memory bandwidth are shared); interleaving single steps puts both sides of every ratio under the "
        "same load, which the null row checks. Goal: ratio <= 1.02.",
        "",
        "| workload | rounds | step without (CPU ms) | step with (CPU ms) | groups | **CPU-time ratio** [95% CI] "
        "| 10-90% of rounds | wall ratio [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results = {}
    for label, make, rounds in workloads:
        r = measure(make(), rounds)
        results[label] = r
        (c, clo, chi), (w, wlo, whi) = r["cpu"], r["wall"]
        lines.append(f"| {label} | {rounds} | {1e3 * r['plain']:.2f} | {1e3 * r['param']:.2f} | {r['groups']} | "
                     f"**{c:.4f}** [{clo:.4f}, {chi:.4f}] | {r['spread'][0]:.3f}-{r['spread'][1]:.3f} | "
                     f"{w:.4f} [{wlo:.4f}, {whi:.4f}] |")
        print(lines[-1], flush=True)
    after = os.getloadavg()[0]
    upper = max(r["cpu"][2] for label, r in results.items() if not label.startswith("null"))
    lines += ["", f"Load average {after:.1f} at the end. Largest upper end of the parametrized rows' CPU-time "
              f"intervals: {upper:.4f} ({'within' if upper <= 1.02 else 'above'} the goal 1.02). "
              + OVERHEAD_NOTE]
    record("param_overhead", "## parametrize overhead\n\n" + "\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
