r"""Law: on real data (scikit-learn's digits), the data exponent of ridgeless kernel regression's learning curve
is predicted before training from the kernel's eigenvalues and the target's coefficients on its
eigenvectors, within 15% over a decade of n.

Setting: the population is the uniform measure on all 1,797 digits (pixels standardized), the target their
one-hot labels (10 outputs, squared errors summed), the kernel the analytic NTK (or NNGP) of a ReLU MLP of
``depth`` hidden layers (:func:`lmech.theory.kernels.mlp_kernels`, σ_w² = 2, no bias). Its Mercer
eigensystem under that measure is the eigendecomposition of the 1,797 × 1,797 kernel matrix
(:func:`lmech.theory.eigenlearning.empirical_eigensystem`): eigenvalues λ_i, target power v_i² (summed over
the 10 outputs).

Predictions (no training):

* **eigenlearning** (Simon et al. 2023, arXiv 2110.03922; :func:`lmech.theory.eigenlearning.learning_curve`):
  the ridgeless test MSE at each n from (λ_i, v_i²), and its log-log slope over the config's n window: the
  judged prediction. The curve is not a clean power law (its local slope rises from 0.4 at n = 20 to 0.8 at
  n = 640 and past 1 where n nears the 1,797 points of the population), so the prediction is the slope of the
  predicted curve over the same window as the measurement.
* **the power-law summary** (:mod:`lmech.theory.scaling`): b fitted to λ_i and a − 1 to the tail power
  Σ_{j≥k} v_j² over modes ``spectrum_modes`` (4-200), exponent min(a − 1, 2b); reported beside, not judged.

Measurement: ridgeless kernel regression (a 10⁻¹⁰·tr K/M jitter) on ``splits`` random training sets of each
size n in ``sample_sizes`` (drawn without replacement from the 1,797), its squared error on all 1,797 points
(the population risk of the uniform measure; the interpolated training points count with error ≈ 0), mean
over splits; the exponent is −slope of log MSE against log n over all of ``sample_sizes``
(:func:`lmech.laws.power_law.log_log_fit`).

Verdict ``data_exponent``: |measured/predicted − 1| ≤ 0.15 (the issue's number), predicted = the eigenlearning
curve's slope over the window.

Law book (quick): NTK, depth 2, n = 40-640 (13 sizes), 6 splits. Predicted 0.729 (eigenlearning slope over the
window; b = 1.28, a − 1 = 0.664 fitted over modes 4-200, summary min(a − 1, 2b) = 0.664). Measured at seeds 0,
1, 2: 0.661, 0.656, 0.675 (9.4%, 10.0%, 7.4% below the eigenlearning slope, against 15%; seeds 3, 4: 9.2%,
11.4%); the summary's 0.664 is closer (0.2-1.7%), by the cancellation of two drifts, and is reported, not
judged. The NNGP (``kernel=nngp``): b = 1.48, a − 1 = 0.677, eigenlearning slope 0.763 against a measured
0.696 (seed 0, −8.7%). The measured errors sit 0-12% below the eigenlearning curve at every n of the window
(the Gaussian-design assumption of eigenlearning holds only approximately for 1,797 real images), which is
why the measured exponent is consistently shallower. CPU ≈ 4 s (the 1,797² kernel once, shared by
prediction and measurement; 78 solves).
Where the power law breaks: below n ≈ 60 six splits scatter the local slope between 0.1
and 1.1; above n ≈ 640 (a third of the population) the finite population bends the curve down (local slope
1.0 at n ≈ 1,000, 2.5 at n = 1,280, both measured and predicted).

Last session's 25% miss (a measured 0.48-0.51 against the summary's 0.65) came from measuring on held-out
images while the spectrum was that of 1,000 others: here the population whose spectrum is measured is the one
the error is measured on.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmech.config import spec
from lmech.errors import BadInput
from lmech.experiments.base import Counterexample, Criterion, Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.registry import register
from lmech.laws.power_law import log_log_fit

TOLERANCE = 0.15


@dataclass(frozen=True)
class ScalingDigitsConfig(RunConfig):
    kernel: str = spec("ntk", "the analytic kernel of a ReLU MLP: ntk or nngp", choices=("ntk", "nngp"))
    depth: int = spec(2, "hidden layers of the MLP whose kernel is used", min=1, max=8)
    population: int = spec(1797, "the first digits that form the population (all 1,797 in the law book)", min=20,
                           max=1797)
    sample_sizes: tuple[int, ...] = spec((40, 50, 63, 80, 101, 127, 160, 202, 254, 320, 403, 508, 640),
                                         "training-set sizes n (increasing, a decade or more, below the "
                                         "population)", min=2, max=1796, max_items=64)
    splits: int = spec(6, "random training sets per n", min=1, max=256)
    spectrum_modes: tuple[int, int] = spec((4, 200), "modes over which b and a − 1 of the power-law summary are "
                                           "fitted", min=1, max=1797, max_items=2)

    def check(self) -> None:
        super().check()
        ns = self.sample_sizes
        if len(ns) < 3 or list(ns) != sorted(set(ns)):
            raise BadInput("sample_sizes", ns, "at least 3 distinct increasing sizes")
        if ns[-1] / ns[0] < 10:
            raise BadInput("sample_sizes", ns, "sizes spanning a decade or more (the issue's window)")
        if ns[-1] >= self.population:
            raise BadInput("sample_sizes", ns, f"sizes below the population of {self.population} digits")
        lo_hi = self.spectrum_modes
        if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1]:
            raise BadInput("spectrum_modes", lo_hi, "two mode indices, first < last")


def kernel_matrix(cfg: ScalingDigitsConfig) -> tuple[np.ndarray, np.ndarray]:
    """(K, Y): the kernel on the population's standardized digits and their one-hot labels, read-only.

    The prediction and the measurement of one run both need it; it is computed once per (population, depth,
    kernel), the only fields it depends on (:func:`_kernel_matrix`, a one-entry cache: neither side's result
    depends on the other's, only on the same deterministic matrix)."""
    return _kernel_matrix(int(cfg.population), int(cfg.depth), str(cfg.kernel))


@functools.lru_cache(maxsize=1)
def _kernel_matrix(population: int, depth: int, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    from lmech.data.digits import digits
    from lmech.theory.kernels import mlp_kernels

    x, y = digits(population)
    nngp, ntk = mlp_kernels(x, None, depth=depth, activation="relu", weight_std=math.sqrt(2), bias_std=None)
    K, Y = (ntk if kernel == "ntk" else nngp).numpy(), y.numpy()
    K.setflags(write=False)
    Y.setflags(write=False)
    return K, Y


def _slope(ns, values) -> float:
    return -float(np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(values, float)), 1)[0])


