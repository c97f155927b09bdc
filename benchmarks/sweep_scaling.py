"""Sweep scaling: parallel efficiency of the local executor, and Ray's overhead per run against local.

Goals (issue 3):

* parallel efficiency of the local executor on 16 quick runs, wall(1 worker) / (2 × wall(2 workers)),
  ≥ 0.85 on 2 cores;
* Ray's overhead per run relative to local, (wall(ray) − wall(local)) / wall(local) at the same number
  of workers, ≤ 20% for runs of ≥ 2 s.

The runs are the law book's quick deep-linear config (with its figures) at different seeds, each
sweep into a fresh store. Steady state: the local forkserver and the Ray workers are warmed up by a
small sweep first; the one-off start costs (forkserver, ``ray.init``) are reported separately.

Run: ``python benchmarks/sweep_scaling.py [--runs 16] [--ray-runs 8]``; writes its section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import machine, record  # noqa: E402
from lmech.store import RunStore  # noqa: E402
from lmech.sweeps import LocalExecutor, RayExecutor, SweepSpec, plan, run_sweep  # noqa: E402


def _sweep(n: int, first_seed: int):
    return plan(SweepSpec("deep-linear", quick=True, seed=first_seed, seeds=n))


def _timed(sweep, executor) -> tuple[float, float]:
    """(wall seconds, mean run duration in seconds) of computing ``sweep`` into a fresh store."""
    with tempfile.TemporaryDirectory() as root:
        store = RunStore(root)
        start = time.perf_counter()
        report = run_sweep(sweep, store, executor)
        wall = time.perf_counter() - start
        assert report.counts()["done"] == len(sweep), report.errors
        durations = [r.status_info["duration_s"] for r in store.runs()]
    return wall, sum(durations) / len(durations)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=16, help="runs of the efficiency measurement")
    ap.add_argument("--ray-runs", type=int, default=8, help="runs of the Ray overhead measurement (0: skip)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    _timed(_sweep(2, 1000), LocalExecutor(workers=2))  # starts the forkserver (imports lmech once)
    forkserver_s = time.perf_counter() - t0
    sweep = _sweep(args.runs, 0)
    wall1, run1 = _timed(sweep, LocalExecutor(workers=1))
    wall2, run2 = _timed(sweep, LocalExecutor(workers=2))
    efficiency = wall1 / (2 * wall2)
    print(f"local: 1 worker {wall1:.1f} s, 2 workers {wall2:.1f} s, efficiency {efficiency:.3f}", flush=True)

    rows = [
        "| measurement | value | goal |",
        "|---|---|---|",
        f"| local, 1 worker: wall for {args.runs} quick runs | {wall1:.1f} s (mean run {run1:.2f} s) | |",
        f"| local, 2 workers: wall for {args.runs} quick runs | {wall2:.1f} s (mean run {run2:.2f} s) | |",
        f"| parallel efficiency wall(1) / (2 × wall(2)) | **{efficiency:.3f}** | ≥ 0.85 |",
        f"| forkserver start (one-off, imports lmech once) | {forkserver_s:.1f} s | |",
    ]
    if args.ray_runs:
        try:
            import ray
        except ImportError:
            rows.append("| Ray | not installed | |")
        else:
            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            init_s = time.perf_counter() - t0
            try:
                _timed(_sweep(2, 2000), RayExecutor(workers=2))  # warm the two Ray workers (import lmech)
                ray_sweep = _sweep(args.ray_runs, 100)
                wall_local, run_local = _timed(ray_sweep, LocalExecutor(workers=2))
                wall_ray, run_ray = _timed(ray_sweep, RayExecutor(workers=2))
            finally:
                ray.shutdown()
            overhead = (wall_ray - wall_local) / wall_local
            per_run = (wall_ray - wall_local) / args.ray_runs
            print(f"ray: local {wall_local:.1f} s, ray {wall_ray:.1f} s, overhead {overhead:+.1%}", flush=True)
            rows += [
                f"| local, 2 workers: wall for {args.ray_runs} runs | {wall_local:.1f} s (mean run {run_local:.2f} s) | |",
                f"| Ray (local instance, 2 CPUs): wall for {args.ray_runs} runs | {wall_ray:.1f} s (mean run "
                f"{run_ray:.2f} s) | |",
                f"| Ray overhead (wall(ray) − wall(local)) / wall(local) | **{overhead:+.1%}** ({per_run:+.2f} s per "
                "run) | ≤ 20% for runs ≥ 2 s |",
                f"| `ray.init` of a local instance (one-off) | {init_s:.1f} s | |",
            ]
    ok = efficiency >= 0.85
    text = "\n".join([
        "## Sweep scaling (`benchmarks/sweep_scaling.py`)",
        "",
        f"Machine: {machine()}.",
        "",
        "Local executor: the same quick deep-linear runs (figures included) with 1 and 2 worker processes, "
        "one torch thread each, after the forkserver is up. Ray: the same runs on a local Ray instance "
        "with warm workers, against the local executor at the same worker count.",
        "",
        *rows,
        "",
        f"Efficiency goal {'met' if ok else 'NOT met'} in this measurement"
        + ("" if ok else " (a busy machine lowers it: rerun on an idle one)") + ".",
    ])
    record("sweep_scaling", text)
    print(text)


if __name__ == "__main__":
    main()
