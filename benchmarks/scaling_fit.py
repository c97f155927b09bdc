"""Benchmark: the Chinchilla fit of 240 runs from 4,500 starts, and 1,000 bootstraps, against SciPy looped.

The data: Hoffmann et al. 2022 Fig. 4 as extracted by Besiroglu et al. 2024 (``../shared/data/``,
five highest losses dropped: 240 runs); where that file is absent, 240 synthetic runs of the published
law with 2% noise (the section says which).

Peer (the replication's procedure): ``scipy.optimize.minimize(method="L-BFGS-B")`` looped over the 4,500
starts of :func:`lmech.laws.scaling.chinchilla_grid`, keeping the lowest objective, (a) with SciPy's
finite-difference gradient as Besiroglu et al. call it and (b) with the analytic gradient
(``huber_objective`` on one row), which isolates what batching and pruning buy. lmech:
``fit_scaling`` (all starts as one batched L-BFGS with pruning, then a Newton polish of the best five),
and the same without pruning; then ``fit_scaling(..., bootstrap=1000)``. Same optimum: the relative gap
of the best objectives. Everything runs in this one process, one after the other; the load of the
machine (``uptime``) is recorded with the numbers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import machine, record  # noqa: E402
from _timing import best_time, median_time  # noqa: E402
from lmech.laws import scaling  # noqa: E402
from lmech.laws.lbfgs import lbfgs_batch  # noqa: E402


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    for folder in Path(__file__).resolve().parents:
        path = folder / "shared" / "data" / "chinchilla_svg_extracted.csv"
        if path.is_file():
            import pandas as pd

            frame = pd.read_csv(path)
            N = frame["Model Size"].to_numpy(float)
            D = frame["Training FLOP"].to_numpy(float) / (6 * N)
            L = frame["loss"].to_numpy(float)
            keep = L < np.sort(L)[-5]
            return N[keep], D[keep], L[keep], "Hoffmann et al. Fig. 4 (Epoch AI's extraction), 240 runs"
    law = scaling.ChinchillaLaw(**scaling.EPOCH_ESTIMATE)
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), 240))
    D = np.exp(rng.uniform(np.log(2e9), np.log(5e11), 240))
    return N, D, law.loss(N, D) * np.exp(rng.normal(0, 0.02, 240)), "synthetic (shared data absent), 240 runs"


def scipy_loop(lnN, lnD, lnL, grid, analytic: bool) -> tuple[float, np.ndarray, int]:
    """The peer: SciPy's L-BFGS-B from every start; returns the best objective, its θ, and evaluations."""
    from scipy.optimize import minimize

    def value(theta):  # Σ Huber(log L̂ − log L), written out for SciPy's finite differences
        a, b, e, al, be = theta
        r = np.logaddexp(np.logaddexp(a - al * lnN, b - be * lnD), e) - lnL
        ar = np.abs(r)
        return float(np.sum(np.where(ar <= 1e-3, 0.5 * r * r, 1e-3 * (ar - 0.5e-3))))

    def value_grad(theta):
        f, g = scaling.huber_objective(theta[None], lnN, lnD, lnL)
        return float(f[0]), g[0]

    best_f, best_x, evals = np.inf, None, 0
    for x0 in grid:
        if analytic:
            res = minimize(value_grad, x0, jac=True, method="L-BFGS-B")
        else:
            res = minimize(value, x0, method="L-BFGS-B")
        evals += res.nfev
        if np.isfinite(res.fun) and res.fun < best_f:
            best_f, best_x = float(res.fun), res.x
    return best_f, best_x, evals