def predict_digits(cfg: ScalingDigitsConfig) -> Result:
    """The eigenlearning learning curve and its slope over the window; the power-law summary beside it."""
    from lmech.theory.eigenlearning import empirical_eigensystem, learning_curve

    K, Y = kernel_matrix(cfg)
    lam, phi = empirical_eigensystem(K)
    power = ((phi.T @ Y / len(K)) ** 2).sum(1)
    lam = np.clip(lam, 1e-300, None)
    ns = np.asarray(cfg.sample_sizes, float)
    wide = np.unique(np.round(np.geomspace(10, 0.85 * cfg.population, 40)))
    curve = learning_curve(lam, power, wide)["test_mse"]
    at = learning_curve(lam, power, ns)["test_mse"]
    k = np.arange(1, len(lam) + 1)
    lo, hi = cfg.spectrum_modes
    sel = (k >= lo) & (k <= min(hi, len(k)))
    tail = np.cumsum(power[::-1])[::-1]
    b = _slope(k[sel], lam[sel])
    a1 = _slope(k[sel], tail[sel])
    summary = {"predicted_exponent": _slope(ns, at), "fitted_b": b, "fitted_a_minus_1": a1,
               "power_law_exponent": min(a1, 2 * b)}
    return Result(series={"curve": pd.DataFrame({"n": wide, "test_mse": curve}),
                          "spectrum": pd.DataFrame({"mode": k, "eigenvalue": lam, "power": power, "tail": tail})},
                  summary=summary)


