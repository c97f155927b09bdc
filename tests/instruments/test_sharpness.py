"""SharpnessTracker against dense eigenvalues along real trajectories; thresholds against the
real torch optimizers' (in)stability on a quadratic."""

from __future__ import annotations

import pytest
import torch
from test_curvature import dense_hessian, make_problem

from lmech.errors import BadInput
from lmech.instruments import curvature
from lmech.instruments.sharpness import SharpnessTracker, stability_threshold


def growth(optimizer_cls, curvature_value: float, **kw) -> float:
    """|x_400| / |x_200| for ``optimizer_cls`` on f(x) = curvature/2 x^2, x one float64 parameter.

    The ratio over the second half measures the asymptotic rate, after the transient of the first
    steps (Adam's bias-corrected first steps alone amplify x by ~1e6). Starting at x_0 = 1e-100
    keeps |x| tiny throughout, so Adam's sqrt(v) ~ curvature * |x| stays negligible against eps = 1e3
    (a frozen preconditioner P = eps, the regime in which the threshold is derived).
    """
    x = torch.nn.Parameter(torch.tensor([1e-100], dtype=torch.float64))
    opt = optimizer_cls([x], **kw)
    history = []
    for _ in range(400):
        opt.zero_grad()
        (0.5 * curvature_value * x**2).sum().backward()
        opt.step()
        history.append(float(x.detach().abs()))
    return history[-1] / history[199]


@pytest.mark.parametrize(
    "cls, kw",
    [
        (torch.optim.SGD, {"lr": 0.1}),
        (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
        (torch.optim.SGD, {"lr": 0.1, "momentum": 0.5, "dampening": 0.3}),
        (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
        # eps >> sqrt(v): Adam/RMSprop with a frozen preconditioner P = eps (the regime in which the
        # threshold is derived); P^{-1}H = curvature / eps
        (torch.optim.Adam, {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e3}),
        (torch.optim.RMSprop, {"lr": 0.1, "eps": 1e3, "momentum": 0.5}),
    ],
)
def test_threshold_separates_stable_from_unstable_real_optimizers(cls, kw):
    x = torch.nn.Parameter(torch.zeros(1))
    threshold = stability_threshold(cls([x], **kw))
    scale = kw.get("eps", 1.0) if cls in (torch.optim.Adam, torch.optim.RMSprop) else 1.0
    # 3% on either side of the threshold the spectral radius is <= 0.95 or >= 1.05 for these
    # settings: over 200 steps x decays or grows by a factor >> 1e3
    assert growth(cls, 0.97 * threshold * scale, **kw) < 1e-3
    assert growth(cls, 1.03 * threshold * scale, **kw) > 1e3


def test_threshold_closed_forms():
    x = torch.nn.Parameter(torch.zeros(1))
    assert stability_threshold(lr=0.01) == pytest.approx(200.0, rel=1e-15)
    # Cohen et al. 2022: 38/eta for Adam at beta1 = 0.9
    assert stability_threshold(torch.optim.Adam([x], lr=1e-3)) == pytest.approx(38_000.0, rel=1e-12)
    with pytest.raises(BadInput, match="lr"):
        stability_threshold()
    with pytest.raises(BadInput, match="optimizer"):
        stability_threshold(torch.optim.Adagrad([x], lr=0.1))


def test_tracker_in_gd_loop_matches_dense_and_warm_start_saves_products():
    model, loss_fn, x, y = make_problem(5, n=30, width=8)
    lr = 0.5
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    warm = SharpnessTracker(k=2, tol=1e-10, max_iter=200)
    cold = SharpnessTracker(k=2, tol=1e-10, max_iter=200, warm_start=False)
    model.train()
    for step in range(8):
        if step % 2 == 0:
            exact = torch.linalg.eigvalsh(dense_hessian(model, loss_fn, x, y)).flip(0)[:2]
            rec = warm.measure(model, loss_fn, x, y, optimizer=opt)
            cold.measure(model, loss_fn, x, y, optimizer=opt)
            got = torch.tensor([rec["lambda_1"], rec["lambda_2"]], dtype=torch.float64)
            assert ((got - exact).abs() / exact).max() <= 1e-8
            assert rec["threshold"] == pytest.approx(2 / lr, rel=1e-15)
            assert rec["ratio"] == pytest.approx(rec["lambda_1"] * lr / 2, rel=1e-12)
            assert rec["converged"] and rec["warm"] == (step > 0)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    assert model.training  # the tracker measured in eval mode and restored the flag
    assert warm.total_hvps == sum(r["hvps"] for r in warm.history)
    warm_after_first = sum(r["hvps"] for r in warm.history[1:])
    cold_after_first = sum(r["hvps"] for r in cold.history[1:])
    assert warm_after_first < cold_after_first


def test_tracker_counts_every_hessian_vector_product(monkeypatch):
    model, loss_fn, x, y = make_problem(6, n=20, width=6)
    calls = []
    original = curvature.HessianOperator._matmat

    def counting(self, matrix):
        calls.append(matrix.shape[1])
        return original(self, matrix)

    monkeypatch.setattr(curvature.HessianOperator, "_matmat", counting)
    rec = SharpnessTracker(k=1, tol=1e-6).measure(model, loss_fn, x, y, lr=0.1)
    assert rec["hvps"] == sum(calls) > 0


def test_tracker_with_adam_measures_preconditioned_sharpness():
    model, loss_fn, x, y = make_problem(7, n=30, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    rec = SharpnessTracker(k=1, tol=1e-10).measure(model, loss_fn, x, y, optimizer=opt)
    P = curvature.optimizer_preconditioner(opt, list(model.parameters()))
    d = P.rsqrt()
    exact = torch.linalg.eigvalsh(d[:, None] * dense_hessian(model, loss_fn, x, y) * d[None, :]).max()
    assert rec["lambda_1"] == pytest.approx(float(exact), rel=1e-8)
    assert rec["threshold"] == pytest.approx(38 / 1e-2, rel=1e-12)
    # plain sharpness with Adam: no threshold (38/eta bounds P^{-1}H, not H)
    plain = SharpnessTracker(k=1, tol=1e-10, preconditioned=False).measure(model, loss_fn, x, y, optimizer=opt)
    assert "threshold" not in plain
    exact_plain = torch.linalg.eigvalsh(dense_hessian(model, loss_fn, x, y)).max()
    assert plain["lambda_1"] == pytest.approx(float(exact_plain), rel=1e-8)


def test_tracker_bad_inputs():
    model, loss_fn, x, y = make_problem(8, n=10, width=4)
    with pytest.raises(BadInput, match="k="):
        SharpnessTracker(k=0)
    with pytest.raises(BadInput, match="optimizer"):
        SharpnessTracker(preconditioned=True).measure(
            model, loss_fn, x, y, optimizer=torch.optim.SGD(model.parameters(), lr=0.1)
        )
    with pytest.raises(BadInput, match="k="):
        SharpnessTracker(k=10_000, max_iter=10_000).measure(model, loss_fn, x, y)
    with pytest.raises(BadInput, match="targets"):
        SharpnessTracker().measure(model, loss_fn, x, y[:3])