def main() -> None:
    N, D, L, source = data()
    lnN, lnD, lnL = np.log(N), np.log(D), np.log(L)
    grid = scaling.chinchilla_grid()
    load_before = os.getloadavg()

    # where the time goes: one objective call for all starts vs one start
    t_batch_call = median_time(lambda: scaling.huber_objective(grid, lnN, lnD, lnL), 5)
    t_row_call = median_time(lambda: scaling.huber_objective(grid[:1], lnN, lnD, lnL), 200)

    t_fit, fit = best_time(lambda: scaling.fit_scaling(N, D, L), 3)
    problem = scaling._Problem(N, D, L, scaling.HUBER_DELTA, 1.0)
    problem.group_of = np.zeros(len(grid), dtype=np.int64)
    t_pruned, pruned = best_time(lambda: lbfgs_batch(problem.objective, grid, ftol=1e-10, **scaling.PRUNING), 1)
    t_full, full = best_time(lambda: lbfgs_batch(problem.objective, grid, ftol=1e-10), 1)
    t_unpruned_fit, unpruned_fit = best_time(lambda: scaling.fit_scaling(N, D, L, pruning={}), 1)

    t_ref_a, (f_ref_a, x_ref_a, ev_ref_a) = best_time(lambda: scipy_loop(lnN, lnD, lnL, grid, analytic=True), 1)
    t_ref_fd, (f_ref_fd, x_ref_fd, ev_ref_fd) = best_time(lambda: scipy_loop(lnN, lnD, lnL, grid, analytic=False), 1)

    t_boot, boot = best_time(lambda: scaling.fit_scaling(N, D, L, bootstrap=1000, seed=0), 1)
    load_after = os.getloadavg()

    f_ours = fit.objective
    f_ref = min(f_ref_a, f_ref_fd)
    gap = (f_ours - f_ref) / f_ref
    p = fit.params
    ci = boot.intervals(0.95)
    rows = [
        ("SciPy L-BFGS-B looped, finite-difference gradient (the replication's call)", t_ref_fd, ev_ref_fd, f_ref_fd),
        ("SciPy L-BFGS-B looped, analytic gradient", t_ref_a, ev_ref_a, f_ref_a),
        ("lmech batched L-BFGS, no pruning, + Newton polish", t_unpruned_fit, None, unpruned_fit.objective),
        ("**lmech `fit_scaling` (batched, pruned, + Newton polish)**", t_fit, pruned.evaluations, f_ours),
    ]
    table = "\n".join(
        f"| {name} | {t:.2f} | {'' if ev is None else f'{ev:,}'} | {f:.13g} | {t_ref_fd / t:.1f}x | {t_ref_a / t:.1f}x |"
        for name, t, ev, f in rows)
    md = f"""## Chinchilla scaling-law fit: 4,500 starts and 1,000 bootstraps vs SciPy looped (`scaling_fit`)

Machine: {machine()}. Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after
(2 cores; other sessions were running: absolute times are upper bounds, the ratios were measured in one
process, one method after the other).

Data: {source}. Objective: Σ Huber_δ=1e-3(log L̂ − log L) (Besiroglu et al. 2024). Starts: the 4,500 of
Hoffmann et al. App. D.2. Times in s (lmech: best of 3; the rest: one run).

| method | time (s) | objective evaluations (single start) | best objective | speed-up vs FD loop | vs analytic loop |
|---|---|---|---|---|---|
{table}

**Same optimum**: lmech's objective {f_ours:.13g} vs the best of the SciPy loops {f_ref:.13g}: relative gap
{gap:+.1e} (goal: within 1e-6; negative = lmech lower). Parameters: E = {p['E']:.4f}, A = {p['A']:.2f},
B = {p['B']:.1f}, α = {p['alpha']:.4f}, β = {p['beta']:.4f} (SciPy analytic loop: E = {np.exp(x_ref_a[2]):.4f},
A = {np.exp(x_ref_a[0]):.2f}, B = {np.exp(x_ref_a[1]):.1f}, α = {x_ref_a[3]:.4f}, β = {x_ref_a[4]:.4f}).

**Point fit: {t_fit:.2f} s** (goal ≤ 10 s). **1,000 bootstraps with the point fit: {t_boot:.1f} s** (goal ≤ 120 s);
95% intervals: E [{ci['E'][0]:.3f}, {ci['E'][1]:.3f}], A [{ci['A'][0]:.0f}, {ci['A'][1]:.0f}],
B [{ci['B'][0]:.0f}, {ci['B'][1]:.0f}], α [{ci['alpha'][0]:.3f}, {ci['alpha'][1]:.3f}],
β [{ci['beta'][0]:.3f}, {ci['beta'][1]:.3f}].

Where the time goes:
- **Vectorized starts.** One call of the objective and its analytic gradient for all 4,500 starts
  (4,500 × 240 log-sum-exps) takes {t_batch_call * 1e3:.0f} ms, {t_batch_call / len(grid) * 1e6:.1f} µs per
  start; one call for a single start takes {t_row_call * 1e6:.0f} µs, almost all of it call overhead, and the
  SciPy loop adds its own per-iteration overhead on top. Batched L-BFGS without pruning: {t_full:.2f} s,
  {full.evaluations:,} single-start evaluations ({full.evaluations / len(grid):.0f} per start; most
  starts run to their own convergence, {int(np.sum(full.iterations >= 2000))} hit the 2,000-iteration cap).
- **Analytic gradient.** SciPy's finite differences cost 6 objective calls per gradient (5 parameters + 1);
  the analytic gradient comes with the objective in one pass over the data.
- **Early pruning.** With starts merged into a better one within 10⁻² (max-norm in (a, b, e, α, β)) and
  starts dropped when, at their pace of the last 10 iterations, 100 more could not bring them to the best
  objective so far: {t_pruned:.2f} s, {pruned.evaluations:,} evaluations ({pruned.evaluations / len(grid):.0f} per
  start; ends: {', '.join(f'{v} {k}' for k, v in pruned.counts().items() if v)}). Most starts fall into a
  plateau where one power-law term has vanished (objective ≈ 11-20× the best) and are dropped there.
- **Newton polish** of the five best ends (exact 5 × 5 Hessian, eigenvalues floored): a few ms; it makes the
  optimum reproducible to ~1e-10 relative (objective rescaled by 1e±3, rows permuted: tests/laws).
- **Bootstrap**: each replicate = the runs' resample counts as weights, started from the point estimate and
  4 random grid starts, 100 replicates (500 starts) per batch, then polished; Besiroglu et al. start each
  replicate from one point.
"""
    record("scaling_fit", md)
    print(md)


if __name__ == "__main__":
    main()
