"""Tests of lmech.instruments.similarity against dense formulas, brute-force definitions and closed forms.

References: the n x n HSIC formula tr(KHLH) with an explicit centring matrix H (Kornblith et al.
2019, Eq. (2)); the unbiased HSIC as the U-statistic over all ordered 4-tuples of distinct examples
(Song et al. 2012, its definition, summed by brute force); scipy's orthogonal Procrustes solver; the
classical canonical correlations sqrt(eig(Sxx^-1 Sxy Syy^-1 Syx)); expected values of the measures
on independent data over many seeds (means compared within a few standard errors).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from lmech.errors import BadInput
from lmech.instruments.features import capture_activations
from lmech.instruments.similarity import (
    canonical_correlations,
    compare,
    debiased_cka,
    hsic,
    kernel_cka,
    linear_cka,
    mutual_knn,
    procrustes_distance,
    rbf_cka,
    svcca,
)


def gaussian(n: int, p: int, seed: int) -> torch.Tensor:
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def random_orthogonal(p: int, seed: int) -> torch.Tensor:
    Q, _ = torch.linalg.qr(gaussian(p, p, seed))
    return Q


def dense_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Kornblith et al. 2019, Eqs. (2)-(3) written with n x n matrices and an explicit H."""
    n = X.shape[0]
    H = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n
    K, L = X @ X.T, Y @ Y.T

    def h(A, B):
        return torch.trace(A @ H @ B @ H) / (n - 1) ** 2

    return float(h(K, L) / torch.sqrt(h(K, K) * h(L, L)))


def brute_force_unbiased_hsic(K: torch.Tensor, L: torch.Tensor) -> float:
    """The U-statistic of Song et al. 2012: mean over ordered distinct (i, j, q, r) of
    K_ij L_ij + K_ij L_qr - 2 K_ij L_iq."""
    n = K.shape[0]
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += float(K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q])
    return total / (n * (n - 1) * (n - 2) * (n - 3))


# --------------------------------------------------------------------------------------------------
# CKA
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, p, q", [(40, 5, 7), (9, 12, 6)])  # feature-space branch, Gram branch
def test_linear_cka_equals_dense_hsic_formula(n, p, q):
    X, Y = gaussian(n, p, 0) + 3.0, gaussian(n, q, 1) @ gaussian(q, q, 2) - 1.0
    # both are float64 sums of O(n p q) terms: 1e-12 leaves a 1e3 margin over round-off
    assert linear_cka(X, Y) == pytest.approx(dense_cka(X, Y), abs=1e-12)
    assert linear_cka(X, X) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_invariances():
    X, Y = gaussian(50, 6, 3), gaussian(50, 4, 4)
    Y = Y + 0.5 * X[:, :4]  # some dependence so the value is not near 0
    base = linear_cka(X, Y)
    Q = random_orthogonal(6, 5)
    # orthogonal maps, isotropic scaling and translation leave CKA unchanged (exact up to round-off)
    assert linear_cka(2.7 * X @ Q + 4.0, Y) == pytest.approx(base, abs=1e-12)
    # ... but a general invertible map does not: stretching one direction 30-fold changes the value
    A = torch.diag(torch.tensor([30.0, 1, 1, 1, 1, 1], dtype=torch.float64)) @ Q
    assert abs(linear_cka(X @ A, Y) - base) > 0.05
    with pytest.raises(BadInput, match="Y"):
        linear_cka(X, Y[:-1])


def test_debiased_cka_matches_brute_force_u_statistic():
    X, Y = gaussian(7, 3, 6) + 2.0, gaussian(7, 2, 7)  # uncentred: the estimator is translation invariant
    K, L = X @ X.T, Y @ Y.T
    kl, kk, ll = (
        brute_force_unbiased_hsic(K, L),
        brute_force_unbiased_hsic(K, K),
        brute_force_unbiased_hsic(L, L),
    )
    assert hsic(K, L, unbiased=True) == pytest.approx(kl, abs=1e-12)
    # the feature-space formula (no n x n matrix) against the brute-force ratio
    assert debiased_cka(X, Y) == pytest.approx(kl / math.sqrt(kk * ll), abs=1e-10)
    assert kernel_cka(K, L, debiased=True) == pytest.approx(kl / math.sqrt(kk * ll), abs=1e-10)
    # biased HSIC against tr(KHLH)/(n-1)^2 with an explicit H
    H = torch.eye(7, dtype=torch.float64) - 1.0 / 7
    assert hsic(K, L) == pytest.approx(float(torch.trace(K @ H @ L @ H) / 36), abs=1e-12)


