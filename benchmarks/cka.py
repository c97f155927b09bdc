"""Benchmark: linear CKA on 10,000 x 512 features, time and peak memory against two peers.

* ``lmech.instruments.similarity.linear_cka`` (feature space, float64: three p x p products) against
  a plain n x n HSIC implementation (Kornblith et al. 2019, Eqs. (2)-(3): K = XX^T, L = YY^T,
  tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)), float64). torch-cka cannot take raw feature matrices and
  computes the *debiased* estimator, so it is not the peer for the biased value.
* ``lmech.instruments.similarity.debiased_cka`` (feature space, float64) against torch-cka 0.21's
  ``CKA.compare`` (unbiased HSIC of Nguyen et al. 2021 with n x n Gram matrices, float32), fed the raw
  features through identity models and one DataLoader batch of all 10,000 rows, so that it computes
  the full-data debiased CKA.

Each measurement runs in a fresh process: time = best of repeats, peak memory = growth of the
process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over its size before the call.

Second part (``--part compare``): every metric of the module on one pair of 10,000 x 512 feature
matrices (time, CPU time, peak memory; RBF CKA and mutual k-NN also at a second block size, to show the
value does not depend on it), and ``compare(..., metrics=[all six])`` on two MLPs (64-512-512-512-10,
seeds 0 and 1, the three ReLU layers of each) over 10,000 inputs in one forward pass. No peer runs in
this part (torch-cka, the bench extra's only CKA peer, computes one metric and is measured in the
first part); the yardstick is the physical limit: the float64 GEMM flops each metric needs, at the GEMM
rate measured in the same run. ``--part linear`` reruns the first part only; each part rewrites its own
``## `` subsection of the ``cka`` section of BENCHMARKS.md and keeps the other.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import sys
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import TARGET, machine, record  # noqa: E402

N, P, Q = 10_000, 512, 512


def features() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, P, generator=g)
    Y = torch.tanh(X @ torch.randn(P, Q, generator=g) / P**0.5) + 0.5 * torch.randn(N, Q, generator=g)
    return X, Y


def dense_hsic_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """The n x n peer: centred Gram matrices and Frobenius inner products, float64."""
    X, Y = X.double(), Y.double()
    n = X.shape[0]

    def centred_gram(Z):
        K = Z @ Z.T
        return K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()

    Kc = centred_gram(X)
    Lc = centred_gram(Y)
    kl, kk, ll = (Kc * Lc).sum(), (Kc * Kc).sum(), (Lc * Lc).sum()
    return float(kl / (n - 1) ** 2 / torch.sqrt(kk * ll / (n - 1) ** 4))


def torch_cka_debiased(X: torch.Tensor, Y: torch.Tensor) -> float:
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    m1 = nn.Sequential(OrderedDict(features=nn.Identity()))
    m2 = nn.Sequential(OrderedDict(features=nn.Identity()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cka = CKA(m1, m2, "X", "Y", model1_layers=["features"], model2_layers=["features"])
        cka.compare(DataLoader(TensorDataset(X), batch_size=N), DataLoader(TensorDataset(Y), batch_size=N))
    return float(cka.export()["CKA"][0, 0])


def lmech_linear(X, Y):
    from lmech.instruments.similarity import linear_cka

    return linear_cka(X, Y)


def lmech_debiased(X, Y):
    from lmech.instruments.similarity import debiased_cka

    return debiased_cka(X, Y)


METHODS = {
    "lmech linear_cka": lmech_linear,
    "dense n x n HSIC": dense_hsic_cka,
    "lmech debiased_cka": lmech_debiased,
    "torch-cka 0.21": torch_cka_debiased,
}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


def _worker(name: str, repeats: int, queue) -> None:
    torch.set_num_threads(torch.get_num_threads())
    X, Y = features()
    fn = METHODS[name]
    fn(X[:100], Y[:100])  # import and warm up outside the measurement
    best, value, peak = float("inf"), None, 0
    for _ in range(repeats):
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set to the current one
        before = _status("VmRSS")
        t0 = time.perf_counter()
        value = fn(X, Y)
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, _status("VmHWM") - before)
    queue.put((best, value, peak))


def measure(name: str, repeats: int) -> tuple[float, float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(name, repeats, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def linear_part() -> str:
    res = {
        name: measure(name, repeats)
        for name, repeats in [
            ("lmech linear_cka", 5),
            ("dense n x n HSIC", 2),
            ("lmech debiased_cka", 5),
            ("torch-cka 0.21", 1),
        ]
    }
    for k, v in res.items():
        print(f"{k}: {v[0]:.3f} s, CKA {v[1]:.10f}, peak +{v[2] / 2**20:.0f} MiB", flush=True)

    gf64 = gemm_rate()
    flops = 2 * N * (P * P + Q * Q + P * Q)

    def row(ours: str, peer: str) -> str:
        (t_o, v_o, m_o), (t_p, v_p, m_p) = res[ours], res[peer]
        return (
            f"| `{ours}` vs {peer} | {t_o * 1e3:.0f} | {t_p * 1e3:.0f} | **{t_p / t_o:.1f}x** "
            f"| {m_o / 2**20:.0f} | {m_p / 2**20:.0f} | {m_p / max(m_o, 1):.0f}x | {abs(v_o - v_p) / abs(v_p):.1e} |"
        )

    md = "\n".join(
        [
            "## Linear CKA on 10,000 x 512 features",
            "",
            f"Machine: {machine()}.",
            "",
            "X: 10,000 x 512 Gaussian (float32 input), Y = tanh(XA) + noise (CKA ~ 0.5). `linear_cka` and "
            "`debiased_cka` work in feature space in float64 (p x p products, no n x n matrix). Peers: a plain "
            "n x n HSIC implementation of linear CKA in float64 (Gram matrices, centring, Frobenius products); "
            "torch-cka 0.21 `CKA.compare` (debiased, float32, n x n Grams and n x n x n products), fed the raw "
            "features through identity models with one 10,000-row batch (it cannot take feature matrices "
            "directly). Each in its own process; time = best of repeats, peak = growth of peak RSS during the call.",
            "",
            "| comparison | lmech (ms) | peer (ms) | speed-up | lmech peak (MiB) | peer peak (MiB) | memory ratio "
            "| rel. diff of value |",
            "|---|---|---|---|---|---|---|---|",
            row("lmech linear_cka", "dense n x n HSIC"),
            row("lmech debiased_cka", "torch-cka 0.21"),
            "",
            f"Physical limit: `linear_cka` needs 2n(p^2 + q^2 + pq) = {flops / 1e9:.1f} GFLOP of float64 GEMM; at "
            f"this machine's float64 GEMM rate measured in the same run ({gf64:.0f} GFLOP/s) that is "
            f"{flops / gf64 / 1e9 * 1e3:.0f} ms, against {res['lmech linear_cka'][0] * 1e3:.0f} ms measured (the rest "
            "is the float64 copy and centring of X and Y, memory-bound). Its memory is the two float64 copies "
            f"of the features ({N * (P + Q) * 8 / 2**20:.0f} MiB in all) plus three 512 x 512 matrices.",
        ]
    )
    return md



def gemm_rate(clock=time.perf_counter) -> float:
    """This machine's float64 GEMM rate (GFLOP per second of ``clock``), 2048 x 2048 products, best of 3.

    With ``time.process_time`` and one thread: flops per CPU second, unaffected by other processes."""
    a = torch.randn(2048, 2048, dtype=torch.float64)
    a @ a
    best = float("inf")
    for _ in range(3):
        t0 = clock()
        a @ a
        best = min(best, clock() - t0)
    return 2 * 2048**3 / best / 1e9


# ---- part 2: every metric, and compare(metrics=[...]) on two MLPs -------------------------------

ALL = ["linear_cka", "debiased_cka", "rbf_cka", "mutual_knn", "procrustes", "svcca"]
WIDTH, DEPTH, D_IN = 512, 3, 64


def metric_flops(name: str, n: int, p: int, q: int) -> float:
    """float64 GEMM flops of one metric on an (n, p), (n, q) pair, as lmech computes it."""
    return {
        "linear_cka": 2 * n * (p * p + q * q + p * q),
        "debiased_cka": 2 * n * (p * p + q * q + p * q),
        "rbf_cka": 2 * n * n * (p + q) + 2 * min(n, 2000) ** 2 * (p + q),  # blocked kernels + median subsample
        "mutual_knn": 2 * n * n * (p + q),
        "procrustes": 2 * n * p * q,
        "svcca": 4 * n * (p * p + q * q) + 2 * n * p * q,  # two thin SVDs (~4 n p^2 each) + U_x^T U_y
    }[name]


def _metric_worker(name: str, queue) -> None:
    from lmech.instruments import similarity as S

    X, Y = features()
    fn = S.METRICS[name]
    fn(X[:100], Y[:100])
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn(X, Y)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status("VmHWM") - before
    other = fn(X, Y, block=1000) if name in ("rbf_cka", "mutual_knn") else None
    queue.put((wall, cpu, peak, value, other))


def mlp(seed: int):
    from torch import nn

    torch.manual_seed(seed)
    layers, d = [], D_IN
    for _ in range(DEPTH):
        layers += [nn.Linear(d, WIDTH), nn.ReLU()]
        d = WIDTH
    return nn.Sequential(*layers, nn.Linear(d, 10))


STREAMED = ["linear_cka", "debiased_cka", "procrustes", "svcca"]


def _compare_worker(metrics, queue) -> None:
    from lmech.instruments.similarity import compare

    a, b = mlp(0), mlp(1)
    x = torch.randn(N, D_IN, generator=torch.Generator().manual_seed(2))
    relus = [str(2 * i + 1) for i in range(DEPTH)]
    compare(a, b, x[:50], layers=relus, metrics=metrics)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    frames = compare(a, b, x, layers=relus, metrics=metrics, batch_size=1000)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status("VmHWM") - before
    queue.put((wall, cpu, peak, {m: f.to_numpy().tolist() for m, f in frames.items()}))


def _spawn(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def compare_part() -> str:
    gf64 = gemm_rate(time.process_time)  # per CPU second: compared with CPU times, robust to load
    rows, total_flops = [], 0.0
    for name in ALL:
        wall, cpu, peak, value, other = _spawn(_metric_worker, name)
        flops = metric_flops(name, N, P, Q)
        inv = "-" if other is None else f"{abs(value - other):.1e}"
        rows.append(f"| `{name}` | {value:.6f} | {wall * 1e3:.0f} | {cpu * 1e3:.0f} | {peak / 2**20:.0f} "
                    f"| {flops / 1e9:.1f} | {flops / gf64 / 1e6:.0f} | {inv} |")
        print(rows[-1], flush=True)
    s_wall, s_cpu, s_peak, _ = _spawn(_compare_worker, STREAMED)
    wall, cpu, peak, values = _spawn(_compare_worker, ALL)
    pairs, layers = DEPTH * DEPTH, 2 * DEPTH
    # the streamed sums (X^T X per layer, Y^T X per pair) serve linear/debiased CKA, Procrustes and SVCCA;
    # RBF kernels (and their median subsample) and neighbour lists are computed once per layer
    streamed_flops = 2 * N * (layers * WIDTH**2 + pairs * WIDTH**2)
    total_flops = streamed_flops + layers * (4 * N * N * WIDTH + 2 * min(N, 2000) ** 2 * WIDTH)
    diag = {m: [round(values[m][i][i], 3) for i in range(DEPTH)] for m in ALL}
    nthreads = torch.get_num_threads()
    return "\n".join([
        "## Every metric at n = 10,000, and `compare(..., metrics=[...])` on two MLPs",
        "",
        f"Machine: {machine()}. No peer in this part (torch-cka computes one metric, measured above); "
        f"the yardstick is the float64 GEMM work each metric needs at this machine's float64 GEMM rate "
        f"measured in the same run ({gf64:.0f} GFLOP per CPU second, {nthreads} thread(s)), compared with "
        "CPU times (wall times on this shared machine include waiting for other processes).",
        "",
        "One pair, the X, Y above (10,000 x 512 each), each metric in its own process (one call; CPU time "
        "summed over threads; peak = growth of peak RSS, including the two float64 copies of X and Y, "
        f"{2 * N * P * 8 / 2**20:.0f} MiB). RBF CKA and mutual k-NN store no n x n matrix: they work on "
        "blocks of rows (default: 32 MiB of float64 kernel rows at a time); the last column is the change "
        "of the value with 1000-row blocks instead. RBF CKA's median-distance bandwidth is the median over "
        "the pairs of a fixed random subset of 2000 examples (all pairs for n <= 2000).",
        "",
        "| metric | value | wall (ms) | CPU (ms) | peak (MiB) | GEMM GFLOP | GEMM limit (CPU ms) | change with block 1000 |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"`compare(mlp_a, mlp_b, x, layers=[the 3 ReLUs], metrics=[...], batch_size=1000)`: two MLPs "
        f"{D_IN}-{WIDTH}-{WIDTH}-{WIDTH}-10 (PyTorch default init, seeds 0 and 1), x 10,000 x {D_IN} Gaussian, "
        f"{pairs} layer pairs, one forward pass, each call in its own process:",
        "",
        "| metrics | wall (s) | CPU (s) | peak (MiB) | GEMM GFLOP | GEMM limit (CPU s) |",
        "|---|---|---|---|---|---|",
        f"| {', '.join(STREAMED)} (streamed sums) | {s_wall:.1f} | {s_cpu:.1f} | {s_peak / 2**20:.0f} "
        f"| {streamed_flops / 1e9:.0f} | {streamed_flops / gf64 / 1e9:.1f} |",
        f"| all six | **{wall:.1f}** | {cpu:.1f} | {peak / 2**20:.0f} | {total_flops / 1e9:.0f} "
        f"| {total_flops / gf64 / 1e9:.1f} |",
        "",
        "Linear and debiased CKA, Procrustes and SVCCA come from sums streamed over the batches (X^T X per "
        "layer, Y^T X per pair, and row-norm-weighted sums): no features are stored and the memory does not "
        "grow with n. RBF CKA and mutual k-NN need all the examples: the captured float32 features "
        f"({layers * N * WIDTH * 4 / 2**20:.0f} MiB here) are kept for the neighbour search, then replaced by "
        f"RBF CKA's float64 copies of every layer ({layers * N * WIDTH * 8 / 2**20:.0f} MiB), from which all "
        "the layers' kernel blocks are computed together, each kernel once (2 n^2 p flops per layer, as is "
        "each layer's neighbour search): these two metrics are the GEMM limit's bulk and the peak memory's. "
        "Matching layers (diagonals): "
        + "; ".join(f"{m} {diag[m]}" for m in ALL) + ".",
    ])


def _write(parts: dict[str, str]) -> None:
    """Rewrite the ``cka`` section with the given ``## `` subsections, keeping the others as they are."""
    text = TARGET.read_text() if TARGET.exists() else ""
    m = re.search(r"<!-- bench:cka -->\n(.*?)\n<!-- /bench:cka -->", text, re.S)
    old = m.group(1) if m else ""
    chunks = [c for c in re.split(r"(?m)^(?=## )", old) if c.strip()]
    keys = {"linear": "## Linear CKA", "compare": "## Every metric"}
    kept = {k: next((c.strip() for c in chunks if c.startswith(h)), "") for k, h in keys.items()}
    kept.update(parts)
    record("cka", "\n\n".join(kept[k] for k in keys if kept[k]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", "linear", "compare"], default="all")
    part = ap.parse_args().part
    parts = {}
    if part in ("all", "linear"):
        parts["linear"] = linear_part()
    if part in ("all", "compare"):
        parts["compare"] = compare_part()
    _write(parts)
    print("\n\n".join(parts.values()))


if __name__ == "__main__":
    main()