def measure_digits(cfg: ScalingDigitsConfig, progress: Progress | None = None) -> Result:
    progress = progress or NullProgress()
    progress.start(len(cfg.sample_sizes), "kernel regression on digits")
    K, Y = kernel_matrix(cfg)
    m = len(K)
    jitter = 1e-10 * np.trace(K) / m
    rng = np.random.default_rng(cfg.seed)
    rows = []
    for n in cfg.sample_sizes:
        for split in range(cfg.splits):
            idx = rng.choice(m, int(n), replace=False)
            alpha = np.linalg.solve(K[np.ix_(idx, idx)] + jitter * np.eye(int(n)), Y[idx])
            err = float(((K[:, idx] @ alpha - Y) ** 2).sum(1).mean())
            rows.append({"n": int(n), "split": split, "test_mse": err})
        progress.advance(1)
    runs = pd.DataFrame(rows)
    mean = runs.groupby("n", as_index=False)["test_mse"].mean()
    fit = log_log_fit(mean["n"].to_numpy(float), mean["test_mse"].to_numpy())
    summary = {"measured_exponent": -fit.slope, "low": -fit.slope_interval[1], "high": -fit.slope_interval[0]}
    diverged = None if np.all(np.isfinite(runs.test_mse.to_numpy())) else 0
    return Result(series={"runs": runs}, summary=summary, diverged_at=diverged)