def test_debiased_cka_near_zero_on_independent_gaussians_where_biased_is_not():
    # n = 32 examples, p = q = 8 features, 100 seeds. For independent standard Gaussians the biased
    # linear CKA concentrates near the ratio of expectations p / (n + p) = 0.2 (E tr(KcLc) =
    # p q (n-1), E||Kc||^2 = p (n-1)(n+p) for a Wishart matrix); the unbiased HSIC has mean 0.
    # Spread over seeds: std ~0.04 (biased) and ~0.05 (debiased), so the standard error of a
    # 100-seed mean is ~0.005; we allow 4 standard errors (0.02), plus 0.01 for the gap between a
    # ratio of expectations and the expectation of the ratio in the biased case.
    n, p, seeds = 32, 8, 100
    biased = torch.tensor(
        [linear_cka(gaussian(n, p, 2 * s), gaussian(n, p, 2 * s + 1)) for s in range(seeds)]
    )
    debiased = torch.tensor(
        [debiased_cka(gaussian(n, p, 2 * s), gaussian(n, p, 2 * s + 1)) for s in range(seeds)]
    )
    se_b, se_d = float(biased.std() / math.sqrt(seeds)), float(debiased.std() / math.sqrt(seeds))
    assert se_b < 0.006 and se_d < 0.006  # the spread the tolerances below are built on
    assert abs(float(debiased.mean())) < 4 * 0.005
    assert abs(float(biased.mean()) - p / (n + p)) < 4 * 0.005 + 0.01


def test_rbf_cka_tends_to_linear_cka_for_huge_bandwidth():
    X, Y = gaussian(30, 4, 8), gaussian(30, 3, 9)
    Y = Y + X[:, :3] ** 2  # a non-linear dependence, so RBF and linear CKA differ at normal bandwidth
    # centred exp(-d^2 / 2 s^2) = H X X^T H / s^2 + O(d^4 / s^4): with sigma_frac = 1e3 the relative
    # correction is ~1e-6, and float64 round-off in 1 - K ~ 1e-6 costs ~1e-10; tolerance 1e-5
    assert rbf_cka(X, Y, sigma_frac=1e3) == pytest.approx(linear_cka(X, Y), abs=1e-5)
    # and the gap closes as 1 / sigma^2: ten times the bandwidth, a hundred times closer (+-50%, the
    # next-order term at sigma_frac = 100 is ~1e-4 relative, round-off ~1e-10 / 1e-6 at 1e3)
    gaps = [abs(rbf_cka(X, Y, sigma_frac=f) - linear_cka(X, Y)) for f in (100.0, 1000.0)]
    assert 50 < gaps[0] / gaps[1] < 150
    assert abs(rbf_cka(X, Y, sigma_frac=0.5) - linear_cka(X, Y)) > 1e-3
    assert rbf_cka(X, X) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(BadInput, match="sigma_frac"):
        rbf_cka(X, Y, sigma_frac=0.0)


def dense_rbf_cka(X: torch.Tensor, Y: torch.Tensor, sigma_frac: float = 0.8, subset=None) -> float:
    """n x n reference: squared distances by explicit differences, the bandwidth from the median (lower
    middle) over pairs i < j of ``subset`` (default all examples), K = exp(-d^2 / 2 sigma^2), explicit H."""
    n = X.shape[0]
    H = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n

    def kernel(Z):
        d2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
        S = d2 if subset is None else d2[subset][:, subset]
        iu = torch.triu_indices(S.shape[0], S.shape[0], offset=1)
        return torch.exp(-d2 / (2 * sigma_frac**2 * S[iu[0], iu[1]].median()))

    K, L = kernel(X), kernel(Y)

    def h(A, B):
        return torch.trace(A @ H @ B @ H)

    return float(h(K, L) / torch.sqrt(h(K, K) * h(L, L)))


