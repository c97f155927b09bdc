"""The representation-alignment law (issue 16 parts 2 and 3): across architectures, alignment beats
initialization, a permutation null and a label control, and grows with accuracy; the metrics' agreement.

The fast statistics (Gram-based debiased CKA, cached neighbour masks, vectorized Spearman) are checked against
independent references (the similarity instruments, computed pair by pair; scipy's spearmanr); the quick run's
controls against their closed forms; the counterexamples (one architecture left at initialization, its
examples shuffled) against the verdicts. The contract test runs the law-book entry at seeds 0, 1 and 2."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from lmech.config import apply_overrides
from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments.representation_alignment import (
    AGREEMENT_METRICS,
    Gram,
    Neighbours,
    bootstrap_spearman,
    build,
    knn_alignment,
    layer_names,
    neighbours,
    representations,
    spearman,
)
from lmech.instruments import similarity as S

NAME = "representation-alignment"


def _pair(n=60, p=7, q=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    Y = torch.cat([X @ torch.randn(p, q, generator=g, dtype=torch.float64), torch.randn(n, 5, generator=g,
                                                                                        dtype=torch.float64)], 1)
    return X + 3.0, torch.relu(Y)  # offsets: HSIC is translation invariant


def test_gram_debiased_cka_matches_the_instrument():
    # the once-per-representation statistics against debiased_cka computed from scratch (feature-space formula),
    # q = 305 features against n = 60 examples (the regime where the debiased estimator is needed)
    X, Y = _pair()
    assert Gram(X).cka(Gram(Y)) == pytest.approx(S.debiased_cka(X, Y), rel=1e-10)
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(1))
    assert Gram(X).cka(Gram(Y).permuted(perm)) == pytest.approx(S.debiased_cka(X, Y[perm]), rel=1e-9, abs=1e-12)
    # and against the dense kernel form (Song et al.'s estimator on n x n Gram matrices)
    K, L = X @ X.T, Y @ Y.T
    assert Gram(X).cka(Gram(Y)) == pytest.approx(S.kernel_cka(K, L, debiased=True), rel=1e-9)


def test_neighbour_masks_match_mutual_knn():
    X, Y = _pair(n=80, q=6, seed=2)
    labels = torch.arange(80) % 10
    nx, ny = Neighbours(X, labels, 5), Neighbours(Y, labels, 5)
    assert nx.align(ny) == pytest.approx(S.mutual_knn(X, Y, k=5), abs=1e-12)
    perm = torch.randperm(80, generator=torch.Generator().manual_seed(3))
    assert nx.align(ny, perm) == pytest.approx(S.mutual_knn(X, Y[perm], k=5), abs=1e-12)
    # within classes: 8 examples per class, so k = min(5, 8 - 2) = 5 neighbours among the class
    within = np.mean([S.mutual_knn(X[labels == c], Y[labels == c], k=5) for c in range(10)])
    assert nx.within(ny) == pytest.approx(within, abs=1e-12)
    # identical representations: every neighbour shared
    assert knn_alignment(neighbours(X, 5), neighbours(X, 5), 5) == 1.0


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 12).astype(float), rng.normal(size=12)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    boot = bootstrap_spearman(a, b, 50, seed=1)
    idx = np.random.default_rng(1).integers(0, 12, size=(50, 12))
    expected = [spearmanr(a[i], b[i]).statistic for i in idx]
    np.testing.assert_allclose(boot, expected, atol=1e-12)
    assert np.isnan(spearman(np.ones(4), np.arange(4.0)))  # a constant: no ranking


@pytest.mark.parametrize("arch", ["mlp", "cnn", "transformer"])
def test_representations_are_the_named_layers(arch):
    config = get(NAME).quick_config()
    model = build(arch, 8, config, seed=0)
    x = torch.randn(5, 64)
    reps = representations(arch, model, x)
    assert len(reps) == len(layer_names(arch, config))
    with torch.no_grad():  # the last is the readout's input: the readout of it is the network's output
        torch.testing.assert_close(model.readout(reps[-1].float()) if arch != "mlp"
                                   else model.layers[-1](reps[-1].float()), model(x))


def test_quick_run_controls(quick_run):
    exp = get(NAME)
    config = exp.quick_config()
    _, measurement, verdicts, figures = quick_run(NAME)
    assert figures and measurement.diverged_at is None
    pairs, networks = measurement.series["pairs"], measurement.series["networks"]
    n_nets = len(config.architectures) * len(config.widths)
    assert len(networks) == n_nets and len(pairs) == n_nets * (n_nets - 1) // 2
    cross = pairs[pairs["cross"]]
    # the permutation null of m_10 is k/(n - 1): each pair's value is a mean of n hypergeometric overlaps
    # (standard error ~ sqrt(k/(n-1)/ (n k)) = 0.002); the mean over 27 pairs within 0.003 of it
    chance = config.k / (config.n_compare - 1)
    assert abs(cross["knn_null"].mean() - chance) < 0.003
    # debiased CKA of a representation and a shuffled one is ~0: the null's max over ~9 layer pairs is small
    assert cross["max_cka_null"].abs().max() < 0.05
    # the metric-agreement table: every metric ranks the pairs as itself
    ag = measurement.series["agreement"]
    assert set(ag["metric_a"]) == set(AGREEMENT_METRICS)
    np.testing.assert_allclose(ag[ag.metric_a == ag.metric_b]["rho"], 1.0)
    # linear and debiased CKA of the narrow penultimate layers (<= 32 features, n = 500) rank alike
    assert ag[(ag.metric_a == "linear_cka") & (ag.metric_b == "debiased_cka")]["rho"].iloc[0] > 0.9
    judged = {v.key: v for v in verdicts}
    assert set(judged) == {"beats_init", "beats_permutation", "beats_labels", "tracks_accuracy"}
    assert -1.0 <= judged["tracks_accuracy"].details["rho_at_initialization"] <= 1.0


@pytest.mark.parametrize("label,violated", [
    ("CNNs at initialization", {"beats_init"}),
    ("transformers' examples shuffled", {"beats_init", "beats_permutation", "beats_labels"}),
])
def test_architecture_verdicts_fail_when_one_architecture_is_untrained_or_shuffled(quick_run, label, violated):
    # the acceptance: the architecture verdict violated when one network is left at its initialization
    # or its inputs are shuffled. Verdicts are judged per architecture pair (the minimum over pairs of the mean
    # over widths), so "one network" is one architecture: every width of it.
    exp = get(NAME)
    prediction, measurement, original, _ = quick_run(NAME)
    assert all(v.status == "holds" for v in original)
    before = measurement.series["pairs"].copy()
    cx = next(c for c in exp.counterexamples() if c.label == label)
    verdicts = {v.key: v for v in exp.verdict(exp.quick_config(), prediction,
                                              cx.perturb(exp.quick_config(), prediction, measurement))}
    for key in violated:
        assert verdicts[key].status == "violated", (key, verdicts[key].agreement)
    assert measurement.series["pairs"].equals(before)  # the perturbation leaves the measurement as it was


@pytest.mark.parametrize("override,field", [
    ({"architectures": "mlp"}, "architectures"),
    ({"architectures": "mlp,mlp"}, "architectures"),
    ({"widths": "8,9"}, "widths"),
    ({"widths": "8,8"}, "widths"),
    ({"n_compare": 900}, "n_compare"),
    ({"batch_size": 1200}, "batch_size"),
    ({"architectures": "lstm,mlp"}, "architectures"),
])
def test_bad_config_rejected_before_work(override, field):
    with pytest.raises(BadInput) as err:
        apply_overrides(get(NAME).quick_config(), [f"{k}={v}" for k, v in override.items()])
    assert field in str(err.value)


def test_untrained_networks_make_the_verdicts_inconclusive(quick_run):
    exp = get(NAME)
    prediction, measurement, _, _ = quick_run(NAME)
    strict = dataclasses.replace(exp.quick_config(), min_test_accuracy=0.99)
    assert all(v.status == "inconclusive" for v in exp.verdict(strict, prediction, measurement))


def test_a_dead_layer_is_undefined_not_a_crash():
    # a representation constant over the examples (dead ReLUs): the instruments refuse it, the law records nan
    from lmech.experiments.representation_alignment import _defined, _within_class

    X, _ = _pair(n=40, p=5, q=3)
    dead = torch.zeros(40, 5, dtype=torch.float64)
    assert np.isnan(_defined(S.debiased_cka, X, dead)) and np.isnan(_defined(S.svcca, dead, X))
    labels = torch.arange(40) % 10
    assert np.isnan(_within_class(S.debiased_cka, X, dead, labels))
    assert _defined(S.linear_cka, X, X) == pytest.approx(1.0)


def test_metric_agreement_is_in_the_verdicts(quick_run):
    _, _, verdicts, _ = quick_run(NAME)
    table = verdicts[0].details["metric_agreement"]
    assert len(table) == len(AGREEMENT_METRICS) * (len(AGREEMENT_METRICS) - 1) // 2
    assert table["linear_cka vs debiased_cka"] > 0.9
