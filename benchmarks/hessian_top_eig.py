"""Top Hessian eigenvalue to relative accuracy 1e-3: lmech's Lanczos vs PyHessian's power iteration.

Problem: an MLP 100-256-256-10 (tanh, ~94k parameters) on 2000 synthetic examples labelled by a
random teacher, cross-entropy, after 20 full-batch SGD steps; float32 like the peers. The reference
eigenvalue is computed in float64 with Lanczos at tol 1e-10.

Timed in the same run (median over repeats with different random start vectors):

* lmech: ``hessian_eigenvalues(..., tol=1e-3)``; the Ritz residual bounds the eigenvalue error, so
  tol 1e-3 guarantees relative accuracy 1e-3 (in exact arithmetic);
* PyHessian 0.1 ``hessian(model, criterion, data=(x, y), cuda=False).eigenvalues(top_n=1)`` with its
  default tol 1e-3 (a relative change between iterates, not an accuracy), and with the loosest tol
  in 1e-3..1e-6 whose answers are all within 1e-3 of the reference ("accuracy-matched");
* curvlinops' ``HessianLinearOperator`` with ``scipy.sparse.linalg.eigsh(which="LA", tol=1e-3)``.

Also: the cost of one Hessian-vector product in gradients (torch.func and curvlinops products for
comparison), and the products used cold vs warm-started after 5 more training steps.

``python benchmarks/hessian_top_eig.py [--quick]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings

import torch
from torch import nn

from _record import machine, record
from lmech.instruments.curvature import HessianOperator, hessian_eigenvalues

warnings.filterwarnings("ignore")  # PyHessian's backward(create_graph=True) warns on every call


def build(seed: int = 0):
    torch.manual_seed(seed)
    n, d, h, c = 2000, 100, 256, 10
    model = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, c))
    teacher = nn.Sequential(nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, c))
    x = torch.randn(n, d)
    with torch.no_grad():
        y = teacher(x).argmax(1)
    return model, nn.CrossEntropyLoss(), x, y


def sgd_steps(model, loss_fn, x, y, steps: int, lr: float = 0.5):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)


def reference(model, loss_fn, x, y) -> float:
    m64 = copy.deepcopy(model).double()
    return float(hessian_eigenvalues(m64, loss_fn, x.double(), y, k=1, tol=1e-10)[0])


def timed(fn, repeats: int):
    """Median wall time and the last result of ``fn(seed)`` over ``repeats`` seeds."""
    times, results = [], []
    for seed in range(repeats):
        t = time.perf_counter()
        results.append(fn(seed))
        times.append(time.perf_counter() - t)
    return statistics.median(times), results


def lmech_top(model, loss_fn, x, y, tol=1e-3, bound="residual"):
    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        res = hessian_eigenvalues(model, loss_fn, x, y, k=1, tol=tol, generator=gen, bound=bound, return_result=True)
        return float(res.values[0]), res.num_matvecs, res

    return run


class PyHessianCounter:
    """Counts PyHessian's Hessian-vector products by wrapping its module-level function."""

    def __init__(self):
        import pyhessian  # noqa: F401

        self.module = sys.modules["pyhessian.hessian"]
        self.original = self.module.hessian_vector_product
        self.count = 0

        def counting(*args, **kwargs):
            self.count += 1
            return self.original(*args, **kwargs)

        self.module.hessian_vector_product = counting


def pyhessian_top(counter, model, loss_fn, x, y, tol=None):
    import pyhessian

    def run(seed):
        torch.manual_seed(seed)  # PyHessian draws its start vector from the global RNG
        counter.count = 0
        hc = pyhessian.hessian(model, loss_fn, data=(x, y), cuda=False)
        vals, _ = hc.eigenvalues(top_n=1) if tol is None else hc.eigenvalues(top_n=1, tol=tol, maxIter=2000)
        model.zero_grad(set_to_none=True)  # PyHessian leaves create_graph gradients in .grad
        return float(vals[0]), counter.count, None

    return run