def test_rbf_cka_blocked_equals_dense_formula():
    X = gaussian(37, 5, 50) + 2.0
    Y = torch.tanh(X[:, :3]) + 0.3 * gaussian(37, 3, 51)
    ref = dense_rbf_cka(X, Y)
    # blocks of 1, 4 (uneven last block), 37 rows and automatic: the same float64 sums reordered,
    # each O(n^2) terms of size <= 1: 1e-12 leaves a ~1e3 margin over round-off
    for block in (1, 4, 37, None):
        assert rbf_cka(X, Y, block=block) == pytest.approx(ref, abs=1e-12)
    assert rbf_cka(X, Y, sigma_frac=0.3) == pytest.approx(dense_rbf_cka(X, Y, 0.3), abs=1e-12)
    # past median_sample examples the median is over the pairs of the documented fixed random subset
    # (randperm with generator seed 0, its first median_sample entries)
    subset = torch.randperm(37, generator=torch.Generator().manual_seed(0))[:10]
    assert rbf_cka(X, Y, median_sample=10, block=5) == pytest.approx(dense_rbf_cka(X, Y, subset=subset), abs=1e-12)
    assert rbf_cka(X, Y, median_sample=None) == rbf_cka(X, Y, median_sample=37)
    for bad in ({"block": 0}, {"median_sample": 1}, {"block": 2.5}):
        with pytest.raises(BadInput, match=next(iter(bad))):
            rbf_cka(X, Y, **bad)


def test_debiased_cka_feature_space_equals_dense_unbiased_hsic():
    # the feature-space form (X^T X, Y^T Y, Y^T X, row norms and column sums) against the n x n
    # estimator of Song et al. 2012 on Gram matrices, with more features than examples (p > n)
    X, Y = gaussian(40, 50, 52) - 1.0, gaussian(40, 30, 53)
    Y = Y + 0.5 * X[:, :30]
    K, L = X @ X.T, Y @ Y.T
    ref = hsic(K, L, unbiased=True) / math.sqrt(hsic(K, K, unbiased=True) * hsic(L, L, unbiased=True))
    assert debiased_cka(X, Y) == pytest.approx(ref, abs=1e-10)


# --------------------------------------------------------------------------------------------------
# mutual k-NN, Procrustes, SVCCA
# --------------------------------------------------------------------------------------------------


def test_mutual_knn_identical_is_one_and_independent_is_chance():
    X = gaussian(40, 5, 10)
    assert mutual_knn(X, X, k=5) == 1.0
    assert (
        mutual_knn(X, 3.0 * X @ random_orthogonal(5, 11), k=5) == 1.0
    )  # cosine kNN: rotation/scale invariant
    # independent data: each neighbour set is a uniform random 5-subset of the other n - 1 = 39, so the
    # expected overlap fraction is k / (n - 1) = 0.128. Per-seed std ~0.035 -> the 100-seed mean has a
    # standard error ~0.0035; allow 4 standard errors.
    n, k, seeds = 40, 5, 100
    vals = torch.tensor(
        [mutual_knn(gaussian(n, 6, 2 * s), gaussian(n, 6, 2 * s + 1), k=k) for s in range(seeds)]
    )
    assert float(vals.std() / math.sqrt(seeds)) < 0.005
    assert abs(float(vals.mean()) - k / (n - 1)) < 4 * 0.0035
    with pytest.raises(BadInput, match="k"):
        mutual_knn(X, X, k=40)


def dense_mutual_knn(X: torch.Tensor, Y: torch.Tensor, k: int) -> float:
    """n x n reference: full cosine-similarity matrices, the diagonal excluded, neighbour sets as masks."""
    n = X.shape[0]

    def mask(Z):
        Z = Z / Z.norm(dim=1, keepdim=True)
        S = Z @ Z.T
        S.fill_diagonal_(-math.inf)
        M = torch.zeros(n, n, dtype=torch.bool)
        M.scatter_(1, S.topk(k, dim=1).indices, True)
        return M

    return int((mask(X) & mask(Y)).sum()) / (n * k)


