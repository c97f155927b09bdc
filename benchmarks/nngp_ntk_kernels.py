"""Benchmark: analytic NNGP + NTK of a deep ReLU MLP, and the empirical NTK of a finite one.

1. ``lmech.theory.kernels.mlp_kernels``: depth-4 ReLU MLP (NTK parametrization, σw = √2, σb = 0.1) on
   2,000 x 2,000 inputs of dimension 32, float64. Peer: neural-tangents' ``stax.serial(Dense, Relu, ...)``
   ``kernel_fn(x, None, ('nngp', 'ntk'))`` where it can be imported (it needs JAX; we try it from a
   separate virtual environment given by the ``NT_PYTHON`` environment variable, never from lmech's).
2. The empirical NTK of a width-512, depth-3 ReLU network built by ``lmech.models.mlp`` on 256 inputs
   (float32, one output): ``lmech.instruments.ntk.empirical_ntk`` against the torch.func tutorial's
   Jacobian contraction (``vmap(jacrev)`` then ``einsum``), plus its distance to the analytic NTK.

Each timing is the best of a few repeats.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch.func import functional_call, jacrev, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import machine, record  # noqa: E402
from _timing import best_time  # noqa: E402
from lmech.models.mlp import mlp  # noqa: E402
from lmech.theory.kernels import mlp_kernels  # noqa: E402

N_ANALYTIC, D, DEPTH, SW, SB = 2000, 32, 4, 2**0.5, 0.1
N_EMPIRICAL, WIDTH, DEPTH_EMPIRICAL = 256, 512, 3

NT_SCRIPT = """
import json, sys, time
import numpy as np
from neural_tangents import stax
import jax
jax.config.update('jax_enable_x64', True)
n, d, depth, sw, sb = {n}, {d}, {depth}, {sw}, {sb}
layers = []
for _ in range(depth):
    layers += [stax.Dense(512, W_std=sw, b_std=sb), stax.Relu()]
_, _, kernel_fn = stax.serial(*layers, stax.Dense(1, W_std=sw, b_std=sb))
kernel_fn = jax.jit(kernel_fn, static_argnames='get')
x = np.load(sys.argv[2])
best = float('inf')
for _ in range(3):
    t0 = time.perf_counter()
    k = kernel_fn(x, None, ('nngp', 'ntk'))
    k.ntk.block_until_ready()
    best = min(best, time.perf_counter() - t0)