@register
class ScalingDigits(Experiment):
    """Verdict: the measured data exponent of kernel regression on digits within 15% of the eigenlearning
    curve's slope over the same window (module docstring)."""

    name = "scaling-digits"
    law = ("On scikit-learn's digits, ridgeless regression with a ReLU MLP's analytic kernel has a learning-curve "
           "exponent predicted before training from the kernel's eigenvalues and the target's coefficients.")
    citation = ("Simon et al. 2023, arXiv 2110.03922; Bordelon, Atanasov & Pehlevan 2024, arXiv 2402.01092; "
                "Jacot et al. 2018, arXiv 1806.07572")
    Config = ScalingDigitsConfig

    def default_config(self) -> ScalingDigitsConfig:
        return ScalingDigitsConfig(splits=24)

    def quick_config(self) -> ScalingDigitsConfig:
        return ScalingDigitsConfig()

    def smoke_config(self) -> ScalingDigitsConfig:
        return ScalingDigitsConfig(population=300, sample_sizes=(10, 30, 100), splits=1)

    def lawbook(self, quick: bool = True) -> list[tuple[str, ScalingDigitsConfig]]:
        return [("ntk", self.quick_config() if quick else self.default_config())]

    def criteria(self) -> list[Criterion]:
        return [Criterion("data_exponent", "|measured / predicted − 1| of the data exponent over the window "
                          "(predicted: the eigenlearning curve's slope there)", TOLERANCE,
                          "the issue's 15%; the eigenlearning curve tracks the measured errors within 13% at "
                          "every n of the window (measured 7-11% off at seeds 0-4)")]

    def counterexamples(self) -> list[Counterexample]:
        return [Counterexample("exponent shallower by 20%", ("data_exponent",), perturb=_shallower,
                               why="every measured error multiplied by n^(0.2·predicted): a learning curve as flat as "
                                   "last session's held-out measurement (0.48-0.51) must be caught (15% tolerance)")]

    def predict(self, config: ScalingDigitsConfig) -> Result:
        return predict_digits(config)

    def measure(self, config: ScalingDigitsConfig, progress: Progress | None = None) -> Result:
        return measure_digits(config, progress)

    def verdict(self, config: ScalingDigitsConfig, prediction: Result, measurement: Result):
        pred = float(prediction.summary["predicted_exponent"])
        meas = float(measurement.summary["measured_exponent"])
        ns = config.sample_sizes
        return [self.make_verdict(
            "data_exponent", self.criteria()[0].quantity, pred, meas, abs(meas / pred - 1),
            inconclusive="the run diverged" if measurement.diverged_at is not None else None,
            interval=(float(measurement.summary["low"]), float(measurement.summary["high"])), window=(ns[0], ns[-1]),
            power_law_exponent=float(prediction.summary["power_law_exponent"]),
            fitted_b=float(prediction.summary["fitted_b"]), fitted_a_minus_1=float(prediction.summary["fitted_a_minus_1"]))]

    def figures(self, config: ScalingDigitsConfig, prediction: Result, measurement: Result, outdir: Path):
        from lmech.report import plotting as P

        fig, axes = P.panels(2, ncols=2, size=(4.8, 3.7))
        ax = axes[0]
        curve = prediction.series["curve"]
        ax.plot(curve.n, curve.test_mse, **P.THEORY, label="eigenlearning (from the spectrum)")
        runs = measurement.series["runs"]
        mean = runs.groupby("n", as_index=False)["test_mse"].mean()
        ax.plot(runs.n, runs.test_mse, ".", color="C0", alpha=0.3, markersize=3)
        ax.plot(mean.n, mean.test_mse, "o", color="C0", markersize=4, label="measured (mean of splits)")
        ax.axvspan(config.sample_sizes[0], config.sample_sizes[-1], color="grey", alpha=0.1, label="fit window")
        x = float(prediction.summary["power_law_exponent"])
        n0, l0 = float(mean.n.iloc[0]), float(mean.test_mse.iloc[0])
        ns = np.array([n0, float(mean.n.iloc[-1])])
        ax.plot(ns, l0 * (ns / n0) ** -x, color="C3", linewidth=2, alpha=0.6, label=f"min(a − 1, 2b) = {x:.3g}")
        ax.set(xscale="log", yscale="log", xlabel="training samples n", ylabel="test MSE (all 1,797 digits)",
               title=f"measured {measurement.summary['measured_exponent']:.3g}, predicted "
                     f"{prediction.summary['predicted_exponent']:.3g}")
        ax.legend(fontsize=7, frameon=False)
        ax = axes[1]
        spec_ = prediction.series["spectrum"]
        spec_ = spec_[spec_["mode"] <= 1000]
        ax.plot(spec_["mode"], spec_.eigenvalue, color="C0", label=f"eigenvalues (b = {prediction.summary['fitted_b']:.3g})")
        ax.plot(spec_["mode"], spec_["tail"], color="C1",
                label=f"target tail power (a − 1 = {prediction.summary['fitted_a_minus_1']:.3g})")
        ax.axvspan(*config.spectrum_modes, color="grey", alpha=0.1)
        ax.set(xscale="log", yscale="log", xlabel="mode", title=f"{config.kernel.upper()} spectrum on digits")
        ax.legend(fontsize=7, frameon=False)
        return [P.save(fig, outdir / "scaling-digits.png")]


def _shallower(config, prediction, measurement):
    pred = float(prediction.summary["predicted_exponent"])
    runs = measurement.series["runs"].copy()
    runs["test_mse"] = runs["test_mse"] * runs["n"].astype(float) ** (0.2 * pred)
    mean = runs.groupby("n", as_index=False)["test_mse"].mean()
    fit = log_log_fit(mean["n"].to_numpy(float), mean["test_mse"].to_numpy())
    summary = {"measured_exponent": -fit.slope, "low": -fit.slope_interval[1], "high": -fit.slope_interval[0]}
    return Result(series={"runs": runs}, summary=summary)
