"""L-BFGS on a batch of independent small problems at once, in NumPy.

A multi-start fit (the 4,500 initial points of Hoffmann et al. 2022, App. D.2) or a bootstrap (a
thousand resampled data sets) is thousands of independent minimizations of a few parameters. Looping
SciPy's ``minimize`` over them pays Python and Fortran call overhead per problem and per evaluation;
here every array carries a leading batch axis, one call of the objective evaluates every live problem,
and the two-loop recursion of L-BFGS (Nocedal 1980; Nocedal & Wright 2006, Algorithm 7.4) runs for all
of them in vectorized steps.

Per problem: the search direction p = −H g from the last ``memory`` pairs (s, y) = (x_{k+1} − x_k,
g_{k+1} − g_k) with H₀ = (sᵀy / yᵀy) I (Nocedal & Wright eq. 7.20); a backtracking line search on the
Armijo condition f(x + t p) ≤ f(x) + c₁ t gᵀp with safeguarded quadratic interpolation (a non-finite
trial value counts as a failed one); a pair is kept only when sᵀy > 10⁻¹⁰ ‖s‖‖y‖ (positive curvature).
Every test is relative, so the iterates do not change when the objective is multiplied by a constant:

* the relative decrease (f_k − f_{k+1}) ≤ ``ftol`` · max(|f_k|, |f_{k+1}|) (SciPy's L-BFGS-B divides by
  max(|f_k|, |f_{k+1}|, 1), so a fit of an objective much smaller than 1 stops early);
* the relative first-order change max_i |g_i| · max(|x_i|, 1) ≤ ``gtol`` · |f|;
* the relative step max_i |s_i| / max(|x_i|, 1) ≤ ``xtol``.

Pruning (the problems of one ``group`` share one objective, e.g. the starts of one fit):

* ``merge``: a problem that shares a cell of side ``merge`` (max-norm, units of x) with a problem of
  its group that has a lower objective, live or already converged, is dropped: from (nearly) the same
  point both end at the same minimum.
* ``stall_horizon`` (positive objectives): every ``stall_window`` iterations, a problem above the best
  objective of its group that would still be above it after ``stall_horizon`` more iterations at the
  geometric pace of its last ``stall_window`` is dropped: it is crawling along a plateau or into a
  worse local minimum (e.g. a fit in which a power-law term has vanished).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: ``fun(x, rows) -> (f, g)``: objectives (k,) and gradients (k, d) of the problems ``rows`` at x (k, d).
BatchObjective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: Status codes of :class:`BatchResult`.
CONVERGED, LINE_SEARCH_FAILED, NOT_FINITE, MERGED, STALLED, MAX_ITER = 0, 1, 2, 3, 4, 5
STATUS = {CONVERGED: "converged", LINE_SEARCH_FAILED: "line search failed", NOT_FINITE: "not finite",
          MERGED: "merged into a better start", STALLED: "stalled above the best start",
          MAX_ITER: "iteration limit"}


@dataclass
class BatchResult:
    """Final iterates ``x`` (P, d), objectives ``f`` (P,), iterations and status (a key of ``STATUS``)
    per problem; ``calls`` batched objective calls and ``evaluations`` single-problem evaluations."""

    x: np.ndarray
    f: np.ndarray
    iterations: np.ndarray
    status: np.ndarray
    calls: int
    evaluations: int

    def counts(self) -> dict[str, int]:
        """How many problems ended with each status (by name)."""
        return {name: int(np.sum(self.status == code)) for code, name in STATUS.items()}


def lbfgs_batch(fun: BatchObjective, x0: np.ndarray, *, groups: np.ndarray | None = None, memory: int = 10,
                max_iter: int = 2000, ftol: float = 1e-13, gtol: float = 1e-10, xtol: float = 1e-13,
                merge: float = 0.0, merge_every: int = 5, stall_horizon: int = 0, stall_window: int = 10,
                first_step: float = 0.1, c1: float = 1e-4, max_backtracks: int = 40) -> BatchResult:
    """Minimize P independent problems with L-BFGS, all in one batch (see the module docstring).

    ``x0`` (P, d): the starting points. ``fun(x, rows)`` evaluates the problems ``rows`` (indices into
    the batch) at ``x``. ``groups`` (P,) integer labels of the problems that share one objective (only
    those are compared when pruning). ``first_step``: the max-norm length of a steepest-descent step
    (the first one, and after a reset of the memory), in units of x.
    """
    x0 = np.array(x0, dtype=float)
    if x0.ndim != 2:
        raise ValueError(f"x0 must be (problems, dimensions), got shape {x0.shape}")
    P, d = x0.shape
    groups = np.zeros(P, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    out = BatchResult(x0.copy(), np.full(P, np.inf), np.zeros(P, dtype=np.int64), np.full(P, MAX_ITER), 0, 0)
    incumbent = np.full(int(groups.max()) + 1 if P else 0, np.inf)  # best objective of each group so far

    rows = np.arange(P)
    x = x0.copy()
    f, g = fun(x, rows)
    out.calls, out.evaluations = 1, P
    live = {"rows": rows, "x": x, "f": f, "g": g, "S": np.zeros((P, memory, d)), "Y": np.zeros((P, memory, d)),
            "rho": np.zeros((P, memory)), "gamma": np.zeros(P), "it": np.zeros(P, dtype=np.int64),
            "hist": np.repeat(f[:, None], stall_window, axis=1)}

    def retire(mask: np.ndarray, code: int) -> None:
        idx = live["rows"][mask]
        out.x[idx], out.f[idx], out.iterations[idx], out.status[idx] = live["x"][mask], live["f"][mask], \
            live["it"][mask], code
        if code == CONVERGED:
            np.minimum.at(incumbent, groups[idx], live["f"][mask])
        for key in live:
            live[key] = live[key][~mask]

    slot = 0
    for k in range(max_iter):
        x, f, g = live["x"], live["f"], live["g"]
        bad = ~(np.isfinite(f) & np.all(np.isfinite(g), axis=1) & np.all(np.isfinite(x), axis=1))
        if bad.any():
            retire(bad, NOT_FINITE)
        if len(live["rows"]) == 0:
            break
        x, f, g, S, Y, rho, gamma = (live[key] for key in ("x", "f", "g", "S", "Y", "rho", "gamma"))
        p, slope = _direction(g, S, Y, rho, gamma, slot, first_step)

        # backtracking Armijo line search over the problems still searching
        n = len(f)
        t = np.ones(n)
        f_new, g_new = f.copy(), g.copy()
        done = np.zeros(n, dtype=bool)
        searching = np.arange(n)
        for _ in range(max_backtracks):
            ft, gt = fun(x[searching] + t[searching, None] * p[searching], live["rows"][searching])
            out.calls, out.evaluations = out.calls + 1, out.evaluations + len(searching)
            ok = np.isfinite(ft) & (ft <= f[searching] + c1 * t[searching] * slope[searching])
            f_new[searching[ok]], g_new[searching[ok]], done[searching[ok]] = ft[ok], gt[ok], True
            searching, tr, ftr = searching[~ok], t[searching[~ok]], ft[~ok]
            if len(searching) == 0:
                break
            # minimizer of the quadratic through f(0), f'(0) and f(t), kept within [0.1 t, 0.5 t]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                tq = -slope[searching] * tr * tr / (2.0 * (ftr - f[searching] - slope[searching] * tr))
            t[searching] = np.clip(np.where(np.isfinite(tq), tq, 0.5 * tr), 0.1 * tr, 0.5 * tr)
        if not done.all():
            retire(~done, LINE_SEARCH_FAILED)
            t, p, f_new, g_new, f, g = t[done], p[done], f_new[done], g_new[done], f[done], g[done]
        if len(live["rows"]) == 0:
            break
        step = t[:, None] * p
        live["x"] = live["x"] + step
        live["f"], live["g"] = f_new, g_new
        live["it"] = live["it"] + 1
        live["hist"][:, k % stall_window] = f_new

        # the curvature pair (kept only if the curvature along the step is positive)
        y = g_new - g
        sy, yy = np.einsum("pd,pd->p", step, y), np.einsum("pd,pd->p", y, y)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            good = (sy > 1e-10 * np.sqrt(np.einsum("pd,pd->p", step, step) * yy)) & (yy > 0)
            good &= np.isfinite(1.0 / sy) & np.isfinite(sy / yy)
            live["S"][:, slot], live["Y"][:, slot] = step, y
            live["rho"][:, slot] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
            live["gamma"] = np.where(good, sy / np.where(good, yy, 1.0), live["gamma"])
        slot = (slot + 1) % memory

        # convergence: every test relative (invariant to rescaling f)
        xs = np.maximum(np.abs(live["x"]), 1.0)
        conv = ((f - f_new) <= ftol * np.maximum(np.abs(f), np.abs(f_new))) \
            | (np.max(np.abs(g_new) * xs, axis=1) <= gtol * np.abs(f_new)) \
            | (np.max(np.abs(step) / xs, axis=1) <= xtol)
        if conv.any():
            retire(conv, CONVERGED)
        if merge > 0 and (k + 1) % merge_every == 0 and len(live["rows"]):
            settled = out.status == CONVERGED
            dup = _duplicates(live["x"], live["f"], groups[live["rows"]], merge,
                              (out.x[settled], out.f[settled], groups[settled]))
            if dup.any():
                retire(dup, MERGED)
        if stall_horizon > 0 and (k + 1) % stall_window == 0 and len(live["rows"]):
            f_now, lg = live["f"], groups[live["rows"]]
            np.minimum.at(incumbent, lg, f_now)
            best = incumbent[lg]
            before = live["hist"][:, (k + 1) % stall_window]  # f, stall_window - 1 iterations ago
            with np.errstate(divide="ignore", invalid="ignore"):
                ahead = np.log(before / f_now) * (stall_horizon / (stall_window - 1))  # log-decrease to come
                stalled = (f_now > best) & (best > 0) & (ahead < np.log(f_now / best))
            if stalled.any():
                retire(stalled, STALLED)
        if len(live["rows"]) == 0:
            break
    if len(live["rows"]):
        retire(np.ones(len(live["rows"]), dtype=bool), MAX_ITER)
    return out


def _direction(g, S, Y, rho, gamma, slot, first_step):
    """The L-BFGS direction −H g by the two-loop recursion (newest pair first), and its slope gᵀp.
    Where there is no curvature pair yet, or the direction is not a descent one (the memory is then
    cleared), a steepest-descent step of max-norm ``first_step``."""
    memory = S.shape[1]
    q = -g
    alphas = np.empty((len(g), memory))
    order = [(slot - 1 - j) % memory for j in range(memory)]
    for j in order:
        alphas[:, j] = rho[:, j] * np.einsum("pd,pd->p", S[:, j], q)
        q = q - alphas[:, j, None] * Y[:, j]
    sd_scale = first_step / np.maximum(np.max(np.abs(g), axis=1), 1e-300)
    q = q * np.where(gamma == 0, sd_scale, gamma)[:, None]
    for j in reversed(order):
        beta = rho[:, j] * np.einsum("pd,pd->p", Y[:, j], q)
        q = q + (alphas[:, j] - beta)[:, None] * S[:, j]
    slope = np.einsum("pd,pd->p", g, q)
    uphill = ~(slope < 0)
    if uphill.any():
        q[uphill] = -g[uphill] * sd_scale[uphill, None]
        slope[uphill] = np.einsum("pd,pd->p", g[uphill], q[uphill])
        rho[uphill], gamma[uphill] = 0.0, 0.0
    return q, slope


def _duplicates(x: np.ndarray, f: np.ndarray, groups: np.ndarray, tol: float, anchors: tuple) -> np.ndarray:
    """Mask of the live problems (x, f, groups) that share a cell of side ``tol`` with a point of their
    group that has a lower objective: another live problem, or one of the ``anchors`` (x, f, groups)
    that have already converged."""
    n = len(x)
    x, f, groups = (np.concatenate([a, b]) for a, b in zip((x, f, groups), anchors))
    with np.errstate(invalid="ignore", over="ignore"):
        cell = np.floor(x / tol)
    cell = np.nan_to_num(cell, nan=0.0, posinf=2.0**62, neginf=-(2.0**62)).astype(np.int64)
    key = np.concatenate([groups[:, None], cell], axis=1)
    order = np.lexsort((f,) + tuple(key[:, j] for j in reversed(range(key.shape[1]))))
    ks = key[order]
    same_as_previous = np.zeros(len(order), dtype=bool)
    same_as_previous[1:] = np.all(ks[1:] == ks[:-1], axis=1)
    dup = np.zeros(len(x), dtype=bool)
    dup[order[same_as_previous]] = True
    return dup[:n]
