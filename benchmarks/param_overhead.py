"""Cost of a training step with ``lmech.param.parametrize`` against the same step without it (goal: ratio <= 1.02).

Two workloads, float32, one torch thread:

* an MLP 16-1024-1024-10 (ReLU, cross-entropy, batch 128, Adam): plain ``nn.Sequential`` with
  ``torch.optim.Adam(model.parameters())`` against the same network after
  ``parametrize(model, "mup", base=width-64 model)`` with ``Adam(p.param_groups(...))`` (a forward
  pre-hook on the readout, four parameter groups);
* lmech's tiny transformer (width 256, 2 blocks, 4 heads, 8 sequences of 64 byte tokens, AdamW): built
  in SP and stepped with ``AdamW(model.parameters())`` against the same architecture in CompleteP
  relative to width 64 and depth 1 (readout hook, branch multipliers, eight parameter groups).

Each repeat times ``steps`` steps of both (process CPU time), alternating which goes first; the ratio is
taken within each repeat (both halves see the same load) and the median over repeats is reported.

``python benchmarks/param_overhead.py [--quick]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from _record import machine, record
from lmech.models import TinyTransformer
from lmech.models.init import standard_init_
from lmech.param import parametrize


def mlp(width: int, device: str = "cpu") -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, width, device=device), nn.ReLU(), nn.Linear(width, width, device=device),
                         nn.ReLU(), nn.Linear(width, 10, device=device))


def mlp_pair():
    gen = torch.Generator().manual_seed(0)
    plain = standard_init_(mlp(1024), gen)
    twin = mlp(1024)
    twin.load_state_dict(plain.state_dict())
    p = parametrize(twin, "mup", base=mlp(64, "meta"), delta=mlp(128, "meta"))
    x, y = torch.randn(128, 16, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    loss = lambda m: nn.functional.cross_entropy(m(x), y)  # noqa: E731
    return ((plain, torch.optim.Adam(plain.parameters(), lr=1e-4), loss),
            (twin, torch.optim.Adam(p.param_groups(1e-4, "adam"), lr=1e-4), loss), len(p.param_groups(1e-4)))


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


def steps_time(model, opt, loss, steps: int) -> float:
    """CPU seconds of ``steps`` steps (one torch thread: the process's CPU time is the step's cost, and it is
    not inflated by waiting for a core on a loaded machine, as wall time is)."""
    start = time.process_time()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss(model).backward()
        opt.step()
    return time.process_time() - start


def measure(pair, steps: int, repeats: int) -> dict[str, float]:
    (plain, opt_plain, loss), (twin, opt_twin, loss_twin), groups = pair
    steps_time(plain, opt_plain, loss, 3)
    steps_time(twin, opt_twin, loss_twin, 3)
    ratios, t_plain, t_twin = [], [], []
    for r in range(repeats):
        if r % 2:
            b = steps_time(twin, opt_twin, loss_twin, steps)
            a = steps_time(plain, opt_plain, loss, steps)
        else:
            a = steps_time(plain, opt_plain, loss, steps)
            b = steps_time(twin, opt_twin, loss_twin, steps)
        ratios.append(b / a)
        t_plain.append(a / steps)
        t_twin.append(b / steps)
    return {"ratio": statistics.median(ratios), "plain": statistics.median(t_plain),
            "param": statistics.median(t_twin), "groups": groups, "spread": (min(ratios), max(ratios))}


def main(quick: bool) -> None:
    torch.set_num_threads(1)
    steps, repeats = (10, 5) if quick else (30, 11)
    import os

    load = os.getloadavg()[0]
    lines = [
        f"Training step with `parametrize` (μP / CompleteP) over the same step without it: median over {repeats} "
        f"alternating repeats of {steps} steps. Machine: {machine()}; load average {load:.1f} at the start. "
        "Goal: ratio <= 1.02.",
        "",
        "| workload | step without (CPU ms) | step with (CPU ms) | parameter groups | **ratio** | ratio range over repeats |",
        "|---|---|---|---|---|---|",
    ]
    for label, pair in (("MLP 16-1024-1024-10, batch 128, Adam (μP)", mlp_pair()),
                        ("tiny transformer w256 L2, 8x64 tokens, AdamW (CompleteP)", transformer_pair())):
        r = measure(pair, steps, repeats)
        lines.append(f"| {label} | {1e3 * r['plain']:.2f} | {1e3 * r['param']:.2f} | {r['groups']} | "
                     f"**{r['ratio']:.3f}** | {r['spread'][0]:.3f}-{r['spread'][1]:.3f} |")
        print(lines[-1], flush=True)
    lines += ["", "The parametrized step differs by a forward pre-hook multiplying the readout's input (one "
              "elementwise product of the batch's features), the branch multipliers (the transformer's own "
              "forward) and more parameter groups in the optimizer; the parameters, their count and the "
              "arithmetic of the step are the same. On a loaded machine the repeats scatter by several percent "
              "(the range column), more than the goal's 2%: a median inside that scatter shows no overhead at the "
              "resolution of that run, not a 2% bound (rerun on an idle machine for that)."]
    record("param_overhead", "## parametrize overhead\n\n" + "\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