def test_mutual_knn_blocked_equals_dense_masks():
    X = gaussian(45, 6, 54)
    Y = X[:, :4] + 0.7 * gaussian(45, 4, 55)
    ref = dense_mutual_knn(X, Y, 5)
    assert 0.2 < ref < 0.9  # a value between chance (5/44) and 1, so the comparison has content
    for block in (1, 6, 45, None):  # a count of shared neighbours over n k: exact
        assert mutual_knn(X, Y, k=5, block=block) == ref
    with pytest.raises(BadInput, match="block"):
        mutual_knn(X, Y, block=-1)


def test_blocked_metrics_at_10k_examples_do_not_depend_on_the_block_size():
    # n = 10,000 (100 million kernel entries per representation, never stored). RBF CKA: the same float64
    # sums reordered over 1000- and 613-row blocks (1e-12); mutual k-NN: counts, exactly equal
    g = torch.Generator().manual_seed(56)
    X = torch.randn(10_000, 8, generator=g)
    Y = torch.tanh(X[:, :6]) + 0.5 * torch.randn(10_000, 6, generator=g)
    r1, r2 = rbf_cka(X, Y, block=1000), rbf_cka(X, Y, block=613)
    assert 0.2 < r1 < 0.95 and r1 == pytest.approx(r2, abs=1e-12)
    k1, k2 = mutual_knn(X, Y, block=1000), mutual_knn(X, Y, block=613)
    assert 10 / 9999 * 10 < k1 < 1 and k1 == k2


def test_procrustes_distance_closed_forms_and_scipy_reference():
    X = gaussian(20, 4, 12)
    Y = 5.0 * X @ random_orthogonal(4, 13) + 1.5  # rotation, scaling, translation
    # arccos(1 - delta) ~ sqrt(2 delta): round-off delta ~ 1e-15 gives ~5e-8, so tolerance 1e-6
    assert procrustes_distance(X, Y) == pytest.approx(0.0, abs=1e-6)
    assert procrustes_distance(X, Y, kind="euclidean") == pytest.approx(0.0, abs=1e-6)
    # known case: X = [u, v] with centred orthonormal u, v, Y = [u, 0]. After unit-norm scaling
    # X^T Y = diag(1, 0) / sqrt(2): nuclear norm 1/sqrt(2), angle pi/4, Euclidean sqrt(2 - sqrt(2)).
    u = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64) / 2
    v = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64) / 2
    Xk, Yk = torch.stack([u, v], 1), torch.stack([u, torch.zeros(4, dtype=torch.float64)], 1)
    assert procrustes_distance(Xk, Yk) == pytest.approx(math.pi / 4, abs=1e-12)
    assert procrustes_distance(Xk, Yk, kind="euclidean") == pytest.approx(
        math.sqrt(2 - math.sqrt(2)), abs=1e-12
    )
    # generic case against scipy's orthogonal Procrustes solution min_Q ||Yc Q - Xc||_F
    A, B = gaussian(25, 3, 14), gaussian(25, 3, 15)
    Ac, Bc = (A - A.mean(0)).numpy(), (B - B.mean(0)).numpy()
    Ac, Bc = Ac / np.linalg.norm(Ac), Bc / np.linalg.norm(Bc)
    R, _ = scipy.linalg.orthogonal_procrustes(Bc, Ac)
    assert procrustes_distance(A, B, kind="euclidean") == pytest.approx(
        np.linalg.norm(Bc @ R - Ac), abs=1e-12
    )


