r"""Representation similarity: how alike are two sets of features of the same ``n`` examples.

``X`` is ``(n, p)`` and ``Y`` is ``(n, q)`` (rows = the same examples; higher dimensions, e.g. conv
feature maps, are flattened). Every measure is computed in float64. What has no similarity is refused
with a :class:`~lmech.errors.BadInput` naming it, never answered with NaN: ``X`` and ``Y`` with different
numbers of rows (examples), NaN or inf features, a representation that is the same for every example; in
:func:`compare`, a named layer whose forward hook never fires.

* :func:`linear_cka`, :func:`rbf_cka`, :func:`kernel_cka`: centred kernel alignment (Kornblith et al.
  2019, arXiv 1905.00414, Eqs. (1)-(3));
* :func:`debiased_cka`, :func:`hsic`: with the unbiased HSIC estimator of Song et al. 2012 (JMLR 13),
  as used by Nguyen, Raghu & Kornblith 2021 (arXiv 2010.15327, Eq. (3));
* :func:`mutual_knn`: mutual nearest-neighbour alignment (Huh et al. 2024, arXiv 2405.07987);
* :func:`procrustes_distance`: the orthogonal Procrustes shape metric (Williams et al. 2021,
  arXiv 2110.14739), angular or Euclidean;
* :func:`svcca`, :func:`canonical_correlations`: SVCCA (Raghu et al. 2017, arXiv 1706.05806);
* :func:`compare`: the layer-by-layer similarity matrix of two models, through forward hooks.

No measure forms an ``n x n`` matrix: linear and debiased CKA, Procrustes and SVCCA work in feature
space (``p x q`` products, thin SVDs), RBF CKA and mutual k-NN on blocks of rows of the kernel /
similarity matrix (about 32 MiB at a time): at ``n = 10,000`` examples of width 512 each takes at most
a few CPU seconds and under 300 MiB of peak memory (RSS growth), the float64 copies of the inputs included
(``benchmarks/cka.py``, BENCHMARKS.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments.features import capture_activations

__all__ = [
    "linear_cka",
    "rbf_cka",
    "kernel_cka",
    "debiased_cka",
    "hsic",
    "mutual_knn",
    "procrustes_distance",
    "svcca",
    "canonical_correlations",
    "compare",
    "METRICS",
]


# --------------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------------


def _matrix(name: str, X: Any, min_rows: int = 2) -> Tensor:
    if not isinstance(X, Tensor):
        try:
            X = torch.as_tensor(X)
        except (TypeError, ValueError, RuntimeError):
            raise BadInput(name, type(X).__name__, "a tensor or array (n, p)") from None
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim < 1 or X.shape[0] < min_rows or X[0].numel() == 0:
        raise BadInput(name, tuple(X.shape), f"a feature matrix (n, p) with n >= {min_rows} and p >= 1")
    X = X.detach().reshape(X.shape[0], -1).to(torch.float64, copy=True)  # private: centred in place
    if not torch.isfinite(X).all():
        bad = int((~torch.isfinite(X)).any(1).sum())
        raise BadInput(name, f"{bad} of {X.shape[0]} rows with NaN or inf", "finite features")
    return X


def _varies(name: str, X: Tensor) -> Tensor:
    """``X`` unchanged, or a :class:`BadInput` when every row equals the first (exactly, before centring).

    A constant representation has zero centred variance: every similarity to it is 0/0. It is named here,
    instead of returning NaN (or, after round-off in the centring, a meaningless number).
    """
    if bool((X == X[:1]).all()):
        raise BadInput(name, f"{tuple(X.shape)} features, the same for every example",
                       "a representation that varies over the examples (a constant one has no similarity)")
    return X


def _pair(X: Any, Y: Any, min_rows: int = 2) -> tuple[Tensor, Tensor]:
    """Both feature matrices, checked: finite, the same number of rows (examples), not constant."""
    X, Y = _matrix("X", X, min_rows), _matrix("Y", Y, min_rows)
    if X.shape[0] != Y.shape[0]:
        raise BadInput("Y", f"{Y.shape[0]} examples (shape {tuple(Y.shape)})",
                       f"as many rows (examples) as X, {X.shape[0]}: the rows must be the same examples")
    return _varies("X", X), _varies("Y", Y)


def _centre(X: Tensor) -> Tensor:
    """Subtract the column means in place (``X`` is a private float64 copy made by :func:`_matrix`)."""
    return X.sub_(X.mean(0, keepdim=True))


def _ratio(num: Tensor, den: Tensor) -> float:
    """``num / den`` as a float (``den > 0``: constant representations are refused by :func:`_pair`)."""
    return float(num / den) if den > 0 else math.nan


def _double_centre(K: Tensor) -> Tensor:
    return K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()


# --------------------------------------------------------------------------------------------------
# CKA
# --------------------------------------------------------------------------------------------------


def linear_cka(X: Tensor, Y: Tensor) -> float:
    r"""Linear CKA :math:`\|Y_c^\top X_c\|_F^2 / (\|X_c^\top X_c\|_F \|Y_c^\top Y_c\|_F)` of centred features.

    Kornblith et al. 2019 (arXiv 1905.00414): CKA (Eq. (3)) with linear kernels, written in feature
    space through the identity
    :math:`\langle \mathrm{vec}(XX^\top), \mathrm{vec}(YY^\top)\rangle = \|Y^\top X\|_F^2` (Eq. (1)), so no :math:`n \times n` matrix is formed when :math:`n > p + q` (otherwise the cheaper
    Gram form is used). Invariant to orthogonal maps and isotropic scaling of either representation,
    not to general invertible linear maps.

    Raises:
        BadInput: different numbers of rows (examples); NaN or inf; a representation that is the same for
            every example (its similarity to anything is 0/0).
    """
    X, Y = _pair(X, Y)
    X, Y = _centre(X), _centre(Y)
    if X.shape[0] >= X.shape[1] + Y.shape[1]:
        num = torch.linalg.matrix_norm(Y.T @ X) ** 2
        den = torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y)
    else:
        K, L = X @ X.T, Y @ Y.T
        num = (K * L).sum()
        den = torch.linalg.matrix_norm(K) * torch.linalg.matrix_norm(L)
    return _ratio(num, den)


def kernel_cka(K: Tensor, L: Tensor, *, debiased: bool = False) -> float:
    r"""CKA of two ``(n, n)`` Gram matrices, :math:`\mathrm{HSIC}(K,L)/\sqrt{\mathrm{HSIC}(K,K)\mathrm{HSIC}(L,L)}`.

    Kornblith et al. 2019 (arXiv 1905.00414), Eq. (3), with the biased HSIC of their Eq. (2), or with
    the unbiased estimator (:func:`hsic` with ``unbiased=True``) when ``debiased=True``.
    """
    K, L = _gram("K", K), _gram("L", L)
    if K.shape != L.shape:
        raise BadInput("L", tuple(L.shape), f"the shape of K, {tuple(K.shape)}")
    kl, kk, ll = hsic(K, L, unbiased=debiased), hsic(K, K, unbiased=debiased), hsic(L, L, unbiased=debiased)
    for name, self_hsic in (("K", kk), ("L", ll)):
        if not self_hsic > 0:
            raise BadInput(name, f"{'unbiased ' if debiased else ''}HSIC({name}, {name}) = {self_hsic:.3g}",
                           "a Gram matrix whose self-HSIC is positive (not a constant representation"
                           + ("; with the unbiased estimator, enough examples" if debiased else "") + ")")
    return kl / math.sqrt(kk * ll)


def _gram(name: str, K: Any) -> Tensor:
    if not isinstance(K, Tensor):
        try:
            K = torch.as_tensor(K)
        except (TypeError, ValueError, RuntimeError):
            raise BadInput(name, type(K).__name__, "a square (n, n) Gram matrix") from None
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] < 2:
        raise BadInput(name, tuple(K.shape), "a square (n, n) Gram matrix with n >= 2")
    return K.detach().to(torch.float64)


def hsic(K: Tensor, L: Tensor, *, unbiased: bool = False) -> float:
    r"""Hilbert-Schmidt independence criterion of two ``(n, n)`` Gram matrices.

    Biased (Gretton et al. 2005; Kornblith et al. 2019, Eq. (2)): :math:`\mathrm{tr}(KHLH)/(n-1)^2`,
    :math:`H = I - \frac1n \mathbf{1}\mathbf{1}^\top`.

    Unbiased (Song et al. 2012, JMLR 13, the estimator :math:`\mathrm{HSIC}_1`; Nguyen et al. 2021,
    Eq. (3)), with :math:`\tilde K, \tilde L` the Gram matrices with zeroed diagonals, :math:`n \ge 4`:

    .. math::
        \frac{1}{n(n-3)}\Big[\mathrm{tr}(\tilde K \tilde L)
        + \frac{\mathbf{1}^\top\tilde K\mathbf{1}\,\mathbf{1}^\top\tilde L\mathbf{1}}{(n-1)(n-2)}
        - \frac{2}{n-2}\mathbf{1}^\top\tilde K\tilde L\mathbf{1}\Big].
    """
    K, L = _gram("K", K), _gram("L", L)
    n = K.shape[0]
    if L.shape != K.shape:
        raise BadInput("L", tuple(L.shape), f"the shape of K, {tuple(K.shape)}")
    if not unbiased:
        # <HKH, HLH> = tr(KHLH); centring both avoids cancelling the large constant part of L
        return float((_double_centre(K) * _double_centre(L)).sum() / (n - 1) ** 2)
    if n < 4:
        raise BadInput("K", tuple(K.shape), "n >= 4 examples for the unbiased HSIC estimator")
    Kt, Lt = K - torch.diag(torch.diag(K)), L - torch.diag(torch.diag(L))
    k1, l1 = Kt.sum(1), Lt.sum(1)
    val = (Kt * Lt).sum() + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 @ l1)
    return float(val / (n * (n - 3)))


def _unbiased_linear_hsic(X: Tensor, Y: Tensor) -> Tensor:
    r"""Unbiased HSIC of the linear kernels :math:`XX^\top, YY^\top` without forming them.

    With :math:`k_i = \|x_i\|^2`, :math:`s_X = X^\top\mathbf 1`:
    :math:`\mathrm{tr}(\tilde K\tilde L) = \|Y^\top X\|_F^2 - k\cdot l`,
    :math:`\mathbf 1^\top\tilde K\mathbf 1 = \|s_X\|^2 - \sum_i k_i`, :math:`\tilde K\mathbf 1 = X s_X - k`.
    """
    n = X.shape[0]
    k, l = (X * X).sum(1), (Y * Y).sum(1)
    sx, sy = X.sum(0), Y.sum(0)
    tr = torch.linalg.matrix_norm(Y.T @ X) ** 2 - k @ l
    k1, l1 = X @ sx - k, Y @ sy - l
    val = tr + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 @ l1)
    return val / (n * (n - 3))


def debiased_cka(X: Tensor, Y: Tensor) -> float:
    r"""Debiased linear CKA: CKA with the unbiased HSIC estimator of Song et al. 2012 (JMLR 13).

    As used by Nguyen, Raghu & Kornblith 2021 (arXiv 2010.15327, Eq. (3)): unlike :func:`linear_cka`,
    whose estimate is biased upwards when :math:`p` is not small against :math:`n`, it is close to 0 for
    independent representations. Computed in feature space (no :math:`n \times n` matrix), ``n >= 4``.
    Can be slightly negative.

    Raises:
        BadInput: as :func:`linear_cka`; also when an unbiased self-HSIC estimate is not positive (it
            estimates :math:`\|\Sigma_{XX}\|_F^2 > 0`, but can fall to or below 0 with very few examples).
    """
    X, Y = _pair(X, Y, min_rows=4)
    X, Y = _centre(X), _centre(Y)  # HSIC is translation invariant; centring improves round-off
    kl, kk, ll = _unbiased_linear_hsic(X, Y), _unbiased_linear_hsic(X, X), _unbiased_linear_hsic(Y, Y)
    for name, self_hsic in (("X", kk), ("Y", ll)):
        if not self_hsic > 0:
            raise BadInput(name, f"unbiased HSIC({name}, {name}) = {float(self_hsic):.3g} on n = {X.shape[0]}",
                           "a positive self-HSIC: more examples for the debiased estimator, or linear_cka")
    return float(kl / torch.sqrt(kk * ll))


#: float64 bytes of the kernel / similarity blocks held at once by the blocked metrics (rbf_cka,
#: mutual_knn, and compare with them): 32 MiB, i.e. about 400 rows of an n = 10,000 kernel
_BLOCK_BYTES = 32 * 2**20
#: the median-distance bandwidth of rbf_cka is the median over all pairs of at most this many examples
MEDIAN_SAMPLE = 2000


def _block_rows(n: int, block: int | None, kernels: int = 1) -> int:
    """Rows per block: ``block``, or as many as keep ``kernels`` float64 blocks of width ``n`` in
    :data:`_BLOCK_BYTES`."""
    if block is None:
        return max(1, min(n, _BLOCK_BYTES // (8 * n * kernels)))
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise BadInput("block", block, "None (automatic) or a positive number of rows per block")
    return min(block, n)


class _RBFKernel:
    r"""The shifted Gaussian kernel :math:`K - \mathbf 1\mathbf 1^\top`, one block of rows at a time.

    ``X`` (a private float64 copy) is centred (distances do not change) and
    :math:`K_{ij} - 1 = \mathrm{expm1}(-d_{ij}^2/2\sigma^2)` with
    :math:`d_{ij}^2 = \|x_i\|^2 + \|x_j\|^2 - 2x_i\cdot x_j` (one GEMM per block). The shift by the
    constant 1 leaves every centred statistic unchanged (:math:`H\mathbf 1 = 0`) and, through ``expm1``,
    keeps full relative precision when the bandwidth is large and :math:`K` is close to the constant 1.

    Bandwidth: :math:`\sigma^2 = \texttt{sigma\_frac}^2\,\mathrm{median}_{i<j} d_{ij}^2` (the lower
    middle value for an even count), over all pairs when ``n <= median_sample`` (or it is ``None``),
    otherwise over all pairs of a fixed random subset of ``median_sample`` examples (generator seed 0:
    deterministic, independent of the block size). A zero median (most pairs identical) falls back to the
    largest of those distances, then to the mean squared distance over all pairs :math:`2\sum_i\|x_i -
    \bar x\|^2/(n-1)`.
    """

    def __init__(self, X: Tensor, sigma_frac: float, median_sample: int | None) -> None:
        self.Z = _centre(X)
        self.sq = (self.Z * self.Z).sum(1)
        n = self.Z.shape[0]
        if median_sample is None or n <= median_sample:
            idx = slice(None)
        else:
            idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:median_sample]
        S, s2 = self.Z[idx], self.sq[idx]
        d2 = (s2[:, None] + s2[None, :] - 2.0 * (S @ S.T)).clamp_min_(0.0)
        pairs = d2[torch.ones_like(d2, dtype=torch.bool).triu_(1)]
        del d2
        med = pairs.median()
        if not med > 0:
            med = pairs.max()
        if not med > 0:
            med = 2.0 * self.sq.sum() / (n - 1)
        self.scale = 1.0 / (2.0 * sigma_frac**2 * float(med))

    def block(self, start: int, stop: int, rows: int) -> Tensor:
        """Rows ``start:stop`` of :math:`K - 1`, shape ``(stop - start, n)``, float64, computed in place in
        a buffer of ``rows`` rows reused from block to block (valid until the next call)."""
        n = self.Z.shape[0]
        if getattr(self, "_buf", None) is None or self._buf.shape[0] < rows:
            self._buf = torch.empty(rows, n, dtype=torch.float64)
        # -d_ij^2 / 2 sigma^2 = scale (2 x_i.x_j - |x_j|^2) - scale |x_i|^2, one GEMM and one pass
        s = self.scale
        B = torch.addmm(self.sq[None, :], self.Z[start:stop], self.Z.T, beta=-s, alpha=2.0 * s,
                        out=self._buf[: stop - start])
        B.sub_(self.sq[start:stop, None], alpha=s).clamp_max_(0.0)
        rows = torch.arange(stop - start)
        B[rows, rows + start] = 0.0  # d_ii = 0 exactly (round-off in the Gram formula otherwise)
        return B.expm1_()


def _blocked_cka(kernels_a: Sequence[Any], kernels_b: Sequence[Any], n: int, block: int | None) -> Tensor:
    r"""CKA of every kernel of ``kernels_a`` with every kernel of ``kernels_b``, rows of blocks at a time.

    With :math:`k = K\mathbf 1`, :math:`l = L\mathbf 1` the row sums,
    :math:`\mathrm{tr}(KHLH) = \sum_{ij}K_{ij}L_{ij} - \frac2n k\cdot l + \frac1{n^2}(\mathbf 1^\top k)
    (\mathbf 1^\top l)`, whose three terms are sums over rows: each block of rows of every kernel is
    computed once, contributes its Frobenius products with the others and its row sums, and is dropped.
    The :math:`(n-1)^{-2}` of the HSIC cancels in CKA. Memory: one block per kernel; time: one
    :math:`n \times n` kernel per representation, not per pair.
    """
    kernels = list(kernels_a) + list(kernels_b)
    na = len(kernels_a)
    rows = _block_rows(n, block, len(kernels))
    sums = torch.zeros(len(kernels), n, dtype=torch.float64)
    frob_self = torch.zeros(len(kernels), dtype=torch.float64)
    frob_cross = torch.zeros(na, len(kernels_b), dtype=torch.float64)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        blocks = [kern.block(start, stop, rows).reshape(-1) for kern in kernels]
        for i, b in enumerate(blocks):
            sums[i, start:stop] = b.view(stop - start, n).sum(1)
            frob_self[i] += b @ b
        for i in range(na):
            for j in range(len(kernels_b)):
                frob_cross[i, j] += blocks[i] @ blocks[na + j]
        del blocks
    tot = sums.sum(1)

    def centred(frob: Tensor, i: int, j: int) -> Tensor:
        return frob - 2.0 / n * (sums[i] @ sums[j]) + tot[i] * tot[j] / n**2

    self_hsic = torch.stack([centred(frob_self[i], i, i) for i in range(len(kernels))])
    for i, h in enumerate(self_hsic):
        if not h > 0:
            side, idx = ("X", i) if i < na else ("Y", i - na)
            raise BadInput(side if len(kernels) == 2 else f"{side}[{idx}]", f"HSIC of its kernel with itself = {float(h):.3g}",
                           "a kernel whose centred Gram matrix is not zero (not a constant representation)")
    out = torch.empty(na, len(kernels_b), dtype=torch.float64)
    for i in range(na):
        for j in range(len(kernels_b)):
            out[i, j] = centred(frob_cross[i, j], i, na + j) / torch.sqrt(self_hsic[i] * self_hsic[na + j])
    return out


def _check_sigma(sigma_frac: Any, median_sample: Any) -> None:
    if isinstance(sigma_frac, bool) or not isinstance(sigma_frac, (int, float)) or not sigma_frac > 0:
        raise BadInput("sigma_frac", sigma_frac, "a positive number (fraction of the median distance)")
    if median_sample is not None and (
        isinstance(median_sample, bool) or not isinstance(median_sample, int) or median_sample < 2
    ):
        raise BadInput("median_sample", median_sample, "None (all pairs) or an integer >= 2")


def rbf_cka(
    X: Tensor,
    Y: Tensor,
    *,
    sigma_frac: float = 0.8,
    median_sample: int | None = MEDIAN_SAMPLE,
    block: int | None = None,
) -> float:
    r"""CKA with Gaussian (RBF) kernels :math:`K_{ij} = \exp(-\|x_i - x_j\|^2 / (2\sigma^2))`.

    Kornblith et al. 2019 (arXiv 1905.00414), Eq. (3) with their RBF kernel choice: the bandwidth is a
    fraction of the median distance between examples, :math:`\sigma^2 = \texttt{sigma\_frac}^2 \cdot
    \mathrm{median}_{i<j}\|x_i-x_j\|^2`, chosen separately for ``X`` and ``Y``; the median is over all
    pairs when ``n <= median_sample`` (default 2000) and otherwise over all pairs of a fixed random
    subset of ``median_sample`` examples (seed 0; ``None``: all pairs, :math:`O(n^2)` memory). As
    ``sigma_frac -> inf`` the centred RBF Gram tends to :math:`HXX^\top H/\sigma^2` and RBF CKA tends to
    :func:`linear_cka`.

    Blocked: no :math:`n \times n` matrix is stored. The centred HSIC is
    :math:`\mathrm{tr}(KHLH) = \sum_{ij}K_{ij}L_{ij} - \frac2n\sum_i k_i l_i + \frac{1}{n^2}\sum_i k_i
    \sum_j l_j` (:math:`k = K\mathbf 1`), accumulated over blocks of ``block`` rows (``None``: about
    32 MiB of kernel rows at a time); time :math:`O(n^2 (p + q))`, memory :math:`O(n (p + q) +
    \texttt{block}\cdot n)`. Changing ``block`` only reorders float64 sums.

    Raises:
        BadInput: as :func:`linear_cka`; a non-positive ``sigma_frac``, a bad ``median_sample`` or ``block``.
    """
    _check_sigma(sigma_frac, median_sample)
    X, Y = _pair(X, Y)
    _block_rows(X.shape[0], block)
    kx, ky = _RBFKernel(X, sigma_frac, median_sample), _RBFKernel(Y, sigma_frac, median_sample)
    return float(_blocked_cka([kx], [ky], X.shape[0], block)[0, 0])


# --------------------------------------------------------------------------------------------------
# neighbours, shapes, canonical correlations
# --------------------------------------------------------------------------------------------------


def _check_k(k: Any, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n - 2:
        raise BadInput("k", k, f"an integer in [1, n - 2] = [1, {n - 2}]")


def _knn_indices(Z: Tensor, k: int, block: int | None) -> Tensor:
    """``(n, k)`` indices of each row's ``k`` nearest other rows by cosine similarity, blocks of rows at a
    time (each block: one GEMM against all rows, the diagonal masked, :func:`torch.topk`)."""
    n = Z.shape[0]  # Z: a private float64 copy (from _matrix), normalised in place
    Z = Z.div_(torch.linalg.vector_norm(Z, dim=1, keepdim=True).clamp_min(torch.finfo(Z.dtype).tiny))
    rows = _block_rows(n, block)
    out = torch.empty(n, k, dtype=torch.long)
    buf = torch.empty(rows, n, dtype=Z.dtype)  # reused from block to block
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        S = torch.matmul(Z[start:stop], Z.T, out=buf[: stop - start])
        r = torch.arange(stop - start)
        S[r, r + start] = -math.inf
        out[start:stop] = S.topk(k, dim=1).indices
    return out


def _knn_overlap(nx: Tensor, ny: Tensor) -> float:
    """Mean over rows of :math:`|N^X(i) \\cap N^Y(i)|/k` (indices within a row are distinct)."""
    n, k = nx.shape
    hits = 0
    for start in range(0, n, 4096):  # (rows, k, k) comparisons: 4096 * k^2 booleans at a time
        hits += int((nx[start : start + 4096, :, None] == ny[start : start + 4096, None, :]).sum())
    return hits / (n * k)


def mutual_knn(X: Tensor, Y: Tensor, *, k: int = 10, block: int | None = None) -> float:
    r"""Mutual k-nearest-neighbour alignment :math:`\frac1n\sum_i |N_k^X(i) \cap N_k^Y(i)| / k`.

    Huh et al. 2024, "The Platonic Representation Hypothesis" (arXiv 2405.07987):
    :math:`N_k^X(i)` are the :math:`k` nearest neighbours of example :math:`i` (itself excluded) under
    cosine similarity of the rows of ``X``. For independent representations the expected value is
    :math:`k/(n-1)` (each neighbour set is a uniformly random :math:`k`-subset of the other :math:`n-1`
    examples); identical neighbourhoods give 1.

    Blocked: the cosine similarities of ``block`` rows (``None``: about 32 MiB of them) against all rows
    are computed in float64, the top ``k`` of each row kept (:func:`torch.topk`), the block dropped; time
    :math:`O(n^2 p)`, memory :math:`O(np + nk + \texttt{block}\cdot n)`. Exact ties between the k-th and
    (k+1)-th similarity are broken by :func:`torch.topk`.
    """
    X, Y = _pair(X, Y)
    _check_k(k, X.shape[0])
    _block_rows(X.shape[0], block)
    return _knn_overlap(_knn_indices(X, k, block), _knn_indices(Y, k, block))


def procrustes_distance(X: Tensor, Y: Tensor, *, kind: str = "angular") -> float:
    r"""Orthogonal Procrustes shape distance between two representations.

    Williams et al. 2021, "Generalized shape metrics on neural representations" (arXiv 2110.14739):
    centre both, scale each to unit Frobenius norm, then

    .. math::
        \theta(X, Y) = \arccos \|X^\top Y\|_*, \qquad
        d(X, Y) = \min_{Q^\top Q = I}\|X - YQ\|_F = \sqrt{2 - 2\|X^\top Y\|_*},

    (``kind="angular"`` and ``"euclidean"``), :math:`\|\cdot\|_*` the nuclear norm. Different widths are
    compared after zero-padding the narrower one, which leaves :math:`\|X^\top Y\|_*` unchanged. Both
    vanish exactly when ``Y`` is a rotation (or reflection) of ``X`` up to translation and scale.
    """
    if kind not in ("angular", "euclidean"):
        raise BadInput("kind", kind, "'angular' or 'euclidean'")
    X, Y = _pair(X, Y)
    X, Y = _centre(X), _centre(Y)
    nx, ny = torch.linalg.matrix_norm(X), torch.linalg.matrix_norm(Y)
    if nx == 0 or ny == 0:
        return math.nan
    nuc = float(torch.linalg.svdvals((X / nx).T @ (Y / ny)).sum().clamp(-1.0, 1.0))
    return math.acos(nuc) if kind == "angular" else math.sqrt(max(2.0 - 2.0 * nuc, 0.0))


def _orthonormal_basis(
    X: Tensor, keep_variance: float | None = None, *, svd: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """Left singular vectors of centred ``X`` spanning its column space (or its top ``keep_variance``).

    ``svd``: ``(U, s)`` of ``X`` already computed (thin), so that several bases share one decomposition.
    """
    U, s = torch.linalg.svd(X, full_matrices=False)[:2] if svd is None else svd
    if s.numel() == 0 or s[0] == 0:
        return U[:, :0]
    rank = int((s > s[0] * max(X.shape) * torch.finfo(s.dtype).eps).sum())
    if keep_variance is not None:
        frac = torch.cumsum(s**2, 0) / (s**2).sum()
        rank = min(rank, int((frac < keep_variance - 1e-12).sum()) + 1)
    return U[:, :rank]


def canonical_correlations(X: Tensor, Y: Tensor) -> Tensor:
    r"""Canonical correlations of centred ``X`` and ``Y``, descending, ``min(rank X, rank Y)`` of them.

    Hotelling 1936; computed as the singular values of :math:`U_X^\top U_Y`, with :math:`U_X, U_Y`
    orthonormal bases of the column spaces (Björck & Golub 1973).
    """
    X, Y = _pair(X, Y)
    Ux, Uy = _orthonormal_basis(_centre(X)), _orthonormal_basis(_centre(Y))
    return torch.linalg.svdvals(Ux.T @ Uy).clamp(0.0, 1.0)


def svcca(X: Tensor, Y: Tensor, *, keep_variance: float = 0.99) -> float:
    r"""SVCCA: mean canonical correlation after keeping the top singular directions of each.

    Raghu et al. 2017, "SVCCA" (arXiv 1706.05806): centre, keep the fewest singular directions
    explaining ``keep_variance`` of each representation's variance (99% in the paper), run CCA on the
    reduced representations, and average the :math:`\min(r_X, r_Y)` canonical correlations. Invariant
    to invertible linear maps of the retained subspace; 1 when both span the same subspace.
    """
    if (
        isinstance(keep_variance, bool)
        or not isinstance(keep_variance, (int, float))
        or not 0 < keep_variance <= 1
    ):
        raise BadInput("keep_variance", keep_variance, "a fraction in (0, 1]")
    X, Y = _pair(X, Y)
    Ux, Uy = _orthonormal_basis(_centre(X), keep_variance), _orthonormal_basis(_centre(Y), keep_variance)
    if Ux.shape[1] == 0 or Uy.shape[1] == 0:
        return math.nan
    return float(torch.linalg.svdvals(Ux.T @ Uy).clamp(0.0, 1.0).mean())


# --------------------------------------------------------------------------------------------------
# layer-by-layer comparison of two models
# --------------------------------------------------------------------------------------------------

METRICS: dict[str, Callable[[Tensor, Tensor], float]] = {
    "linear_cka": linear_cka,
    "debiased_cka": debiased_cka,
    "rbf_cka": rbf_cka,
    "mutual_knn": mutual_knn,
    "procrustes": procrustes_distance,
    "svcca": svcca,
}


class _LinearCKAAccumulator:
    r"""Linear CKA over chunks: sums of :math:`X^\top X`, :math:`Y^\top Y`, :math:`Y^\top X` and column sums.

    Each layer's features are shifted by the mean of its first chunk before accumulation (a shift does
    not change centred statistics and keeps :math:`X^\top X - s s^\top/n` well conditioned). Memory is
    :math:`O(\sum p_a^2 + \sum q_b^2 + \sum p_a q_b)`, independent of :math:`n`.

    With ``unbiased=True`` it also streams what the unbiased HSIC of the linear kernels needs beyond
    these (:func:`_unbiased_linear_hsic`), with :math:`k_i = \|x_i\|^2`, :math:`l_i = \|y_i\|^2`:
    :math:`k\cdot l`, :math:`\sum_i k_i y_i` and :math:`\sum_i l_i x_i` per pair (:math:`k\cdot k` and
    :math:`\sum_i k_i x_i` per layer), so debiased CKA needs no stored features either.
    """

    def __init__(self, unbiased: bool = False) -> None:
        self.n = 0
        self.unbiased = unbiased
        self.norms: dict[tuple[str, str], Tensor] = {}  # this chunk's k_i, per layer
        self.kk: dict[Any, Tensor] = {}  # sum_i k_i l_i, per pair (ka, kb) and per layer key
        self.kx: dict[Any, Tensor] = {}  # sum_i k_i y_i ("b" side) and sum_i l_i x_i, per pair; per layer
        self.shift: dict[tuple[str, str], Tensor] = {}
        self.sums: dict[tuple[str, str], Tensor] = {}
        self.grams: dict[tuple[str, str], Tensor] = {}
        self.cross: dict[tuple[str, str], Tensor] = {}

    def _prep(self, key: tuple[str, str], F: Tensor) -> Tensor:
        F = F.reshape(F.shape[0], -1).to(torch.float64)
        if key not in self.shift:
            self.shift[key] = F.mean(0)
            self.sums[key] = torch.zeros_like(self.shift[key])
            self.grams[key] = torch.zeros(F.shape[1], F.shape[1], dtype=torch.float64)
        F = F - self.shift[key]
        self.sums[key] += F.sum(0)
        self.grams[key] += F.T @ F
        if self.unbiased:
            k = self.norms[key] = (F * F).sum(1)
            self._add(self.kk, key, k @ k)
            self._add(self.kx, key, F.T @ k)
        return F

    @staticmethod
    def _add(store: dict[Any, Tensor], key: Any, value: Tensor) -> None:
        store[key] = store[key] + value if key in store else value

    def update(self, feats_a: dict[str, Tensor], feats_b: dict[str, Tensor]) -> None:
        A = {k: self._prep(("a", k), v) for k, v in feats_a.items()}
        B = {k: self._prep(("b", k), v) for k, v in feats_b.items()}
        for ka, Fa in A.items():
            for kb, Fb in B.items():
                c = Fb.T @ Fa
                self.cross[(ka, kb)] = self.cross[(ka, kb)] + c if (ka, kb) in self.cross else c
                if self.unbiased:
                    k, l = self.norms[("a", ka)], self.norms[("b", kb)]
                    self._add(self.kk, (ka, kb), k @ l)
                    self._add(self.kx, (ka, kb, "b"), Fb.T @ k)
                    self._add(self.kx, (ka, kb, "a"), Fa.T @ l)
        self.n += next(iter(A.values())).shape[0]

    def _centred(self, key_a: tuple[str, str], key_b: tuple[str, str], M: Tensor) -> Tensor:
        return M - torch.outer(self.sums[key_b], self.sums[key_a]) / self.n

    def _gram(self, key: tuple[str, str]) -> Tensor:
        return self._centred(key, key, self.grams[key])

    def result(self, ka: str, kb: str) -> float:
        xx, yy = self._gram(("a", ka)), self._gram(("b", kb))
        yx = self._centred(("a", ka), ("b", kb), self.cross[(ka, kb)])
        den = torch.linalg.matrix_norm(xx) * torch.linalg.matrix_norm(yy)
        return _ratio(torch.linalg.matrix_norm(yx) ** 2, den)

    def procrustes(self, ka: str, kb: str) -> float:
        r"""Angular Procrustes distance (:func:`procrustes_distance`) from the centred moments:
        :math:`\arccos(\|X_c^\top Y_c\|_* / \sqrt{\mathrm{tr}(X_c^\top X_c)\,\mathrm{tr}(Y_c^\top Y_c)})`."""
        nx2, ny2 = torch.trace(self._gram(("a", ka))), torch.trace(self._gram(("b", kb)))
        yx = self._centred(("a", ka), ("b", kb), self.cross[(ka, kb)])
        return math.acos(float((torch.linalg.svdvals(yx).sum() / torch.sqrt(nx2 * ny2)).clamp(-1.0, 1.0)))

    def _whitener(self, key: tuple[str, str], keep_variance: float) -> Tensor:
        r""":math:`V_r S_r^{-1}` with :math:`X_c^\top X_c = V S^2 V^\top` (eigh), ``r`` directions: those
        above round-off (:math:`s_i^2 > s_1^2 \max(n, p)\,\epsilon`), then the fewest explaining
        ``keep_variance`` of the variance (as :func:`svcca`). :math:`X_c V_r S_r^{-1} = U_r`, the
        orthonormal basis :func:`svcca` takes from the SVD of :math:`X_c`."""
        cache = self.__dict__.setdefault("_whiteners", {})
        if key not in cache:
            lam, V = torch.linalg.eigh(self._gram(key))
            lam, V = lam.flip(0).clamp_min(0.0), V.flip(1)
            rank = int((lam > lam[0] * max(self.n, lam.numel()) * torch.finfo(lam.dtype).eps).sum())
            frac = torch.cumsum(lam, 0) / lam.sum()
            rank = min(rank, int((frac < keep_variance - 1e-12).sum()) + 1)
            cache[key] = V[:, :rank] / lam[:rank].sqrt()
        return cache[key]

    def _unbiased_hsic(self, C: Tensor, kl: Tensor, sa: Tensor, sb: Tensor, tra: Tensor, trb: Tensor,
                       ky: Tensor, lx: Tensor) -> Tensor:
        r"""The unbiased HSIC (Song et al. 2012) of :func:`_unbiased_linear_hsic`, from streamed sums:
        :math:`C = Y^\top X`, :math:`k\cdot l`, column sums :math:`s_X, s_Y`, :math:`\sum k = \mathrm{tr}
        X^\top X`, :math:`\sum_i k_i y_i`, :math:`\sum_i l_i x_i`:
        :math:`\mathbf 1^\top\tilde K\tilde L\mathbf 1 = s_Y^\top C s_X - s_Y\cdot\sum_i k_i y_i
        - s_X\cdot\sum_i l_i x_i + k\cdot l`."""
        n = self.n
        tr = torch.linalg.matrix_norm(C) ** 2 - kl
        k1l1 = sb @ C @ sa - sb @ ky - sa @ lx + kl
        val = tr + (sa @ sa - tra) * (sb @ sb - trb) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * k1l1
        return val / (n * (n - 3))

    def _self_unbiased(self, key: tuple[str, str]) -> Tensor:
        s, G = self.sums[key], self.grams[key]
        h = self._unbiased_hsic(G, self.kk[key], s, s, torch.trace(G), torch.trace(G), self.kx[key], self.kx[key])
        if not h > 0:
            raise BadInput("layers" if key[0] == "a" else "layers_b",
                           f"{key[1]!r}: unbiased HSIC with itself = {float(h):.3g} on n = {self.n}",
                           "a positive self-HSIC: more examples for the debiased estimator, or linear_cka")
        return h

    def debiased(self, ka: str, kb: str) -> float:
        """Debiased linear CKA (:func:`debiased_cka`) from the streamed sums (``unbiased=True``)."""
        A, B = ("a", ka), ("b", kb)
        Ga, Gb = self.grams[A], self.grams[B]
        kl = self._unbiased_hsic(self.cross[(ka, kb)], self.kk[(ka, kb)], self.sums[A], self.sums[B],
                                 torch.trace(Ga), torch.trace(Gb), self.kx[(ka, kb, "b")], self.kx[(ka, kb, "a")])
        return float(kl / torch.sqrt(self._self_unbiased(A) * self._self_unbiased(B)))

    def svcca(self, ka: str, kb: str, keep_variance: float = 0.99) -> float:
        r"""SVCCA (:func:`svcca`) from the centred moments: the mean singular value of
        :math:`U_{X,r}^\top U_{Y,r} = S_{X,r}^{-1}V_{X,r}^\top X_c^\top Y_c V_{Y,r} S_{Y,r}^{-1}`. The
        eigendecomposition squares the condition number: directions with :math:`s_i/s_1 \gtrsim 10^{-4}`
        (all kept ones, for features whose 99% variance is not carried by a direction a thousand times
        smaller than the largest) keep ~8 or more correct digits."""
        wx, wy = self._whitener(("a", ka), keep_variance), self._whitener(("b", kb), keep_variance)
        yx = self._centred(("a", ka), ("b", kb), self.cross[(ka, kb)])
        return float(torch.linalg.svdvals(wx.T @ yx.T @ wy).clamp(0.0, 1.0).mean())


def _batches(data: Any, batch_size: int | None) -> Iterable[Tensor]:
    if isinstance(data, Tensor):
        if data.ndim < 1 or data.shape[0] == 0:
            raise BadInput("data", tuple(data.shape), "a non-empty batch tensor (n, ...)")
        step = data.shape[0] if batch_size is None else batch_size
        return (data[s : s + step] for s in range(0, data.shape[0], step))
    if isinstance(data, Iterable):
        return (b[0] if isinstance(b, (tuple, list)) else b for b in data)
    raise BadInput(
        "data", type(data).__name__, "a tensor (n, ...) or an iterable of batches (e.g. a DataLoader)"
    )


def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Tensor | Iterable[Any],
    layers: Sequence[str] | None = None,
    metric: str = "linear_cka",
    batch_size: int | None = None,
    *,
    layers_b: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
):
    """Layer-by-layer similarity matrix of two models on the same inputs.

    Each listed layer's output (captured by forward hooks, conv feature maps flattened to
    ``(n, C*H*W)``) of ``model_a`` is compared with each listed layer's output of ``model_b`` by
    ``metric``, one of :data:`METRICS` (``"linear_cka"``, ``"debiased_cka"``, ``"rbf_cka"``,
    ``"mutual_knn"``, ``"procrustes"`` (angular distance), ``"svcca"``).

    Args:
        model_a, model_b: any modules (evaluated in eval mode, their modes restored); may be the same.
        data: a tensor ``(n, ...)`` of inputs or an iterable of batches (a tensor, or a tuple/list whose
            first element is the input, e.g. from a DataLoader).
        layers: names of submodules of ``model_a`` (``None``: its leaf modules); also used for
            ``model_b`` unless ``layers_b`` is given.
        metric: the similarity measure.
        batch_size: chunk a tensor ``data`` into batches of this size.
        layers_b: names of submodules of ``model_b``.
        metrics: several measures at once, from one pass over the data (``metric`` is then ignored).

    Returns:
        A pandas DataFrame, index = layers of ``model_a`` (``"layer_a"``), columns = layers of
        ``model_b`` (``"layer_b"``); with ``metrics``, a dict ``{metric: DataFrame}`` in the order given.
        ``"linear_cka"``, ``"debiased_cka"``, ``"procrustes"`` and ``"svcca"`` come from sums accumulated
        over batches (:math:`X^\top X`, :math:`Y^\top Y`, :math:`Y^\top X`, column sums, and for the
        debiased estimator row-norm-weighted sums: memory independent of ``n``, quadratic in the layers'
        widths; SVCCA's bases from the eigendecomposition of :math:`X_c^\top X_c`, once per layer);
        ``"rbf_cka"`` and ``"mutual_knn"`` collect all features first (as given, e.g. float32: ``n * width * 4`` bytes per layer). ``"rbf_cka"`` (default bandwidth, ``sigma_frac``
        0.8) computes each layer's kernel once, block by block, and accumulates all layer pairs from the
        same blocks (:func:`rbf_cka`); ``"mutual_knn"`` (``k = 10``) finds each layer's neighbours once
        (:func:`mutual_knn`); neither stores an ``n x n`` matrix.

    Raises:
        BadInput: an unknown metric or layer; a named layer that never runs (its hook never fires) or
            runs more than once per forward; an output without the batch as first dimension; a layer
            whose output is the same for every example (every similarity to it is undefined: named here
            instead of a matrix of NaN); NaN or inf in a layer's output.
    """
    import pandas as pd

    requested = [metric] if metrics is None else list(metrics) if not isinstance(metrics, str) else [metrics]
    unknown = [m for m in requested if m not in METRICS]
    if unknown or not requested or len(set(requested)) != len(requested):
        raise BadInput("metrics" if metrics is not None else "metric", metrics if metrics is not None else metric,
                       "distinct names among " + ", ".join(repr(m) for m in METRICS))
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise BadInput("batch_size", batch_size, "None or a positive integer")
    for name, model in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(model, nn.Module):
            raise BadInput(name, type(model).__name__, "a torch.nn.Module")
    names_b = layers_b if layers_b is not None else layers

    moments = {"linear_cka", "procrustes", "svcca", "debiased_cka"}  # from streamed sums (feature space)
    acc = _LinearCKAAccumulator(unbiased="debiased_cka" in requested) if moments & set(requested) else None
    collect = any(m not in moments for m in requested)
    collected_a: dict[str, list[Tensor]] = {}
    collected_b: dict[str, list[Tensor]] = {}
    first_a: dict[str, Tensor] = {}
    first_b: dict[str, Tensor] = {}
    varies: dict[tuple[str, str], bool] = {}
    seen = 0
    for x in _batches(data, batch_size):
        fa = capture_activations(model_a, x, layers)
        fb = capture_activations(model_b, x, names_b)
        for side, feats in (("layers", fa), ("layers_b", fb)):
            if not feats:
                raise BadInput(side, layers if side == "layers" else names_b, "layers producing one tensor each")
            bad = [k for k, v in feats.items() if v.ndim == 0 or v.shape[0] != x.shape[0]]
            if bad:
                raise BadInput(side, bad, f"layers whose outputs have the batch ({x.shape[0]}) as first dimension")
            bad = [k for k, v in feats.items() if not torch.isfinite(v).all()]
            if bad:
                raise BadInput(side, bad, f"layers with finite outputs (NaN or inf among examples {seen}-{seen + x.shape[0] - 1})")
        seen += x.shape[0]
        for side, feats, first in (("layers", fa, first_a), ("layers_b", fb, first_b)):
            for k, v in feats.items():  # a constant layer: every row equals the first one seen, exactly
                row = first.setdefault(k, v[:1])
                varies[(side, k)] = varies.get((side, k), False) or bool((v != row).any())
        if acc is not None:
            acc.update(fa, fb)
        if collect:
            for store, feats in ((collected_a, fa), (collected_b, fb)):
                for k, v in feats.items():
                    store.setdefault(k, []).append(v.reshape(v.shape[0], -1))
    if seen == 0:
        raise BadInput("data", "no batches", "at least one batch of inputs")
    if seen < 2:
        raise BadInput("data", f"{seen} example", "at least 2 examples to compare representations")
    for side, first in (("layers", first_a), ("layers_b", first_b)):
        constant = [k for k in first if not varies[(side, k)]]
        if constant:
            raise BadInput(side, constant, "layers whose outputs vary over the examples (these are the same for "
                           "every example: their similarity to anything is undefined)")
    A = {k: torch.cat(collected_a.pop(k)) for k in list(collected_a)}  # the chunks freed one layer at a time
    B = {k: torch.cat(collected_b.pop(k)) for k in list(collected_b)}
    if acc is not None:
        la, lb = [k for (side, k) in acc.grams if side == "a"], [k for (side, k) in acc.grams if side == "b"]
    else:
        la, lb = list(A), list(B)
    frames = {}
    # mutual_knn before rbf_cka: RBF CKA's float64 copies of the layers replace the captured features,
    # which nothing needs after it (so the features and the copies are not all held at once)
    for m in sorted(requested, key=lambda m: m == "rbf_cka"):
        if m == "linear_cka":
            values = [[acc.result(ka, kb) for kb in lb] for ka in la]
        elif m == "procrustes":
            values = [[acc.procrustes(ka, kb) for kb in lb] for ka in la]
        elif m == "svcca":
            values = [[acc.svcca(ka, kb) for kb in lb] for ka in la]
        elif m == "debiased_cka":
            if seen < 4:
                raise BadInput("data", f"{seen} examples", "n >= 4 examples for the debiased (unbiased HSIC) CKA")
            values = [[acc.debiased(ka, kb) for kb in lb] for ka in la]
        elif m == "rbf_cka":  # one kernel per layer (not per pair), all pairs accumulated block by block
            kernels_a = [_RBFKernel(_matrix(ka, A.pop(ka)), 0.8, MEDIAN_SAMPLE) for ka in la]
            kernels_b = [_RBFKernel(_matrix(kb, B.pop(kb)), 0.8, MEDIAN_SAMPLE) for kb in lb]
            values = _blocked_cka(kernels_a, kernels_b, seen, None).tolist()
            del kernels_a, kernels_b
        elif m == "mutual_knn":  # one neighbour list per layer, overlaps per pair
            _check_k(10, seen)
            nn_a = {ka: _knn_indices(_matrix(ka, A[ka]), 10, None) for ka in la}
            nn_b = {kb: _knn_indices(_matrix(kb, B[kb]), 10, None) for kb in lb}
            values = [[_knn_overlap(nn_a[ka], nn_b[kb]) for kb in lb] for ka in la]
        else:
            values = [[METRICS[m](A[ka], B[kb]) for kb in lb] for ka in la]
        frames[m] = pd.DataFrame(values, index=pd.Index(la, name="layer_a"), columns=pd.Index(lb, name="layer_b"))
    frames = {m: frames[m] for m in requested}
    return frames if metrics is not None else frames[metric]