def curvlinops_top(model, loss_fn, x, y, tol=1e-3):
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import eigsh

    params = [p for p in model.parameters() if p.requires_grad]

    def run(seed):
        op = HessianLinearOperator(model, loss_fn, params, [(x, y)], check_deterministic=False).to_scipy()
        v0 = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()
        vals = eigsh(op, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
        return float(vals[0]), None, None

    return run


def per_product_costs(model, loss_fn, x, y, repeats: int) -> dict[str, float]:
    """Seconds per gradient and per Hessian-vector product with each base."""
    from curvlinops import HessianLinearOperator
    from torch.func import functional_call, grad, jvp

    params = [p for p in model.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    v = torch.randn(n)

    def median(fn, k=repeats * 4):
        fn()
        ts = []
        for _ in range(k):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    def gradient():
        torch.autograd.grad(loss_fn(model(x), y), params)

    op = HessianOperator(model, loss_fn, x, y)
    op @ v  # builds the cached gradient graph
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    pdict = {k: p.detach() for k, p in zip(names, params)}
    vdict = dict(zip(names, [t.detach() for t in torch.split(v, [p.numel() for p in params])]))
    vdict = {k: t.reshape(pdict[k].shape) for k, t in vdict.items()}
    g = grad(lambda p: loss_fn(functional_call(model, p, (x,)), y))
    cl = HessianLinearOperator(model, loss_fn, params, [(x, y)], check_deterministic=False)
    return {
        "gradient": median(gradient),
        "lmech (cached graph)": median(lambda: op @ v),
        "lmech (graph rebuilt)": median(lambda: HessianOperator(model, loss_fn, x, y, check=False) @ v),
        "torch.func fwd-over-rev": median(lambda: jvp(g, (pdict,), (vdict,))),
        "curvlinops": median(lambda: cl @ v),
    }


def compare(model, loss_fn, x, y, repeats: int, counter: PyHessianCounter):
    """Rows (name, median seconds, results) of every method on one problem; the reference λ1."""
    ref = reference(model, loss_fn, x, y)
    rows = []
    t_lm, res_lm = timed(lmech_top(model, loss_fn, x, y), repeats)
    rows.append(("lmech Lanczos, tol 1e-3 (residual bound, rigorous)", t_lm, res_lm))
    t_gap, res_gap = timed(lmech_top(model, loss_fn, x, y, bound="gap"), repeats)
    rows.append(("lmech Lanczos, tol 1e-3 (residual²/gap estimate)", t_gap, res_gap))
    t_ph, res_ph = timed(pyhessian_top(counter, model, loss_fn, x, y), repeats)
    rows.append(("PyHessian power iteration, default tol 1e-3", t_ph, res_ph))
    matched = None
    for tol in (1e-4, 1e-5, 1e-6):
        if max(abs(r[0] - ref) / ref for r in res_ph) <= 1e-3:
            break  # the default already reaches the accuracy
        t_m, res_m = timed(pyhessian_top(counter, model, loss_fn, x, y, tol=tol), repeats)
        if max(abs(r[0] - ref) / ref for r in res_m) <= 1e-3:
            matched = (f"PyHessian power iteration, tol {tol:g} (accuracy-matched)", t_m, res_m)
            break
    if matched is not None:
        rows.append(matched)
    t_cl, res_cl = timed(curvlinops_top(model, loss_fn, x, y), repeats)
    rows.append(("curvlinops HessianLinearOperator + scipy eigsh(LA), tol 1e-3", t_cl, res_cl))
    return rows, ref, res_lm


def table(rows, ref) -> list[str]:
    t_lm = rows[0][1]
    lines = ["| method | time (s) | HVPs per run | max rel. error | time / lmech (rigorous) |", "|---|---|---|---|---|"]
    for name, t, res in rows:
        errs = max(abs(r[0] - ref) / ref for r in res)
        hvps = "-" if res[0][1] is None else "/".join(str(r[1]) for r in res)
        lines.append(f"| {name} | {t:.3f} | {hvps} | {errs:.1e} | {t / t_lm:.2f}x |")
    return lines


def main(quick: bool) -> None:
    torch.set_num_threads(2)
    repeats = 3 if quick else 5
    counter = PyHessianCounter()
    settings = [0.1] if quick else [0.1, 0.5]
    lines = [
        "Top Hessian eigenvalue to relative accuracy 1e-3. MLP 100-256-256-10 (tanh, 94,218 parameters), "
        "2000 synthetic examples, cross-entropy, float32, after 20 full-batch SGD steps at learning rate lr; "
        "reference λ1 from float64 Lanczos at tol 1e-10. Median time of "
        f"{repeats} runs with different start vectors. Machine: {machine()}.",
    ]
    for lr in settings:
        model, loss_fn, x, y = build()
        sgd_steps(model, loss_fn, x, y, 20, lr=lr)
        rows, ref, res_lm = compare(model, loss_fn, x, y, repeats, counter)
        lines += ["", f"**After 20 steps at lr {lr}** (λ1 = {ref:.5f}):", ""] + table(rows, ref)

    costs = per_product_costs(model, loss_fn, x, y, repeats)
    t_grad = costs["gradient"]
    lines += [
        "",
        "Cost of one Hessian-vector product, in gradients (one forward + backward on the 2000 examples):",
        "",
        "| product | ms | gradients |",
        "|---|---|---|",
    ]
    for name, t in costs.items():
        lines.append(f"| {name} | {1e3 * t:.1f} | {t / t_grad:.2f} |")

    # warm start: 5 more training steps, then cold vs warm from the previous Ritz vector
    previous = res_lm[-1][2].vectors
    sgd_steps(model, loss_fn, x, y, 5, lr=settings[-1])
    ref_after = reference(model, loss_fn, x, y)
    cold = [lmech_top(model, loss_fn, x, y)(s)[1] for s in range(repeats)]
    warm = hessian_eigenvalues(model, loss_fn, x, y, k=1, tol=1e-3, v0=previous, return_result=True)
    lines += [
        "",
        f"Warm start after 5 more SGD steps (λ1 {ref:.4f} → {ref_after:.4f}), tol 1e-3 residual bound: cold "
        f"{'/'.join(map(str, cold))} HVPs, warm-started from the previous Ritz vector {warm.num_matvecs} HVPs "
        f"(rel. error {abs(float(warm.values[0]) - ref_after) / ref_after:.1e}).",
        "",
        "Physical limit: a Hessian-vector product needs at least a gradient plus one more backward pass "
        "(about 2 gradients); lmech's costs "
        f"{costs['lmech (cached graph)'] / t_grad:.2f} gradients by building the gradient's graph once and "
        "differentiating it again per product (reverse-over-reverse, Pearlmutter 1994). Cheapest per product "
        f"in this run: {min(list(costs)[1:], key=costs.get)}. The rest of the gain is fewer products: Lanczos "
        "converges at about the square root of power iteration's rate, and its residual gives a stopping rule "
        "tied to the accuracy, whereas PyHessian's tol bounds the change between iterates (its default answer "
        "can miss 1e-3 accuracy). The speed-up over power iteration grows as the gap λ1 - λ2 shrinks.",
    ]
    text = "\n".join(lines)
    print(text)
    record("hessian_top_eig", text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one problem and 3 repeats (instead of 2 and 5)")
    main(parser.parse_args().quick)
