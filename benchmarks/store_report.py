"""Run store at scale: ``lmech report --all``, ``runs list`` and ``runs verify`` over 2,000 runs.

Goal (issue 12): ``report --all`` on 2,000 runs in under 3 s. The report looks each run up by id; the
store reads it directly at ``<experiment>/<run_id>`` (a stat per experiment folder). The peer, timed in
the same run, is the lookup the store had before, which scanned every run folder per id (quadratic:
41 s at 2,000 runs when the issue was filed).

Each synthetic run has what a law-book run has: config, status, summary and verdict JSON, a measured and
a predicted series (Parquet, 200 rows), a 40 kB figure and the checksum manifest.

Run: ``python benchmarks/store_report.py [--runs 2000]``; writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import machine, record  # noqa: E402
from lmech.cli import main as lmech  # noqa: E402
from lmech.store import RunStore, load_run  # noqa: E402


def build(root: Path, n: int) -> RunStore:
    """``n`` complete runs of one synthetic law (seeds 0..n-1), written through the store's own API."""
    store = RunStore(root)
    rng = np.random.default_rng(0)
    figure = rng.integers(0, 255, 40_000, dtype=np.uint8).tobytes()
    steps = np.arange(200)
    for seed in range(n):
        handle = store.begin("bench-law", {"seed": seed, "width": 64, "lr": 0.01}, {"label": f"seed={seed}"})
        handle.write_series("loss", pd.DataFrame({"step": steps, "loss": np.exp(-steps / (50 + seed))}))
        handle.write_series("loss", pd.DataFrame({"step": steps, "loss": np.exp(-steps / 50)}), "prediction")
        handle.write_json("summary.json", {"final_loss": float(np.exp(-4)), "holds": True, "verdict": "holds"})
        handle.write_json("verdict.json", [{"law": "bench-law", "key": "err", "quantity": "q", "predicted": 1.0,
                                            "measured": 1.0, "agreement": 0.01, "tolerance": 0.05, "holds": True,
                                            "status": "holds"}])
        (handle.figures_dir).mkdir(parents=True, exist_ok=True)
        (handle.figures_dir / "loss.png").write_bytes(figure)
        handle.finish("done")
    return store


def scanning_get(store: RunStore, rid: str):
    """The lookup the store had before issue 12: scan every run folder for the id, then read it."""
    matches = [p for p in store._run_dirs() if p.name.startswith(rid)]
    return load_run(matches[0]) if matches else None


def lookups(store: RunStore) -> list:
    """What ``report --all`` asks of the store: the list of runs, then each run by its id."""
    return [store.get(r.run_id) for r in store.runs()]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu(fn) -> float:
    """CPU seconds of this process (what the wall time would be on an idle core)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lab"
        t_build = timed(lambda: build(root, args.runs))
        store = RunStore(root)
        ids = [r.run_id for r in store.runs()]
        report = ["report", "--all", "--store", str(root), "--out", str(Path(tmp) / "r.html")]
        lmech(report)  # imports (the law book, plugins) once, as any command does at start-up
        t_report, c_report = timed(lambda: lmech(report)), cpu(lambda: lmech(report))
        c_store = cpu(lambda: lookups(RunStore(root)))
        t_list = timed(lambda: RunStore(root).table())
        t_verify = timed(lambda: RunStore(root).verify())
        t_direct = timed(lambda: [fresh.get(rid) for fresh in [RunStore(root)] for rid in ids])
        sample = ids[:: max(len(ids) // 200, 1)]
        t_scan_sample = timed(lambda: [scanning_get(store, rid) for rid in sample])
        t_scan = t_scan_sample * len(ids) / len(sample)
    load = os.getloadavg()[0]
    lines = [
        "## Run store at scale (`benchmarks/store_report.py`)",
        "",
        f"{args.runs:,} runs (each: 4 JSON files, 2 Parquet series of 200 rows, a 40 kB figure, the manifest); "
        f"{machine()}; load average {load:.1f} while measuring.",
        "",
        "| operation | seconds |",
        "|---|---|",
        f"| `lmech report --all` (goal: < 3 s), wall | {t_report:.2f} |",
        f"| `lmech report --all`, CPU seconds (the wall time on an idle core) | {c_report:.2f} |",
        f"| its store part (list, then each run by id), CPU seconds | {c_store:.2f} |",
        f"| runs table (`runs list`; sizes and JSON checksums checked) | {t_list:.2f} |",
        f"| `runs verify` (every file's SHA-256) | {t_verify:.2f} |",
        f"| {args.runs:,} lookups by id, direct (`RunStore.get`) | {t_direct:.2f} |",
        f"| {args.runs:,} lookups by id, scanning the store per id (the old `get`; peer, extrapolated from "
        f"{len(sample)}) | {t_scan:.1f} |",
        f"| writing the {args.runs:,} runs (manifest, fsync) | {t_build:.1f} |",
        "",
        f"Direct lookup is {t_scan / max(t_direct, 1e-9):.0f}× faster than the per-id scan at this size "
        "(the scan grows with the square of the number of runs).",
    ]
    record("store_report", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
