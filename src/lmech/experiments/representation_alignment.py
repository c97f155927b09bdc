r"""Law: different architectures trained on the same data align their representations, beyond the controls.

Kornblith, Norouzi, Lee & Hinton 2019 ("Similarity of neural network representations revisited", arXiv
1905.00414) compare networks of different architectures layer by layer with CKA; Huh, Cheung, Wang & Isola
2024 ("The platonic representation hypothesis", arXiv 2405.07987) measure the mutual k-nearest-neighbour
alignment (k = 10) of the penultimate representations and report that it grows with the models' competence. Both claims have pitfalls that this law controls for: random networks
already share the input's geometry (**initialization**); a maximum over layer pairs is a selection bias,
so the null must take the same maximum (**permutation null**); and any two good 10-class classifiers share a
10-dimensional class structure, so part of the alignment is the **labels** (Kornblith et al. Fig. 8).

Setting: for each architecture (a ReLU MLP with ``depth`` hidden layers; :class:`lmech.models.cnn.SmallCNN`
with ``depth`` 3×3 convolutions and global average pooling; :class:`lmech.models.patch_transformer.
PatchTransformer` with ``blocks`` pre-norm blocks on 2×2 patches) and each of ``widths``, one network, all
trained by minibatch Adam on cross-entropy on the same ``n_train`` scikit-learn digits with the same
minibatches (each architecture at its own learning rate). Representations are taken on ``n_compare`` held-out
digits (test accuracy on all 1797 − ``n_train``), in float64: MLP hidden layers (post-ReLU); CNN convolutions
(post-ReLU, maps flattened to width·64 features) and their spatial mean; transformer patch embedding and block
outputs (tokens flattened) and the pooled final-LayerNorm mean. The last of each is the **penultimate**
representation (the readout's input).

Statistics, for every pair of networks of different architectures (a, b):

* mutual k-NN alignment of the penultimate representations, :math:`m_k(a, b) = \frac1n \sum_i
  |N_k^a(i) \cap N_k^b(i)|/k` (cosine neighbours, :func:`lmech.instruments.similarity.mutual_knn`, k = 10 as
  Huh et al.); for independent representations :math:`E\,m_k = k/(n-1)`;
* the layer × layer matrix of **debiased** linear CKA (unbiased HSIC of Song et al. 2012, Nguyen et al. 2021
  arXiv 2010.15327 Eq. (3); :func:`~lmech.instruments.similarity.debiased_cka`) and its maximum over layer
  pairs. Debiased, because the flattened convolution and token maps have up to width·64 features against
  n = 500 examples, where the biased HSIC is inflated (two independent random (n, p) matrices have biased
  linear CKA ≈ p/(n + p), about 0.8 at p = 2048; the debiased one ≈ 0). The metric-agreement table, on the
  (at most 32-dimensional) penultimate representations, reports both.

The controls, on the same pairs: the same networks **at initialization** (their representations before
training); the **permutation null**, the same statistic with the n examples of b in a random order (one
permutation per pair), with the same maximum over layer pairs for CKA; the **label control**, the same
statistic between the one-hot predicted labels of a and of b (each plus isotropic noise of standard deviation
1e-3, independent per network, so that the nearest neighbours among examples of one predicted class are a
random draw instead of the index order); and **within classes**: m_k (k = 10, about 50 examples per class) and
debiased CKA computed on the examples of each true class separately and averaged over classes (reported).

Verdicts (quick config: MLP, CNN, transformer at widths 8, 16, 32; 120 Adam steps; n = 500 compared; held-out
accuracies 0.62-0.95; seeds 0, 1, 2):

1. ``beats_init``: min over architecture pairs of the mean over their network pairs of m_k(trained) −
   m_k(initialization) ≥ 0.04. Measured 0.115, 0.088, 0.110 (m_k 0.21-0.22 trained, 0.07-0.09 at
   initialization: random networks already share a third of it, through the input's geometry).
2. ``beats_permutation``: min over architecture pairs of mean max_ij CKA(a_i, b_j) − the same maximum with b's
   examples permuted ≥ 0.1. Measured 0.668, 0.645, 0.687 (trained maxima 0.72-0.77, the null's 0.002; m_k's
   null 0.020 = k/(n − 1)). The maximum is large **at initialization too** (0.62-0.65, reported): it is
   reached between the first layers (convolution maps, patch embeddings, first hidden layer), which are
   near-linear images of the same pixels; the max over layer pairs says more about the input than about
   training.
3. ``beats_labels``: min over architecture pairs of mean m_k(trained) − m_k(label control) ≥ 0.04. Measured
   0.096, 0.100, 0.099 (the label control 0.10). **For CKA the label control is not beaten**: the debiased
   CKA of the penultimate representations (0.32-0.37) is below that of the one-hot predictions (0.44-0.47):
   what CKA sees across architectures is mostly the class structure (Kornblith et al.'s Fig. 8 point), what
   m_k sees is finer. **Within classes, training barely adds alignment**: m_k 0.330-0.336 trained against
   0.311-0.328 at initialization, debiased CKA 0.234-0.245 against 0.205-0.261 (reported, not judged).
4. ``tracks_accuracy``: each network's mean m_k to the networks of the other architectures, against its test
   accuracy: Spearman ρ > 0 with the 95% bootstrap interval (networks resampled, ``bootstrap`` times)
   excluding 0, judged as the fraction of bootstrap replicates with ρ > 0 ≥ 0.975. Measured ρ = 0.83
   [0.22, 1.0], 0.98 [0.82, 1.0], 0.88 [0.52, 1.0]; fractions 0.992, 1.0, 1.0 (the narrowest margin of the
   law: 9 networks). **Width confounds it**: at initialization the same statistic already correlates with
   the accuracy the network will reach (ρ = 0.50, 0.57, 0.44, reported): wider networks are both more
   accurate and, even untrained, more alike. The verdict is Huh et al.'s claim as they test it, not a proof
   that competence causes alignment.

Metric agreement (reported, not judged: which metric to trust is open, the learning-mechanics open
direction 10): for every pair of networks (36, same architecture or not), linear CKA,
debiased CKA, m_k, the angular Procrustes distance (Williams et al. 2021, arXiv 2110.14739; negated, so that
higher is more similar) and SVCCA (Raghu et al. 2017, arXiv 1706.05806, 99% of the variance) of the penultimate
representations; the Spearman rank correlation of every two metrics over the pairs. Measured at seed 0:
linear and debiased CKA 1.00 (penultimate layers of at most 32 features against n = 500: no bias to correct),
CKA-Procrustes 0.92, CKA-m_k 0.59, CKA-SVCCA 0.52, m_k-Procrustes 0.62, m_k-SVCCA 0.54: the metrics agree on
the broad order of the pairs but not on its details (seeds 1 and 2: CKA-Procrustes 0.96-0.98, CKA-m_k
0.60-0.70, CKA-SVCCA 0.53-0.62, m_k-Procrustes 0.68-0.75, m_k-SVCCA 0.57-0.63): the two CKAs and Procrustes
form one family (global, second-order geometry), m_k (local neighbourhoods) and SVCCA (invariant to any
invertible map of the top subspace) each order the pairs their own way.

Where it fails (perturbation counterexamples, seeds 0, 1, 2): the pairs with the CNNs measured at their
initialization (``beats_init`` margin 0; ``beats_labels`` falls to −0.02 to −0.01 too); the pairs with the
transformers measured with their examples shuffled (``beats_init`` −0.06, ``beats_permutation`` 0,
``beats_labels`` −0.09 to −0.10); every pair measured with shuffled examples (``tracks_accuracy``: 0.655,
0.147, 0.124 of the bootstrap replicates with ρ > 0: the null alignment is noise around k/(n − 1)).

Cost (quick config): 7.0-7.3 s of CPU on one core for the measurement (training 4.5 s of it), 7.5-9.9 s
with the verdicts and the figure (the machine loaded). Full config (``default_config``: widths 8, 16, 32, 64;
400 steps; all 797 held-out digits): 38 s of CPU; at seed 0 every criterion holds (margins 0.144, 0.742,
0.123; ρ = 0.91 [0.59, 0.99]; accuracies 0.84-0.97), and the width confound is stronger (ρ at
initialization 0.75); debiased CKA 0.44 against the label control's 0.73.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmech.config import spec
from lmech.errors import BadInput
from lmech.experiments.base import Counterexample, Criterion, Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.registry import register

ARCHITECTURES = ("mlp", "cnn", "transformer")
#: the metrics of the agreement table (penultimate representations), in table order
AGREEMENT_METRICS = ("linear_cka", "debiased_cka", "mutual_knn", "procrustes", "svcca")
N_DIGITS = 1797
N_CLASSES = 10
INIT_MIN = 0.04
NULL_MIN = 0.1
LABEL_MIN = 0.04
BOOT_MIN = 0.975
LABEL_NOISE = 1e-3


@dataclass(frozen=True)
class AlignmentConfig(RunConfig):
    architectures: tuple[str, ...] = spec(ARCHITECTURES, "architectures compared (at least two)",
                                          choices=ARCHITECTURES)
    widths: tuple[int, ...] = spec((8, 16, 32), "width of every architecture (MLP units, CNN channels, "
                                   "transformer model dimension, even)", min=2, max=512)
    depth: int = spec(2, "hidden layers of the MLP and convolutions of the CNN", min=1, max=8)
    blocks: int = spec(1, "transformer blocks", min=1, max=8)
    steps: int = spec(120, "Adam steps of every network", min=1, max=10**5)
    batch_size: int = spec(64, "examples per minibatch", min=1, max=N_DIGITS)
    lr_mlp: float = spec(3e-3, "Adam learning rate of the MLPs", min=1e-6, max=1.0)
    lr_cnn: float = spec(2e-2, "Adam learning rate of the CNNs", min=1e-6, max=1.0)
    lr_transformer: float = spec(1e-2, "Adam learning rate of the transformers", min=1e-6, max=1.0)
    n_train: int = spec(1000, "digits trained on (the rest are held out)", min=100, max=N_DIGITS - 100)
    n_compare: int = spec(500, "held-out digits whose representations are compared", min=50, max=N_DIGITS - 100)
    k: int = spec(10, "neighbours of the mutual k-NN alignment (Huh et al.: 10)", min=1, max=100)
    bootstrap: int = spec(1000, "bootstrap replicates of the Spearman correlation", min=100, max=100000)
    keep_variance: float = spec(0.99, "SVCCA: fraction of each representation's variance kept", min=0.01, max=1.0)
    min_test_accuracy: float = spec(0.4, "held-out accuracy every network must reach for the criteria to be "
                                    "judged (chance 0.1)", min=0.0, max=1.0)

    def check(self) -> None:
        super().check()
        if len(set(self.architectures)) != len(self.architectures) or len(self.architectures) < 2:
            raise BadInput("architectures", self.architectures, "at least two distinct architectures")
        if len(set(self.widths)) != len(self.widths):
            raise BadInput("widths", self.widths, "distinct widths")
        if "transformer" in self.architectures and any(w % 2 for w in self.widths):
            raise BadInput("widths", self.widths, "even widths (the transformer has 2 heads)")
        if self.n_compare > N_DIGITS - self.n_train:
            raise BadInput("n_compare", self.n_compare, f"at most the {N_DIGITS - self.n_train} held-out digits")
        if self.batch_size > self.n_train:
            raise BadInput("batch_size", self.batch_size, f"at most n_train = {self.n_train}")
        if self.k > self.n_compare - 2:
            raise BadInput("k", self.k, f"at most n_compare − 2 = {self.n_compare - 2}")
        if max(self.widths) * 64 * self.n_compare * len(self.widths) * (self.depth + 1) * 2 > 2**29:
            raise BadInput("widths", self.widths, "fewer or narrower networks (features kept: widths · 64 · "
                           "n_compare · layers · 2 ≤ 2^29)")


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from ``parts`` (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0]) >> 1


def split_digits(config: AlignmentConfig):
    """(x_train, y_train, x_test, y_test): the standardized digits in a seeded random order."""
    from lmech.data.digits import digits

    x, y = digits(N_DIGITS, one_hot=False, dtype=torch.float32)
    order = torch.randperm(N_DIGITS, generator=torch.Generator().manual_seed(_seed(config.seed, 0)))
    tr, te = order[: config.n_train], order[config.n_train:]
    return x[tr], y[tr], x[te], y[te]


def build(arch: str, width: int, config: AlignmentConfig, seed: int) -> torch.nn.Module:
    """One network of the zoo compared: ``arch`` at ``width``."""
    if arch == "mlp":
        from lmech.models.mlp import mlp

        return mlp(64, width, config.depth, "relu", weight_std=math.sqrt(2.0), bias_std=0.0, parametrization="sp",
                   out_features=N_CLASSES, seed=seed)
    if arch == "cnn":
        from lmech.models.cnn import SmallCNN

        return SmallCNN(width=width, depth=config.depth, seed=seed)
    from lmech.models.patch_transformer import PatchTransformer

    return PatchTransformer(width=width, depth=config.blocks, n_head=2, seed=seed)


def layer_names(arch: str, config: AlignmentConfig) -> list[str]:
    """Names of the representations of :func:`representations`, the penultimate last."""
    if arch == "mlp":
        return [f"h{i + 1}" for i in range(config.depth)]
    if arch == "cnn":
        return [f"conv{i + 1}" for i in range(config.depth)] + ["pool"]
    return ["embed"] + [f"block{i + 1}" for i in range(config.blocks)] + ["pool"]


@torch.no_grad()
def representations(arch: str, model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The float64 representations (n, features) of ``model`` on ``x``, in :func:`layer_names` order."""
    if arch == "mlp":  # post-activation outputs: the odd entries of the MLP's layer sequence
        from lmech.instruments.features import capture_activations

        names = [f"layers.{2 * i + 1}" for i in range((len(model.layers) - 1) // 2)]
        acts = capture_activations(model, x, names)
        out = [acts[n] for n in names]
    elif arch == "cnn":
        h = model.act(model.input(x.reshape(x.shape[0], 1, 8, 8)))
        out = [h]
        for conv in model.hidden:
            h = model.act(conv(h))
            out.append(h)
        out.append(h.mean(dim=(2, 3)))
    else:
        from lmech.instruments.features import capture_activations

        names = ["embed"] + [f"blocks.{i}" for i in range(len(model.blocks))] + ["pool"]
        acts = capture_activations(model, x, names)
        out = [acts[n] for n in names]
    return [h.reshape(h.shape[0], -1).to(torch.float64) for h in out]


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, config: AlignmentConfig) -> float:
    """Minibatch Adam on cross-entropy (the same minibatches for every network); the final training loss."""
    import torch.nn.functional as F

    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    gen = torch.Generator().manual_seed(_seed(config.seed, 1))
    loss = torch.tensor(math.nan)
    model.train()
    for _ in range(config.steps):
        idx = torch.randint(0, x.shape[0], (config.batch_size,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


class Gram:
    r"""The statistics of one representation X (n, p) for the unbiased linear HSIC, computed once.

    :math:`\tilde K = XX^\top` with its diagonal zeroed, its row sums :math:`r = \tilde K\mathbf 1`, their sum
    :math:`s`; then for two representations (Song et al. 2012, the estimator :math:`\mathrm{HSIC}_1`; Nguyen
    et al. 2021, Eq. (3))

    .. math::
        \mathrm{HSIC}_1(K, L) = \frac{1}{n(n-3)}\Big[\langle\tilde K, \tilde L\rangle + \frac{s_K s_L}{(n-1)(n-2)}
        - \frac{2}{n-2} r_K\cdot r_L\Big],

    O(n²) per pair; a permutation π of L's examples is :math:`\tilde L_{\pi\pi}`, :math:`r_{L,\pi}`.
    """

    def __init__(self, X: torch.Tensor):
        X = X.to(torch.float64)
        X = X - X.mean(0)  # HSIC is translation invariant; centring improves round-off
        K = X @ X.T
        K.fill_diagonal_(0.0)
        self.K, self.r = K, K.sum(1)
        self.s = float(self.r.sum())
        self.n = X.shape[0]
        self.self_hsic = self.hsic(self)

    def permuted(self, perm: torch.Tensor) -> Gram:
        """The statistics of the same representation with its examples in the order ``perm``."""
        out = Gram.__new__(Gram)
        out.K, out.r, out.s, out.n, out.self_hsic = self.K[perm][:, perm], self.r[perm], self.s, self.n, self.self_hsic
        return out

    def hsic(self, other: Gram) -> float:
        n = self.n
        inner = torch.dot(self.K.reshape(-1), other.K.reshape(-1))
        val = inner + self.s * other.s / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (self.r @ other.r)
        return float(val) / (n * (n - 3))

    def cka(self, other: Gram) -> float:
        """Debiased linear CKA; nan when a self-HSIC is not positive."""
        den = self.self_hsic * other.self_hsic
        return self.hsic(other) / math.sqrt(den) if den > 0 else math.nan


def spearman(a, b) -> np.ndarray | float:
    """Spearman's ρ (Pearson correlation of average ranks) of the rows of ``a`` and ``b`` (or of two vectors);
    nan where either is constant."""
    from scipy.stats import rankdata

    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    num, den = (ra * rb).sum(1), np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(rho[0]) if rho.shape[0] == 1 else rho


def bootstrap_spearman(a: np.ndarray, b: np.ndarray, replicates: int, seed: int) -> np.ndarray:
    """ρ of ``replicates`` resamplings (with replacement) of the points (a_i, b_i)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, float), np.asarray(b, float)
    idx = rng.integers(0, len(a), size=(replicates, len(a)))
    return np.asarray(spearman(a[idx], b[idx]))


def neighbours(X: torch.Tensor, k: int) -> torch.Tensor:
    """The (n, n) boolean mask of each example's k nearest neighbours under cosine similarity (itself excluded):
    the neighbour sets of :func:`lmech.instruments.similarity.mutual_knn`, computed once per representation."""
    Z = X.to(torch.float64)
    Z = Z / torch.linalg.vector_norm(Z, dim=1, keepdim=True).clamp_min(torch.finfo(Z.dtype).tiny)
    Sim = Z @ Z.T
    Sim.fill_diagonal_(-math.inf)
    mask = torch.zeros(Sim.shape, dtype=torch.bool)
    mask.scatter_(1, Sim.topk(k, dim=1).indices, True)
    return mask


def knn_alignment(Na: torch.Tensor, Nb: torch.Tensor, k: int, perm: torch.Tensor | None = None) -> float:
    r"""Mutual k-NN alignment :math:`\frac1n\sum_i |N_a(i)\cap N_b(i)|/k` of two neighbour masks; with
    ``perm``, of ``Nb`` for b's examples in the order ``perm`` (example i of a paired with example perm[i] of b)."""
    if perm is not None:
        Nb = Nb[perm][:, perm]
    return float((Na & Nb).sum(1).double().mean() / k)


class Neighbours:
    """The neighbour masks of one representation: over all examples, and within each true class (k neighbours,
    or m − 2 in a class of only m ≤ k + 1 held-out examples; a class of fewer than 3 is left out)."""

    def __init__(self, X: torch.Tensor, labels: torch.Tensor, k: int):
        self.k = k
        self.all = neighbours(X, k)
        sizes = [int((labels == c).sum()) for c in range(N_CLASSES)]
        self.classes = {c: (neighbours(X[labels == c], min(k, m - 2)), min(k, m - 2))
                        for c, m in enumerate(sizes) if m >= 3}

    def align(self, other: Neighbours, perm: torch.Tensor | None = None) -> float:
        return knn_alignment(self.all, other.all, self.k, perm)

    def within(self, other: Neighbours) -> float:
        """Mean over classes of the alignment of the examples of one class (neighbours among that class)."""
        return float(np.mean([knn_alignment(na, other.classes[c][0], kc) for c, (na, kc) in self.classes.items()]))


def _defined(fn, *args, **kwargs) -> float:
    """``fn(*args)``, or nan where the similarity is undefined (a representation constant over the examples, e.g.
    a layer of dead ReLUs: the instruments refuse it instead of returning NaN)."""
    try:
        return float(fn(*args, **kwargs))
    except BadInput:
        return math.nan


def _within_class(fn, A: torch.Tensor, B: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the classes with at least 4 held-out examples of ``fn`` on that class's examples (classes where
    it is undefined left out)."""
    masks = [labels == c for c in range(N_CLASSES) if int((labels == c).sum()) >= 4]
    values = [_defined(fn, A[m], B[m]) for m in masks]
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def _noisy_one_hot(pred: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    onehot = torch.nn.functional.one_hot(pred, N_CLASSES).to(torch.float64)
    return onehot + LABEL_NOISE * torch.randn(onehot.shape, generator=gen, dtype=torch.float64)


def _agreement(values: pd.DataFrame) -> pd.DataFrame:
    """Spearman ρ between every two metrics over the network pairs (long format: metric_a, metric_b, rho)."""
    rows = []
    for ma in AGREEMENT_METRICS:
        for mb in AGREEMENT_METRICS:
            rows.append({"metric_a": ma, "metric_b": mb,
                         "rho": spearman(values[ma].to_numpy(), values[mb].to_numpy())})
    return pd.DataFrame(rows)


def _arch_pair(a: str, b: str) -> str:
    return f"{a}-{b}" if ARCHITECTURES.index(a) < ARCHITECTURES.index(b) else f"{b}-{a}"


def margins(pairs: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per architecture pair, the mean over its network pairs of each control's margin."""
    cross = pairs[pairs["cross"]]
    out = {}
    for key, t in cross.groupby("arch_pair", sort=False):
        out[key] = {"init": float((t["knn"] - t["knn_init"]).mean()),
                    "permutation": float((t["max_cka"] - t["max_cka_null"]).mean()),
                    "labels": float((t["knn"] - t["knn_label"]).mean())}
    return out


def network_alignment(pairs: pd.DataFrame, networks: pd.DataFrame, column: str = "knn") -> np.ndarray:
    """Each network's mean ``column`` over its pairs with networks of the other architectures."""
    cross = pairs[pairs["cross"]]
    return np.array([float(pd.concat([cross.loc[cross["net_a"] == i, column],
                                      cross.loc[cross["net_b"] == i, column]]).mean())
                     for i in networks["net"]])


@register
class RepresentationAlignment(Experiment):
    """Verdicts: cross-architecture alignment beats initialization, a permutation null and a label control, and
    grows with test accuracy (module docstring)."""

    name = "representation-alignment"
    law = ("Different architectures trained on the same data align their representations beyond what "
           "initialization, chance and the labels explain, and better networks align more.")
    citation = "Kornblith et al. 2019, arXiv 1905.00414 (Fig. 8); Huh et al. 2024, arXiv 2405.07987"
    Config = AlignmentConfig

    def default_config(self) -> AlignmentConfig:
        """Four widths trained longer, every held-out digit compared (cost: module docstring)."""
        return AlignmentConfig(widths=(8, 16, 32, 64), steps=400, n_compare=797)

    def quick_config(self) -> AlignmentConfig:
        return AlignmentConfig()

    def smoke_config(self) -> AlignmentConfig:
        return AlignmentConfig(widths=(4, 8), steps=10, n_compare=200, bootstrap=100, min_test_accuracy=0.0)

    def criteria(self) -> list[Criterion]:
        return [
            Criterion("beats_init", "min over architecture pairs of mean m_10(trained) − m_10(initialization), "
                      "penultimate representations", (INIT_MIN, 1.0),
                      why="0.04 is twice the chance alignment k/(n − 1) = 0.02: a gain the size of chance is not "
                          "counted; measured 0.088-0.115 (seeds 0-2), 0 with the CNNs at initialization"),
            Criterion("beats_permutation", "min over architecture pairs of mean max over layer pairs of debiased "
                      "CKA − the same max with one network's examples permuted", (NULL_MIN, 1.0),
                      why="the null's maximum over ~9 layer pairs of debiased CKA is 0.002 (n = 500); 0.1 is a "
                          "similarity no shuffled pair reaches; measured 0.645-0.687 (seeds 0-2)"),
            Criterion("beats_labels", "min over architecture pairs of mean m_10(trained) − m_10(one-hot predicted "
                      "labels)", (LABEL_MIN, 1.0),
                      why="the same 0.04 (twice chance) as against initialization; the label control is 0.10, "
                          "trained m_10 0.21; measured 0.096-0.100 (seeds 0-2)"),
            Criterion("tracks_accuracy", "fraction of bootstrap replicates (networks resampled) in which Spearman ρ "
                      "(mean cross-architecture m_10, test accuracy) > 0", (BOOT_MIN, 1.0),
                      why="ρ > 0 with its 95% bootstrap interval excluding 0 (the 2.5% quantile above 0)"),
        ]

    def counterexamples(self) -> list[Counterexample]:
        def replace(arch: str | None, source: str):
            def perturb(config, prediction, measurement):
                series = dict(measurement.series)
                pairs = series["pairs"].copy()
                rows = pairs["cross"] if arch is None else (pairs["arch_a"] == arch) | (pairs["arch_b"] == arch)
                for col in ("knn", "max_cka"):
                    pairs.loc[rows, col] = pairs.loc[rows, f"{col}_{source}"]
                series["pairs"] = pairs
                return Result(series=series, summary=dict(measurement.summary), arrays=dict(measurement.arrays))
            return perturb

        return [
            Counterexample(
                "CNNs at initialization", ("beats_init",), perturb=replace("cnn", "init"),
                why="the pairs with a CNN measured on the CNNs' representations before training: they align with "
                    "the others no more than at initialization (margin 0 for mlp-cnn and cnn-transformer)"),
            Counterexample(
                "transformers' examples shuffled", ("beats_init", "beats_permutation", "beats_labels"),
                perturb=replace("transformer", "null"),
                why="the pairs with a transformer measured with its examples in a random order: no example "
                    "corresponds, m_10 falls to k/(n − 1) = 0.02, below initialization and the label control, "
                    "and the maximum CKA to the null's"),
            Counterexample(
                "every network's examples shuffled", ("tracks_accuracy",), perturb=replace(None, "null"),
                why="every pair measured with shuffled examples: each network's alignment is noise around "
                    "k/(n − 1), unrelated to its accuracy (0.124-0.655 of the replicates with ρ > 0, seeds 0-2)"),
        ]

    # -- theory ------------------------------------------------------------------------------------
    def predict(self, config: AlignmentConfig) -> Result:
        return Result(summary={"chance_knn": config.k / (config.n_compare - 1), "init_margin": INIT_MIN,
                               "permutation_margin": NULL_MIN, "label_margin": LABEL_MIN})

    # -- experiment --------------------------------------------------------------------------------
    def measure(self, config: AlignmentConfig, progress: Progress | None = None) -> Result:
        from lmech.instruments import similarity as S

        progress = progress or NullProgress()
        x_train, y_train, x_test, y_test = split_digits(config)
        xc, yc = x_test[: config.n_compare], y_test[: config.n_compare]
        lrs = {"mlp": config.lr_mlp, "cnn": config.lr_cnn, "transformer": config.lr_transformer}
        nets = []
        progress.start(len(config.architectures) * len(config.widths) + 2, "training the networks")
        for arch in config.architectures:
            for width in config.widths:
                i = len(nets)
                model = build(arch, width, config, _seed(config.seed, 2, ARCHITECTURES.index(arch), width))
                init = representations(arch, model, xc)
                loss = train(model, x_train, y_train, lrs[arch], config)
                with torch.no_grad():
                    accuracy = float((model(x_test).argmax(1) == y_test).double().mean())
                    pred = model(xc).argmax(1)
                nets.append({"net": i, "arch": arch, "width": width, "test_accuracy": accuracy, "final_loss": loss,
                             "init": init, "trained": representations(arch, model, xc),
                             "label": _noisy_one_hot(pred, _seed(config.seed, 3, i))})
                progress.advance()
        losses = [n["final_loss"] for n in nets]
        if not all(math.isfinite(v) for v in losses):
            bad = [f"{n['arch']}{n['width']}" for n in nets if not math.isfinite(n["final_loss"])]
            return Result(series={"networks": pd.DataFrame({"network": bad})}, diverged_at=config.steps)

        grams = {(n["net"], state): [Gram(h) for h in n[state]] for n in nets for state in ("init", "trained")}
        knn = {(n["net"], state): Neighbours(n[state][-1] if state != "label" else n["label"], yc, config.k)
               for n in nets for state in ("init", "trained", "label")}
        gen = torch.Generator().manual_seed(_seed(config.seed, 4))
        pair_rows, cka_rows = [], []
        for a in nets:
            for b in nets:
                if b["net"] <= a["net"]:
                    continue
                cross = a["arch"] != b["arch"]
                pa, pb = a["trained"][-1], b["trained"][-1]
                row = {"net_a": a["net"], "net_b": b["net"], "arch_a": a["arch"], "arch_b": b["arch"],
                       "width_a": a["width"], "width_b": b["width"], "cross": cross,
                       "arch_pair": _arch_pair(a["arch"], b["arch"])}
                row.update(linear_cka=_defined(S.linear_cka, pa, pb), debiased_cka=_defined(S.debiased_cka, pa, pb),
                           mutual_knn=knn[(a["net"], "trained")].align(knn[(b["net"], "trained")]),
                           procrustes=-_defined(S.procrustes_distance, pa, pb),
                           svcca=_defined(S.svcca, pa, pb, keep_variance=config.keep_variance))
                if cross:
                    perm = torch.randperm(config.n_compare, generator=gen)
                    ka, kb = knn[(a["net"], "trained")], knn[(b["net"], "trained")]
                    ia, ib = knn[(a["net"], "init")], knn[(b["net"], "init")]
                    row.update(knn=ka.align(kb), knn_init=ia.align(ib), knn_null=ka.align(kb, perm),
                               knn_label=knn[(a["net"], "label")].align(knn[(b["net"], "label")]),
                               cka_label=_defined(S.debiased_cka, a["label"], b["label"]),
                               within_knn=ka.within(kb), within_knn_init=ia.within(ib),
                               within_cka=_within_class(S.debiased_cka, pa, pb, yc),
                               within_cka_init=_within_class(S.debiased_cka, a["init"][-1], b["init"][-1], yc))
                    best = {}
                    for state in ("trained", "init", "null"):
                        ga = grams[(a["net"], "init" if state == "init" else "trained")]
                        gb = grams[(b["net"], "init" if state == "init" else "trained")]
                        if state == "null":
                            gb = [h.permuted(perm) for h in gb]
                        values = []
                        for i, g in enumerate(ga):
                            for j, h in enumerate(gb):
                                v = g.cka(h)
                                values.append(v)
                                cka_rows.append((a["net"], b["net"], state, i, j, v))
                        best[state] = float(np.nanmax(values)) if np.isfinite(values).any() else math.nan
                    row.update(max_cka=best["trained"], max_cka_init=best["init"], max_cka_null=best["null"])
                pair_rows.append(row)
        progress.advance()
        pairs = pd.DataFrame(pair_rows)
        networks = pd.DataFrame([{k: n[k] for k in ("net", "arch", "width", "test_accuracy", "final_loss")}
                                 for n in nets])
        cka = pd.DataFrame(cka_rows, columns=["net_a", "net_b", "state", "layer_a", "layer_b", "value"])
        agreement = _agreement(pairs)
        progress.advance()
        return Result(series={"networks": networks, "pairs": pairs, "cka": cka, "agreement": agreement},
                      summary={"min_test_accuracy": float(networks["test_accuracy"].min()),
                               "max_test_accuracy": float(networks["test_accuracy"].max())})

    # -- verdict -----------------------------------------------------------------------------------
    def verdict(self, config: AlignmentConfig, prediction: Result, measurement: Result):
        pairs, networks = measurement.series["pairs"], measurement.series["networks"]
        worst = float(networks["test_accuracy"].min())
        untrained = (f"a network reached only {worst:.3f} held-out accuracy (< {config.min_test_accuracy:g}): the "
                     "networks are not trained" if worst < config.min_test_accuracy else None)
        m = margins(pairs)
        cross = pairs[pairs["cross"]]
        means = {c: float(cross[c].mean()) for c in ("knn", "knn_init", "knn_null", "knn_label", "max_cka",
                                                      "max_cka_init", "max_cka_null", "debiased_cka", "cka_label",
                                                      "within_knn", "within_knn_init", "within_cka",
                                                      "within_cka_init")}
        agreement = measurement.series.get("agreement")
        table = ({f"{r.metric_a} vs {r.metric_b}": r.rho for r in agreement.itertuples() if
                  AGREEMENT_METRICS.index(r.metric_a) < AGREEMENT_METRICS.index(r.metric_b)}
                 if agreement is not None else {})
        details = dict(margins=m, means=means, chance_knn=config.k / (config.n_compare - 1), min_test_accuracy=worst,
                       metric_agreement=table)
        verdicts = []
        for key, control, what in (("beats_init", "init", "m_10 trained − at initialization"),
                                   ("beats_permutation", "permutation", "max CKA − permutation null's max"),
                                   ("beats_labels", "labels", "m_10 trained − label control")):
            values = {p: v[control] for p, v in m.items()}
            low = min(values.values()) if values else math.nan
            verdicts.append(self.make_verdict(key, f"min over architecture pairs: {what}", "> 0", values, low,
                                              inconclusive=untrained, **details))
        acc = networks["test_accuracy"].to_numpy()
        align = network_alignment(pairs, networks)
        rho = spearman(align, acc)
        boot = bootstrap_spearman(align, acc, config.bootstrap, _seed(config.seed, 5))
        frac = float(np.mean(np.nan_to_num(boot, nan=-1.0) > 0))
        lo, hi = (float(q) for q in np.nanquantile(boot, [0.025, 0.975])) if np.isfinite(boot).any() else (math.nan,) * 2
        rho_init = spearman(network_alignment(pairs, networks, "knn_init"), acc)
        few = (f"only {len(networks)} networks: a rank correlation needs at least 5" if len(networks) < 5 else None)
        verdicts.append(self.make_verdict(
            "tracks_accuracy", "fraction of bootstrap replicates with Spearman ρ(alignment, accuracy) > 0",
            "ρ > 0, 95% interval excluding 0", {"rho": rho, "interval": [lo, hi]}, frac,
            inconclusive=untrained or few, rho=rho, interval=[lo, hi], rho_at_initialization=rho_init,
            alignment=align.tolist(), test_accuracy=acc.tolist()))
        return verdicts

    # -- figures -----------------------------------------------------------------------------------
    def figures(self, config: AlignmentConfig, prediction: Result, measurement: Result, outdir: Path):
        from lmech.report import plotting as P

        path = outdir / "representation-alignment.png"
        if "pairs" not in measurement.series:  # diverged
            fig, axes = P.panels(1, ncols=1)
            axes[0].set(title="a network diverged: " + ", ".join(measurement.series["networks"]["network"]))
            return [P.save(fig, path)]
        pairs, networks = measurement.series["pairs"], measurement.series["networks"]
        cka = measurement.series["cka"]
        archs = list(config.architectures)
        arch_pairs = [(a, b) for i, a in enumerate(archs) for b in archs[i + 1:]]
        widest = {a: int(networks[networks["arch"] == a]["net"].iloc[-1]) for a in archs}
        fig, axes = P.panels(len(arch_pairs) + 3, ncols=3, size=(4.6, 3.9))
        for ax, (a, b) in zip(axes, arch_pairs):
            na, nb = sorted((widest[a], widest[b]))
            t = cka[(cka["net_a"] == na) & (cka["net_b"] == nb) & (cka["state"] == "trained")]
            M = t.pivot(index="layer_a", columns="layer_b", values="value").to_numpy()
            la = layer_names(networks.loc[na, "arch"], config)
            lb = layer_names(networks.loc[nb, "arch"], config)
            im = ax.imshow(M, cmap="magma", origin="lower", vmin=0, vmax=1)
            ax.set_xticks(range(len(lb)))
            ax.set_xticklabels(lb, fontsize=7)
            ax.set_yticks(range(len(la)))
            ax.set_yticklabels(la, fontsize=7)
            ax.set(xlabel=f"{networks.loc[nb, 'arch']} (width {networks.loc[nb, 'width']})",
                   ylabel=f"{networks.loc[na, 'arch']} (width {networks.loc[na, 'width']})",
                   title="debiased CKA, trained")
            fig.colorbar(im, ax=ax, fraction=0.046)
        # alignment vs accuracy, with the controls
        ax = axes[len(arch_pairs)]
        acc = networks["test_accuracy"].to_numpy()
        for column, label, style in (("knn", "trained", "o"), ("knn_init", "at initialization", "s"),
                                     ("knn_label", "label control", "^"), ("knn_null", "examples shuffled", "x")):
            ax.plot(acc, network_alignment(pairs, networks, column), style, label=label, alpha=0.85)
        ax.set(xlabel="test accuracy", ylabel="mean m_10 to other architectures",
               title="alignment vs accuracy (penultimate)")
        ax.legend(fontsize=7, frameon=False)
        # the controls per architecture pair
        ax = axes[len(arch_pairs) + 1]
        cross = pairs[pairs["cross"]]
        keys = list(dict.fromkeys(cross["arch_pair"]))
        pos = np.arange(len(keys))
        for off, (column, label) in zip((-0.3, -0.1, 0.1, 0.3), (("knn", "m_10 trained"), ("knn_init", "at init"),
                                                                ("knn_label", "labels"), ("knn_null", "shuffled"))):
            ax.bar(pos + off, [cross[cross["arch_pair"] == k][column].mean() for k in keys], width=0.2, label=label)
        ax.set_xticks(pos)
        ax.set_xticklabels(keys, fontsize=7)
        ax.set(ylabel="mean m_10", title="alignment and its controls")
        ax.legend(fontsize=7, frameon=False)
        # metric agreement
        ax = axes[len(arch_pairs) + 2]
        ag = measurement.series["agreement"].pivot(index="metric_a", columns="metric_b", values="rho")
        ag = ag.loc[list(AGREEMENT_METRICS), list(AGREEMENT_METRICS)]
        im = ax.imshow(ag.to_numpy(), cmap="coolwarm", vmin=-1, vmax=1)
        short = ["CKA", "dCKA", "m_10", "−Procr.", "SVCCA"]
        ax.set_xticks(range(len(short)))
        ax.set_xticklabels(short, fontsize=7)
        ax.set_yticks(range(len(short)))
        ax.set_yticklabels(short, fontsize=7)
        for i in range(len(short)):
            for j in range(len(short)):
                ax.text(j, i, f"{ag.to_numpy()[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
        ax.set(title="metric agreement: Spearman ρ over network pairs")
        fig.colorbar(im, ax=ax, fraction=0.046)
        return [P.save(fig, path)]
