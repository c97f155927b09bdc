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


class RotatingQuadratic(torch.nn.Module):
    """L(θ) = ½ θᵀ A θ with A = R D Rᵀ: its Hessian is A, its spectrum D whatever the rotation R."""

    def __init__(self, spectrum: torch.Tensor):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(spectrum.numel(), dtype=torch.float64))
        self.spectrum = spectrum
        self.rotation = torch.eye(spectrum.numel(), dtype=torch.float64)

    def forward(self, inputs):
        A = self.rotation @ torch.diag(self.spectrum) @ self.rotation.T
        return 0.5 * self.theta @ A @ self.theta + 0 * inputs.sum()


def _total_products(model, steps: list[torch.Tensor], **options) -> tuple[int, list[float]]:
    tracker = SharpnessTracker(k=1, tol=1e-8, max_iter=200, seed=3, **options)
    values = []
    for rotation in steps:
        model.rotation = rotation
        values.append(tracker.measure(model, lambda out, y: out, torch.zeros(1), torch.zeros(1))["lambda_1"])
    return sum(r["hvps"] for r in tracker.history[3:]), values


def test_predictor_start_follows_a_smoothly_rotating_eigenvector_with_fewer_products():
    # A(t) = exp(tK) D exp(tK)^T: the top eigenvector turns at a constant angular velocity (K skew),
    # so the predictor's extrapolation u_t + (u_t - u_{t-1}) is off by O(|K|^2) where the plain warm
    # start u_t is off by O(|K|): fewer products, and the same certified eigenvalue (D's largest).
    gen = torch.Generator().manual_seed(0)
    n = 60
    spectrum = torch.cat([torch.tensor([2.0, 1.9, 1.85]), torch.rand(n - 3, generator=gen, dtype=torch.float64)])
    spectrum = spectrum.to(torch.float64)
    K = torch.randn(n, n, generator=gen, dtype=torch.float64)
    K = 0.02 * (K - K.T)
    steps = [torch.linalg.matrix_exp(t * K) for t in range(10)]
    model = RotatingQuadratic(spectrum)
    with_predictor, values = _total_products(model, steps)
    without, plain_values = _total_products(model, steps, predict=False)
    for v in values + plain_values:  # both certified to 1e-8 by the residual bound
        assert v == pytest.approx(2.0, rel=1e-8)
    assert with_predictor < without


def test_predictor_step_is_the_displacement_weighted_by_its_consistency():
    # The predictor (Allgower & Georg's continuation predictor, weighted by the cosine c of the last
    # two displacements): opposed displacements (c = -1, a path that turned back) give the plain
    # warm start; repeated ones (c = 1) one full extrapolated step; a sign flip of an eigenvector
    # (no meaning) changes nothing.
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(40, 1, generator=gen, dtype=torch.float64)
    d = 0.05 * torch.randn(40, 1, generator=gen, dtype=torch.float64)
    tracker = SharpnessTracker(k=1)
    tracker._trail = [a, a + d, a]
    assert torch.equal(tracker._start(), a)
    tracker._trail = [a, -(a + d), a + 2 * d]
    assert torch.allclose(tracker._start(), a + 3 * d, atol=1e-12)
    tracker.predict = False
    assert torch.equal(tracker._start(), a + 2 * d)