np.save(sys.argv[1], np.stack([np.asarray(k.nngp), np.asarray(k.ntk)]))
print(json.dumps(dict(seconds=best, jax=jax.__version__)))
"""


def neural_tangents_peer(x: torch.Tensor) -> tuple[str, float | None, torch.Tensor | None]:
    """Run neural-tangents in its own interpreter; returns (status, seconds, kernels) or a reason."""
    python = os.environ.get("NT_PYTHON")
    if not python:
        return "not run: set NT_PYTHON to a Python with neural-tangents installed", None, None
    import numpy as np

    out, inputs = Path("/tmp/lmech_nt_kernels.npy"), Path("/tmp/lmech_nt_inputs.npy")
    np.save(inputs, x.numpy())
    script = NT_SCRIPT.format(n=x.shape[0], d=x.shape[1], depth=DEPTH, sw=SW, sb=SB)
    proc = subprocess.run([python, "-c", script, str(out), str(inputs)], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"could not run: {last[:200]}", None, None
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return f"neural-tangents with JAX {info['jax']}", info["seconds"], torch.as_tensor(np.load(out))


def tutorial_entk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f_single(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = [j.flatten(2) for j in vmap(jacrev(f_single), (None, 0))(params, x).values()]
    return torch.stack([torch.einsum("Naf,Mbf->NMab", a, a) for a in jac]).sum(0)[..., 0, 0]


def main() -> None:
    load = os.getloadavg()[0]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_ANALYTIC, D, generator=gen, dtype=torch.float64)
    t_lmech, (nngp, ntk) = best_time(lambda: mlp_kernels(x, None, DEPTH, "relu", SW, SB), 3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the law-book setting: one torch thread per sweep worker
    t_single, _ = best_time(lambda: mlp_kernels(x, None, DEPTH, "relu", SW, SB), 3)
    torch.set_num_threads(threads)
    status, t_nt, nt_kernels = neural_tangents_peer(x)
    agreement = ""
    if nt_kernels is not None:
        diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip((nngp, ntk), nt_kernels))
        agreement = f" Max relative difference to neural-tangents: {diff:.1e}."

    xe = torch.randn(N_EMPIRICAL, D, generator=gen)
    model = mlp(D, WIDTH, DEPTH_EMPIRICAL, "relu", SW, SB, seed=0)
    try:
        from lmech.instruments.ntk import empirical_ntk

        t_entk, k_entk = best_time(lambda: empirical_ntk(model, xe, method="jacobian"), 3)
        entk_name = "`lmech.instruments.ntk.empirical_ntk(method=\"jacobian\")`"
    except ImportError:
        t_entk, k_entk = best_time(lambda: tutorial_entk(model, xe), 3)
        entk_name = "torch.func Jacobian contraction (instruments.ntk not available)"
    t_tutorial, k_tutorial = best_time(lambda: tutorial_entk(model, xe), 3)
    _, ntk_e = mlp_kernels(xe.double(), None, DEPTH_EMPIRICAL, "relu", SW, SB)
    to_analytic = float(torch.linalg.norm(k_entk.double() - ntk_e) / torch.linalg.norm(ntk_e))
    consistency = float((k_entk.double() - k_tutorial.double()).abs().max() / k_tutorial.double().abs().max())

    nt_row = (f"| neural-tangents `kernel_fn` (JAX, x64, jit; same inputs) | {t_nt:.2f} s | "
              f"{t_nt / t_lmech:.2f}x |" if t_nt is not None else
              f"| neural-tangents | — | {status} |")
    markdown = f"""## NNGP/NTK kernels (`benchmarks/nngp_ntk_kernels.py`)

Machine: {machine()}; 1-minute load average at the start {load:.1f} (other processes share the cores:
ratios are more reliable than absolute times).

**Analytic kernels.** NNGP + NTK of a depth-{DEPTH} ReLU MLP (NTK parametrization, σw = √2, σb = 0.1)
on {N_ANALYTIC:,} x {N_ANALYTIC:,} inputs of dimension {D}, float64, best of 3.

| implementation | time | peer / lmech |
|---|---|---|
| `lmech.theory.kernels.mlp_kernels` ({threads} torch threads) | {t_lmech:.2f} s | 1 |
| `lmech.theory.kernels.mlp_kernels` (1 torch thread) | {t_single:.2f} s | {t_single / t_lmech:.2f}x |
{nt_row}

neural-tangents status: {status}.{agreement} neural-tangents 0.6.5 does not import with current JAX
(0.10: `cannot import name 'Jaxpr' from 'jax.core'`); it runs from a throwaway virtual environment with
`jax==0.4.23 jaxlib==0.4.23 "numpy<2" "scipy<1.13"` and `tf2jax==0.3.5 --no-deps`, given to this script
as `NT_PYTHON=/path/to/python` (never lmech's own environment). The difference is in the arccos of
correlations that round to 1: lmech sets ρ = 1 exactly for a point with itself.

**Empirical NTK.** Width-{WIDTH}, depth-{DEPTH_EMPIRICAL} ReLU MLP built by `lmech.models.mlp` (float32, one
output) on {N_EMPIRICAL} inputs, best of 3.

| implementation | time | peer / lmech |
|---|---|---|
| {entk_name} | {t_entk:.3f} s | 1 |
| torch.func tutorial Jacobian contraction (`vmap(jacrev)` + `einsum`) | {t_tutorial:.3f} s | {t_tutorial / t_entk:.2f}x |

The two eNTKs agree to {consistency:.1e} (max relative); the width-{WIDTH} eNTK is
{to_analytic:.1%} (relative Frobenius) from the analytic infinite-width NTK of the same description.
"""
    record("nngp_ntk_kernels", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