def classical_canonical_correlations(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """sqrt of the eigenvalues of Sxx^-1 Sxy Syy^-1 Syx (Hotelling 1936), full-rank inputs."""
    X, Y = X - X.mean(0), Y - Y.mean(0)
    Sxx, Syy, Sxy = X.T @ X, Y.T @ Y, X.T @ Y
    M = np.linalg.solve(Sxx, Sxy) @ np.linalg.solve(Syy, Sxy.T)
    ev = np.sort(np.linalg.eigvals(M).real)[::-1][: min(X.shape[1], Y.shape[1])]
    return np.sqrt(np.clip(ev, 0, 1))


def test_canonical_correlations_match_classical_formula():
    X, Y = gaussian(60, 4, 16), gaussian(60, 3, 17)
    Y = Y + 0.8 * X[:, :3]
    expected = classical_canonical_correlations(X.numpy(), Y.numpy())
    # the eigenvalue route squares the condition number (~1e2 here): 1e-10 is well above its round-off
    assert np.allclose(canonical_correlations(X, Y).numpy(), expected, atol=1e-10)


def test_svcca_of_invertible_linear_map_is_one():
    # X of exact rank 3 in 6 dimensions: the 99% subspace of X and of X A is the whole column space
    # (each of the 3 directions carries > 1% of the variance), so every canonical correlation is 1.
    Z, W = gaussian(80, 3, 18), gaussian(3, 6, 19)
    X = Z @ W
    A = gaussian(6, 6, 20) + 3 * torch.eye(6, dtype=torch.float64)  # invertible
    assert svcca(X, X @ A) == pytest.approx(1.0, abs=1e-10)
    # full rank, keeping all variance: CCA is invariant to any invertible map
    X2 = gaussian(80, 5, 21)
    A2 = gaussian(5, 5, 22) + 3 * torch.eye(5, dtype=torch.float64)
    assert svcca(X2, X2 @ A2, keep_variance=1.0) == pytest.approx(1.0, abs=1e-10)
    # independent data gives clearly less than 1
    assert svcca(X2, gaussian(80, 5, 23)) < 0.5
    with pytest.raises(BadInput, match="keep_variance"):
        svcca(X2, X2, keep_variance=1.5)


# --------------------------------------------------------------------------------------------------
# compare(): layer-by-layer matrices through hooks
# --------------------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(3 * 5 * 5, 4)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


def two_models():
    torch.manual_seed(0)
    a = SmallCNN().double()
    b = nn.Sequential(nn.Flatten(), nn.Linear(25, 10), nn.Tanh(), nn.Linear(10, 6)).double()
    return a, b


def test_compare_chunked_equals_unchunked_and_flattens_conv_features():
    a, b = two_models()
    x = gaussian(23, 25, 24).reshape(23, 1, 5, 5) + 0.3
    full = compare(a, b, x, layers=["conv", "fc"], layers_b=["1", "2", "3"])
    chunked = compare(a, b, x, layers=["conv", "fc"], layers_b=["1", "2", "3"], batch_size=5)
    assert list(full.index) == ["conv", "fc"] and list(full.columns) == ["1", "2", "3"]
    assert full.index.name == "layer_a" and full.columns.name == "layer_b"
    # streaming sums of X^T X, Y^T Y, Y^T X over 5 chunks vs one pass: same float64 sums, reordered
    assert np.allclose(chunked.to_numpy(), full.to_numpy(), atol=1e-12, rtol=0)
    # the conv entry is linear CKA of the flattened (n, 3*5*5) feature maps
    conv = capture_activations(a, x, ["conv"])["conv"]
    tanh = capture_activations(b, x, ["2"])["2"]
    assert conv.shape == (23, 3, 5, 5)
    assert full.loc["conv", "2"] == pytest.approx(dense_cka(conv.reshape(23, -1), tanh), abs=1e-12)


def test_compare_other_metrics_and_data_loaders():
    a, b = two_models()
    x = gaussian(20, 25, 25).reshape(20, 1, 5, 5)
    batches = [(x[i : i + 6], torch.zeros(len(x[i : i + 6]))) for i in range(0, 20, 6)]  # (input, label)
    for metric in ("debiased_cka", "svcca", "procrustes"):
        from_loader = compare(a, b, batches, layers=["act"], layers_b=["3"], metric=metric)
        from_tensor = compare(a, b, x, layers=["act"], layers_b=["3"], metric=metric, batch_size=7)
        assert from_loader.loc["act", "3"] == pytest.approx(from_tensor.loc["act", "3"], abs=1e-12)
    same = compare(a, a, x, layers=["conv", "act"])
    assert np.allclose(np.diag(same.to_numpy()), 1.0, atol=1e-12)  # CKA(X, X) = 1 on the diagonal
    with pytest.raises(BadInput, match="metric"):
        compare(a, b, x, metric="cosine")
    with pytest.raises(BadInput, match="layers"):
        compare(a, b, x, layers=["nonexistent"])


def test_compare_several_metrics_in_one_pass():
    a, b = two_models()
    x = gaussian(30, 25, 26).reshape(30, 1, 5, 5)
    calls = []
    hook = a.register_forward_pre_hook(lambda module, inputs: calls.append(inputs[0].shape[0]))
    names = ["linear_cka", "svcca", "mutual_knn", "rbf_cka", "debiased_cka", "procrustes"]
    many = compare(a, b, x, layers=["conv", "act"], layers_b=["2", "3"], metrics=names, batch_size=7)
    hook.remove()
    assert calls == [7, 7, 7, 7, 2]  # one forward pass over the data for all six metrics
    assert list(many) == names
    # rbf_cka and mutual_knn (one kernel / neighbour list per layer, shared by the pairs) equal the
    # metric functions on the captured features
    fa, fb = capture_activations(a, x, ["act"]), capture_activations(b, x, ["2"])
    Fa, Fb = fa["act"].reshape(30, -1), fb["2"]
    assert many["rbf_cka"].loc["act", "2"] == pytest.approx(rbf_cka(Fa, Fb), abs=1e-12)
    assert many["rbf_cka"].loc["act", "2"] == pytest.approx(dense_rbf_cka(Fa, Fb), abs=1e-12)
    assert many["mutual_knn"].loc["act", "2"] == mutual_knn(Fa, Fb, k=10)
    # procrustes and svcca come from streamed second moments (X^T X, Y^T Y, Y^T X, sums; SVCCA's bases
    # from eigh of X_c^T X_c, which squares the condition number: ~1e2 here, so 1e-9 is far above the
    # ~1e-12 round-off) and equal the functions (SVD of the centred features) on every pair, including
    # the conv layer's 75 features on 30 examples (rank 29)
    fa, fb = capture_activations(a, x, ["conv", "act"]), capture_activations(b, x, ["2", "3"])
    for ka, kb in itertools.product(["conv", "act"], ["2", "3"]):
        Fa, Fb = fa[ka].reshape(30, -1), fb[kb]
        assert many["procrustes"].loc[ka, kb] == pytest.approx(procrustes_distance(Fa, Fb), abs=1e-10)
        assert many["svcca"].loc[ka, kb] == pytest.approx(svcca(Fa, Fb), abs=1e-9)
        # debiased CKA from streamed sums (k.l, sum_i k_i y_i, ...) against the function: float64
        # sums of O(n p q) terms reordered, 1e-10 as for the feature-space form
        assert many["debiased_cka"].loc[ka, kb] == pytest.approx(debiased_cka(Fa, Fb), abs=1e-10)
    with pytest.raises(BadInput, match="n >= 4"):
        compare(a, b, x[:3], layers=["act"], layers_b=["2"], metric="debiased_cka")
    for metric, frame in many.items():  # each the same as its own call
        alone = compare(a, b, x, layers=["conv", "act"], layers_b=["2", "3"], metric=metric)
        assert frame.index.name == "layer_a" and frame.columns.name == "layer_b"
        assert np.allclose(frame.to_numpy(), alone.to_numpy(), atol=1e-12, rtol=0)
    with pytest.raises(BadInput, match="metrics"):
        compare(a, b, x, metrics=["linear_cka", "linear_cka"])
    with pytest.raises(BadInput, match="metrics"):
        compare(a, b, x, metrics=["cosine"])


def test_compare_names_what_cannot_be_compared():
    a, b = two_models()
    x = gaussian(12, 25, 27).reshape(12, 1, 5, 5)

    class Skips(nn.Module):  # a layer whose hook never fires
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(25, 4), nn.Linear(25, 4)

        def forward(self, x):
            return self.used(x.flatten(1))

    with pytest.raises(BadInput, match="unused"):
        compare(Skips().double(), b, x, layers=["unused"], layers_b=["2"])

    class Constant(nn.Module):  # the same output for every example
        def __init__(self):
            super().__init__()
            self.const = nn.Identity()

        def forward(self, x):
            return self.const(torch.ones(x.shape[0], 3, dtype=x.dtype) * 0.1)

    for metric in ("linear_cka", "svcca"):
        with pytest.raises(BadInput, match="vary over the examples"):
            compare(Constant(), b, x, layers=["const"], layers_b=["2"], metric=metric, batch_size=5)
    with pytest.raises(BadInput, match="rows"):  # mismatched numbers of examples, in the metrics themselves
        linear_cka(torch.randn(10, 3), torch.randn(9, 3))


# --------------------------------------------------------------------------------------------------
# what has no similarity: an error naming it, never NaN
# --------------------------------------------------------------------------------------------------

ALL_METRICS = {
    "linear_cka": linear_cka,
    "debiased_cka": debiased_cka,
    "rbf_cka": rbf_cka,
    "mutual_knn": lambda X, Y: mutual_knn(X, Y, k=3),
    "procrustes": procrustes_distance,
    "svcca": svcca,
    "cca": canonical_correlations,
}


@pytest.mark.parametrize("metric", list(ALL_METRICS))
def test_every_metric_refuses_what_has_no_similarity(metric):
    fn = ALL_METRICS[metric]
    X = gaussian(12, 4, 40)
    fn(X, gaussian(12, 5, 41))  # a valid pair passes
    # mismatched numbers of examples: named, with both counts
    with pytest.raises(BadInput, match=r"Y.*11 examples.*12"):
        fn(X, gaussian(11, 5, 41))
    # constant features (every example the same row, also after float64 centring would leave round-off)
    constant = torch.full((12, 3), 0.1, dtype=torch.float64)
    for args, name in (((constant, X), "X"), ((X, constant), "Y")):
        with pytest.raises(BadInput, match=rf"{name}.*same for every example"):
            fn(*args)
    # NaN or inf features
    bad = X.clone()
    bad[3, 1] = math.nan
    with pytest.raises(BadInput, match=r"1 of 12 rows with NaN or inf"):
        fn(bad, X)
    bad[5, 0] = math.inf
    with pytest.raises(BadInput, match=r"2 of 12 rows"):
        fn(X, bad)


def test_constant_columns_are_not_a_constant_representation():
    # dead ReLU units (constant columns) are ordinary features: CKA is computed on the others, exactly
    X, Y = gaussian(15, 3, 42), gaussian(15, 4, 43)
    padded = torch.cat([X, torch.zeros(15, 2, dtype=torch.float64)], 1)
    assert linear_cka(padded, Y) == pytest.approx(linear_cka(X, Y), abs=1e-12)
    assert debiased_cka(padded, Y) == pytest.approx(debiased_cka(X, Y), abs=1e-12)


def test_kernel_cka_refuses_a_gram_without_variation():
    K = gaussian(8, 3, 44)
    K = K @ K.T
    with pytest.raises(BadInput, match="L.*HSIC"):
        kernel_cka(K, torch.ones(8, 8, dtype=torch.float64))  # a constant kernel: centred, zero
    # the unbiased self-HSIC of a nonconstant representation can fall below 0 with very few examples
    X = torch.tensor([[0.0], [0.0], [0.0], [0.0], [1.0]], dtype=torch.float64)
    assert hsic(X @ X.T, X @ X.T, unbiased=True) <= 0
    with pytest.raises(BadInput, match="unbiased HSIC"):
        debiased_cka(X, gaussian(5, 2, 45))


def test_compare_refuses_non_finite_layer_outputs():
    a, b = two_models()
    x = gaussian(10, 25, 46).reshape(10, 1, 5, 5)
    x[7, 0, 2, 2] = math.inf  # the conv layer's output at example 7 is inf
    with pytest.raises(BadInput, match=r"conv.*NaN or inf among examples 5-9"):
        compare(a, b, x, layers=["conv"], layers_b=["1"], batch_size=5)
