"""The representation-convergence law (Kornblith et al. 2019, Table 2): across seeds, linear CKA identifies the
corresponding layer, CCA-type indices do not. The counterexamples (examples shuffled, narrow networks, tanh)
run in tests/test_contract.py; here: the fast similarity tables against the instruments, the batched training
against training alone, and what the quick run reports."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from lmech.config import apply_overrides
from lmech.errors import BadInput
from lmech.experiments import get
from lmech.experiments.base import NullProgress
from lmech.experiments.representation_convergence import (
    METRICS,
    QUICK,
    ConvergenceConfig,
    _seeds,
    build_replicas,
    identification,
    representations,
    shifted,
    similarity_tables,
    train_replicas,
    within_tables,
)
from lmech.instruments import similarity as S
from lmech.models.cnn import SmallCNN


def _reps(seed: int = 0, k: int = 3, depth: int = 3, n: int = 60, p: int = 7) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    reps = []
    for _ in range(k):
        layers = [torch.randn(n, p, generator=g, dtype=torch.float64) for _ in range(depth)]
        reps.append([X - X.mean(0) for X in layers])
    return reps


def test_similarity_tables_match_the_instruments():
    # the experiment's once-per-representation statistics against lmech.instruments.similarity, pair by pair
    reps = _reps(p=9)
    reps[1][2] = reps[1][2][:, :4]  # a narrower layer: CCA's number of correlations is min(rank)
    table = similarity_tables(reps, keep_variance=0.9)
    assert set(table["metric"]) == set(METRICS) and len(table) == len(METRICS) * 3 * 2 * 9
    reference = {
        "linear_cka": S.linear_cka,
        "debiased_cka": S.debiased_cka,
        "svcca": lambda X, Y: S.svcca(X, Y, keep_variance=0.9),
        "cca": lambda X, Y: float(S.canonical_correlations(X, Y).mean()),
    }
    for row in table.itertuples():
        expected = reference[row.metric](reps[row.a][row.layer_a], reps[row.b][row.layer_b])
        assert row.value == pytest.approx(expected, rel=1e-9, abs=1e-12), row
    # the permutation null: b's rows permuted, every ordered pair, linear and debiased CKA only
    g = torch.Generator().manual_seed(5)
    perms = {(a, b): torch.randperm(60, generator=g) for a in range(3) for b in range(3) if a != b}
    null = similarity_tables(reps, keep_variance=0.9, permutations=perms)
    assert set(null["metric"]) == {"linear_cka", "debiased_cka"} and len(null) == 2 * 3 * 2 * 9
    for row in null.itertuples():
        Y = reps[row.b][row.layer_b][perms[(row.a, row.b)]]
        expected = reference[row.metric](reps[row.a][row.layer_a], Y)
        assert row.value == pytest.approx(expected, rel=1e-9, abs=1e-12), row
    # within a replica: the diagonal blocks of the seed-vs-seed heatmap
    within = within_tables(reps, "linear_cka")
    for row in within.itertuples():
        assert row.value == pytest.approx(S.linear_cka(reps[row.a][row.layer_a], reps[row.a][row.layer_b]), abs=1e-12)


def test_identification_counts_the_argmax():
    rows = [("m", 0, 1, 0, 0, 0.9), ("m", 0, 1, 0, 1, 0.5), ("m", 0, 1, 1, 0, 0.8), ("m", 0, 1, 1, 1, 0.7),
            ("m", 1, 0, 0, 0, 0.2), ("m", 1, 0, 0, 1, 0.3), ("m", 1, 0, 1, 0, 0.1), ("m", 1, 0, 1, 1, 0.6)]
    table = pd.DataFrame(rows, columns=["metric", "a", "b", "layer_a", "layer_b", "value"])
    out = identification(table).iloc[0]
    assert (out.hits, out.trials) == (2, 4) and out.accuracy == 0.5


def test_cka_tells_apart_what_cca_cannot():
    # Kornblith et al.'s argument on a constructed case: layer 1 is an invertible linear map of layer 0 (a
    # different geometry, the same column space). CCA, invariant to invertible maps, scores both layers 1 and
    # cannot identify them; linear CKA (only orthogonally invariant) can.
    g = torch.Generator().manual_seed(3)
    base = torch.randn(200, 5, generator=g, dtype=torch.float64)
    A = torch.diag(torch.tensor([8.0, 4.0, 1.0, 0.3, 0.1], dtype=torch.float64))

    def net(noise_seed):
        q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(noise_seed),
                                           dtype=torch.float64))
        layers = [base @ q, base @ A @ q]
        return [X - X.mean(0) for X in layers]

    table = similarity_tables([net(1), net(2)], keep_variance=1.0)
    acc = identification(table).set_index("metric")["accuracy"]
    assert acc["linear_cka"] == 1.0
    cca = table[table.metric == "cca"]["value"].to_numpy()
    np.testing.assert_allclose(cca, 1.0, atol=1e-9)


def test_batched_training_is_one_adam_per_replica():
    # two replicas trained together end where each trained alone ends (vmap and the stacked Adam act per replica)
    config = ConvergenceConfig(replicas=2, depth=2, width=16, steps=15, batch_size=32, n_train=200)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 64, generator=g), torch.randint(0, 10, (200,), generator=g)
    together = build_replicas(config)
    train_replicas(together, x, y, config, NullProgress())
    for i in range(2):
        alone = [build_replicas(config)[i]]
        train_replicas(alone, x, y, config, NullProgress())
        for (name, p), q in zip(together[i].named_parameters(), alone[0].parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    # and the replicas differ only by their initialization
    assert not torch.equal(together[0].layers[0].weight, together[1].layers[0].weight)


def test_shifted_digits_against_a_loop():
    # each image moved by (dy, dx) - shift with zeros shifted in: compared with an explicit copy, pixel by pixel
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 64, generator=g)
    out = shifted(x, 1, torch.Generator().manual_seed(2))
    dy, dx = torch.randint(0, 3, (2, 40), generator=torch.Generator().manual_seed(2))
    for b in range(40):
        img, want = x[b].reshape(8, 8), torch.zeros(8, 8)
        for r in range(8):
            for c in range(8):
                rr, cc = r + int(dy[b]) - 1, c + int(dx[b]) - 1
                if 0 <= rr < 8 and 0 <= cc < 8:
                    want[r, c] = img[rr, cc]
        torch.testing.assert_close(out[b].reshape(8, 8), want, rtol=0, atol=0)
    assert {(int(a), int(b)) for a, b in zip(dy, dx)} >= {(1, 1), (0, 2), (2, 0)}


def test_estimator_choice_and_what_is_compared():
    # debiased where examples are few against the width (features > n/4), biased otherwise, or as asked
    assert QUICK["mlp"].judged == "debiased_cka" and QUICK["mlp"].n_examples == 297
    assert ConvergenceConfig(width=128, n_train=1000).judged == "linear_cka"  # 128 < 797/4
    assert ConvergenceConfig(width=128).judged == "debiased_cka"  # 128 > 297/4
    assert ConvergenceConfig(width=256, estimator="biased").judged == "linear_cka"
    assert QUICK["cnn"].features == 16 * QUICK["cnn"].width
    # the full book: the CNN judges debiased CKA (256 features, 797 digits), the transformer biased (64, 1024)
    book = dict(get("representation-convergence").lawbook(quick=False))
    assert list(book) == ["mlp", "cnn", "transformer"]
    assert [c.judged for c in book.values()] == ["debiased_cka", "debiased_cka", "linear_cka"]
    for c in book.values():
        c.check()
    # a CNN layer: its activated feature maps pooled 2x2 to a 4x4 grid, flattened, centred
    config = ConvergenceConfig(architecture="cnn", replicas=2, depth=2, width=4)
    models = build_replicas(config)
    x = torch.randn(30, 64, generator=torch.Generator().manual_seed(3))
    reps = representations(models, x, config)
    h = torch.relu(models[1].hidden[0](torch.relu(models[1].input(x.reshape(30, 1, 8, 8)))))
    want = torch.nn.functional.avg_pool2d(h, 2).flatten(1).double()
    torch.testing.assert_close(reps[1][1], want - want.mean(0), rtol=1e-5, atol=1e-6)
    # a transformer block: its output at every position of every window, one example per position
    config = ConvergenceConfig(architecture="transformer", replicas=2, depth=2, width=8, block_size=5)
    models = build_replicas(config)
    tokens = torch.randint(0, 256, (3, 5), generator=torch.Generator().manual_seed(4))
    reps = representations(models, tokens, config)
    assert [X.shape for X in reps[0]] == [(15, 8), (15, 8)]


def test_pooled_cnn_and_what_is_compared():
    # SmallCNN(pool=True): a 2x2 max-pool between convolutions (8 -> 4 -> 2), written out here layer by layer
    config = ConvergenceConfig(architecture="cnn", replicas=2, depth=3, width=4, pool=True)
    models = build_replicas(config)
    m = models[0]
    x = torch.randn(30, 64, generator=torch.Generator().manual_seed(3))
    mp = torch.nn.functional.max_pool2d
    h1 = torch.relu(m.input(x.reshape(30, 1, 8, 8)))
    h2 = torch.relu(m.hidden[0](mp(h1, 2)))
    h3 = torch.relu(m.hidden[1](mp(h2, 2)))
    torch.testing.assert_close(m(x), m.readout(h3.mean((2, 3))))
    # compared: each layer as the next one reads it (max-pooled), the last unpooled: 4x4, 2x2, 2x2 grids
    reps = representations(models, x, config)
    for got, want in zip(reps[0], (mp(h1, 2), mp(h2, 2), h3)):
        want = want.flatten(1).double()
        torch.testing.assert_close(got, want - want.mean(0), rtol=1e-5, atol=1e-6)
    assert [X.shape[1] for X in reps[0]] == [64, 16, 16] and config.features == 64
    # the pools have no parameters: the same state dict as without them
    plain = SmallCNN(width=4, depth=3, seed=0)
    assert list(plain.state_dict()) == list(m.state_dict())
    with pytest.raises(BadInput, match="depth"):
        SmallCNN(width=4, depth=5, pool=True)  # 8 -> 4 -> 2 -> 1 -> nothing left to pool


def test_cosine_decay_against_torch_adam():
    # decay=True: lr_t = lr (1 + cos(pi (t - 1)/T))/2, checked against torch.optim.Adam with a LambdaLR schedule
    # on the same minibatches (one replica)
    config = ConvergenceConfig(replicas=1, depth=2, width=16, steps=12, batch_size=32, n_train=200, shift=0,
                               lr=1e-2, decay=True)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 64, generator=g), torch.randint(0, 10, (200,), generator=g)
    ours = build_replicas(config)
    train_replicas(ours, x, y, config, NullProgress())
    ref = build_replicas(config)[0]
    opt = torch.optim.Adam(ref.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / config.steps)))
    gen = torch.Generator().manual_seed(_seeds(config.seed + 2, 1)[0])
    for _ in range(config.steps):
        idx = torch.randint(0, 200, (config.batch_size,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(x[idx]), y[idx]).backward()
        opt.step()
        sched.step()
    for (name, p), q in zip(ours[0].named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    # and the schedule matters: without it the weights end elsewhere
    const = build_replicas(config)
    train_replicas(const, x, y, replace(config, decay=False), NullProgress())
    assert not torch.allclose(const[0].layers[0].weight, ours[0].layers[0].weight, atol=1e-4)


def test_batched_transformer_training_is_one_adam_per_replica():
    config = ConvergenceConfig(architecture="transformer", replicas=2, depth=2, width=8, block_size=6, batch_size=3,
                               steps=4)
    stream = torch.randint(0, 256, (200,), generator=torch.Generator().manual_seed(6))
    together = build_replicas(config)
    train_replicas(together, stream, None, config, NullProgress())
    for i in range(2):
        alone = [build_replicas(config)[i]]
        train_replicas(alone, stream, None, config, NullProgress())
        for (name, p), q in zip(together[i].named_parameters(), alone[0].parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_quick_run_reports_every_metric_and_the_controls(quick_run):
    _, measurement, verdicts, figures = quick_run("representation-convergence")
    config = get("representation-convergence").quick_config()
    assert figures and measurement.diverged_at is None
    summary = measurement.summary
    for metric in METRICS:
        assert 0.0 <= summary[f"{metric}_accuracy"] <= 1.0
    # the permutation null is at chance: no example corresponds (60 trials: within 4 standard errors of 1/depth)
    chance = 1.0 / config.depth
    assert abs(summary["null_accuracy"] - chance) <= 4 * math.sqrt(chance * (1 - chance) / 60)
    # debiased and biased CKA agree on which layer is which (n = 297 against width 256: debiased judged)
    assert abs(summary["debiased_cka_accuracy"] - summary["linear_cka_accuracy"]) <= 0.1
    # the networks are trained
    assert summary["min_test_accuracy"] >= 0.9
    judged = {v.key: v for v in verdicts}
    assert judged["cka_identifies"].details["published"]["linear_cka"] == 0.993
    assert judged["cka_identifies"].details["estimator"] == "debiased_cka" == config.judged
    assert judged["cka_identifies"].measured == summary["debiased_cka_accuracy"]
    # every metric's accuracy side by side, with the published one
    table = measurement.series["accuracy"].set_index("metric")
    assert list(table.index) == sorted(METRICS) and (table["trials"] == 60).all()
    assert table.loc["cca", "published"] == 0.014
    # the seed-vs-seed heatmap's diagonal blocks: each layer is itself
    within = measurement.series["within"]
    assert (within[within.layer_a == within.layer_b]["value"] == 1.0).all()
    sims = measurement.series["similarity"]
    # every metric is symmetric: S(a_i, b_j) = S(b_j, a_i)
    t = sims[sims.metric == "linear_cka"].set_index(["a", "b", "layer_a", "layer_b"])["value"]
    swapped = t.copy()
    swapped.index = swapped.index.reorder_levels([1, 0, 3, 2])
    pd.testing.assert_series_equal(t.sort_index(), swapped.sort_index(), check_names=False)


@pytest.mark.parametrize("override,field", [
    ({"batch_size": 1500, "n_train": 1000}, "batch_size"),
    ({"width": 8192, "replicas": 32}, "width"),
    ({"activation": "sin"}, "activation"),
    ({"architecture": "transformer", "width": 66}, "width"),
    ({"architecture": "vit"}, "architecture"),
    ({"pool": True}, "pool"),
    ({"architecture": "cnn", "pool": True, "depth": 5, "width": 8}, "depth"),
])
def test_bad_config_rejected_before_work(override, field):
    with pytest.raises(BadInput) as err:
        apply_overrides(get("representation-convergence").quick_config(), override)
    assert field in str(err.value)
