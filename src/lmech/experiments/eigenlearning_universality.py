"""Law: eigenlearning's Gaussian universality, and where it fails: kernel regression with Gaussian features
follows the prediction of the kernel's spectrum; on low-dimensional spheres ridgeless regression departs
from it, by a gap that shrinks as the dimension grows.

The eigenlearning equations (Simon, Dickens, Karkada & DeWeese 2023, arXiv 2110.03922; :mod:`lmech.experiments.eigenlearning`)
use the data only through the kernel's eigenvalues and the target's eigencoefficients: they assume the
eigenfunctions evaluated at the samples behave like independent Gaussian variables (the Gaussian-design
model in which Bordelon, Canatar & Pehlevan 2020 and Jacot et al. 2020 derive them). For spherical
harmonics in low dimension that fails: Tomasini, Sclocchi & Wyart 2022 (arXiv 2202.03348) show that
ridgeless kernel regression on low-dimensional data is governed by the local geometry of the samples,
not the spectrum alone, and that the spectral prediction becomes right only as d → ∞ (or above a
crossover ridge).

Setting: the analytic ReLU NTK of depth 2 (NTK parametrization), the target of
:mod:`lmech.experiments.eigenlearning` (zonal harmonics of degrees 1–4, powers 1, ½, ¼, ⅛), ridgeless, n = 20…320.
Measured, ``trials`` training sets per n:

* the sphere S^(d−1) at each d in ``dims``;
* Gaussian features with the spectrum of the lowest-d sphere kernel (``data="gaussian"`` of eigenlearning:
  i.i.d. standard Gaussian eigenfunctions, the degrees beyond ``gaussian_features`` modes as a ridge of
  their trace, the prediction computed for exactly that spectrum and ridge).

The departure of a setting is Δ = max over n of (E_measured/E_predicted − 1), the worst relative excess of
the measured test MSE over the eigenlearning prediction (the metric eigenlearning judges).

Verdicts:

1. ``gaussian_follows``: Gaussian features with the lowest-d spectrum follow the prediction: χ²/k =
   (1/k) Σ_n (gap_n / s.e._n)² ≤ the 99.9% quantile of χ²_k/k (4.62 for k = 4), gap_n = E_measured/E_predicted
   − 1 and s.e._n its standard error over the trials. At d = 3 the test MSE of one training set scatters by
   ≈ 30% (few modes carry the error), so the standard errors are 4–7% and a worst-n 10% rule would judge noise.
2. ``sphere_departs``: the theory fails on the lowest-d sphere: max_n (gap_n − 2 s.e._n) ≥ 0.25 (at d = 3 the
   gap is +30% at n = 20 and grows to +50–130% at n = 160–320).
3. ``departure_shrinks``: the departure shrinks as d grows: Δ(d_max)/Δ(d_min) ≤ 0.25, reported with Δ at
   every d.

Measured (quick config: n = 40…320, 40 trials per n and setting, seeds 0–4): χ²/k of the Gaussian control
0.34–3.13 (≤ 4.62); the d = 3 departure's lower bound 0.46–0.78 (≥ 0.25), Δ(3) = 0.62–1.1; Δ(6) = 0.06–0.13;
Δ(12)/Δ(3) between −0.01 and 0.08 (≤ 0.25). Counterexamples (their configs, seeds 0–4): at n ≤ 8 the d = 3
lower bound is −0.06–0.03 (violated), from d = 3 to 4 the departure only halves (ratio 0.38–0.47, violated),
and the Gaussian control raised by 25% is violated. Cost: 12–15 s of CPU on one core (machine loaded, load
average ≈ 8 on 2 cores). The default config (50 trials, 1000 test points): 21 s of CPU; at seed 0 it holds
(χ²/k 0.47, lower bound 0.67, ratio 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmech.config import spec
from lmech.errors import BadInput
from lmech.experiments.base import Counterexample, Criterion, Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.eigenlearning import (
    EigenlearningConfig,
    draw_gaps,
    draw_learning_curve,
    measure_curves,
    mse_gaps,
    predict_curves,
)
from lmech.experiments.registry import register

#: the lowest-d sphere must depart by at least this much (verdict 2) and the departure shrink by this factor (3)
DEPARTURE_MIN = 0.25
SHRINK_MAX = 0.25
#: the Gaussian control's χ²/k must stay below this quantile of χ²_k/k
CHI2_LEVEL = 0.999


@dataclass(frozen=True)
class UniversalityConfig(RunConfig):
    dims: tuple[int, ...] = spec((3, 6, 12), "sphere dimensions d (increasing); the Gaussian control takes the "
                                 "spectrum of the first", min=2, max=128, max_items=8)
    kernel: str = spec("ntk", "the regression kernel: the analytic NTK or NNGP of the MLP", choices=("ntk", "nngp"))
    ridge: float = spec(0.0, "ridge δ (0: ridgeless interpolation, where low-d spheres depart)", min=0.0, max=1e6)
    ns: tuple[int, ...] = spec((40, 80, 160, 320), "training-set sizes n (from 40: at n = 20 eigenlearning's own "
                               "finite-n error with the d = 3 spectrum is ≈ +8%, measured)", min=1, max=4000)
    trials: int = spec(50, "training sets per n and setting", min=2, max=10**4)
    n_test: int = spec(1000, "fresh test points per trial (sphere)", min=10, max=2**16)
    gaussian_features: int = spec(3000, "Gaussian control: explicit features (whole degrees, lowest first)", min=1,
                                  max=2**16)

    def check(self) -> None:
        super().check()
        if len(self.dims) < 2 or list(self.dims) != sorted(set(self.dims)):
            raise BadInput("dims", self.dims, "at least 2 distinct increasing dimensions")
        if len(set(self.ns)) < 2:
            raise BadInput("ns", self.ns, "at least 2 distinct training-set sizes")
        for d in self.dims:  # each setting's own bounds (kernel sizes, multiplicities)
            self.setting(d, "sphere").check()
        self.setting(self.dims[0], "gaussian").check()

    def setting(self, d: int, data: str) -> EigenlearningConfig:
        """The eigenlearning config of one setting (sphere at d, or Gaussian features with its spectrum)."""
        return EigenlearningConfig(seed=self.seed, device=self.device, in_features=d, data=data, kernel=self.kernel,
                                   ridge=self.ridge, ns=self.ns, trials=self.trials, n_test=self.n_test,
                                   gaussian_features=self.gaussian_features, learnability_degrees=4)


def _settings(cfg: UniversalityConfig) -> list[tuple[str, int]]:
    return [("gaussian", cfg.dims[0])] + [("sphere", d) for d in cfg.dims]


def _stack(results: dict, names: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    out = {}
    for name in names:
        frames = [r.series[name].assign(data=data, d=d) for (data, d), r in results.items()]
        out[name] = pd.concat(frames, ignore_index=True)
    return out


def part(result: Result, data: str, d: int) -> Result:
    """One setting's slice of a universality prediction or measurement, as an eigenlearning Result."""
    series = {k: v[(v["data"] == data) & (v["d"] == d)].drop(columns=["data", "d"]).reset_index(drop=True)
              for k, v in result.series.items() if {"data", "d"} <= set(v.columns)}
    return Result(series=series)


def departures(config: UniversalityConfig, prediction: Result, measurement: Result) -> dict:
    """{(data, d): the gaps table of that setting (:func:`lmech.experiments.eigenlearning.mse_gaps`)}."""
    return {(data, d): mse_gaps(part(prediction, data, d), part(measurement, data, d))
            for data, d in _settings(config)}


@register
class EigenlearningUniversality(Experiment):
    """Verdicts: Gaussian features follow eigenlearning; the lowest-d sphere departs by ≥ 25%; the departure
    shrinks ≥ 4× by the highest d (module docstring)."""

    name = "eigenlearning-universality"
    law = ("Kernel regression with Gaussian features follows the eigenlearning prediction of its spectrum, while on "
           "a low-dimensional sphere ridgeless regression exceeds it by a gap that shrinks as the dimension grows.")
    citation = ("Simon, Dickens, Karkada & DeWeese 2023, arXiv 2110.03922; Tomasini, Sclocchi & Wyart 2022, "
                "arXiv 2202.03348")
    Config = UniversalityConfig

    def quick_config(self) -> UniversalityConfig:
        """d = 3, 6, 12 and the Gaussian control, n = 40-320, 40 trials, 500 test points."""
        return UniversalityConfig(trials=40, n_test=500)

    def smoke_config(self) -> UniversalityConfig:
        return UniversalityConfig(dims=(3, 6), ns=(20, 40), trials=3, n_test=100, gaussian_features=500)

    def counterexamples(self) -> list[Counterexample]:
        def inflate_gaussian(config, prediction, measurement):
            series = dict(measurement.series)
            curve = series["learning_curve"].copy()
            rows = curve["data"] == "gaussian"
            curve.loc[rows, ["test_mse", "std", "sem"]] *= 1.25
            series["learning_curve"] = curve
            return Result(series=series, summary=dict(measurement.summary))

        return [
            Counterexample(
                "Gaussian control 25% off", ("gaussian_follows",), perturb=inflate_gaussian,
                why="every trial's test MSE of the Gaussian control raised by 25% (the size of the d = 3 sphere's "
                    "departure at n = 20): a control that departs like the sphere does not follow the theory"),
            Counterexample(
                "tiny n", ("sphere_departs",), config=UniversalityConfig(dims=(3, 6), ns=(2, 3, 5, 8), trials=50,
                                                                          n_test=500),
                why="the d = 3 departure grows with n (Tomasini et al.: ridgeless regression is ruled by the local "
                    "geometry of the samples once they are dense enough); at n ≤ 8 the sphere follows the "
                    "prediction within 15% (measured: the departure's lower bound ≤ 0.06, seeds 0-4)"),
            Counterexample(
                "d = 3 vs 4", ("departure_shrinks",), config=UniversalityConfig(dims=(3, 4), ns=(80, 160, 320), trials=30,
                                                                                   n_test=500),
                why="from d = 3 to d = 4 the departure shrinks only by half (ratio 0.38-0.47, seeds 0-4), not 4×: "
                    "it vanishes only as d grows large (Tomasini et al.)"),
        ]

    def criteria(self) -> list[Criterion]:
        from scipy import stats

        k = len(set(UniversalityConfig().ns))
        return [
            Criterion("gaussian_follows", "χ²/k of the Gaussian control's gaps E_measured / E_predicted − 1 against "
                      "their standard errors (k values of n)", float(stats.chi2.ppf(CHI2_LEVEL, k) / k),
                      why=f"the {CHI2_LEVEL:.1%} quantile of χ²_k/k (shown for the default k = {k}): the trials' "
                          "scatter alone exceeds it once in 1000 runs; at d = 3 the per-trial spread is ≈ 30%, so a "
                          "worst-n 10% test has no power (measured 0.34-3.13, seeds 0-4)"),
            Criterion("sphere_departs", "lowest-d sphere: max over n of (E_measured / E_predicted − 1 − 2 s.e.)",
                      (DEPARTURE_MIN, 1e3),
                      why="2.5× eigenlearning's own tolerance (0.1), counted from 2 standard errors below the measured "
                          "gap: no noise or finite-n error explains it (measured 0.46-0.78, seeds 0-4)"),
            Criterion("departure_shrinks", "Δ(d_max) / Δ(d_min), Δ = max over n of (E_measured / E_predicted − 1)",
                      SHRINK_MAX,
                      why="Δ(12) is within ~2 standard errors of 0 (≤ 0.08) and Δ(3) = 0.6-1.1 (seeds 0-4): a factor "
                          "4 leaves room for that noise and fails where the departure persists (d = 4: ratio ≈ 0.4)"),
        ]

    # -- theory ------------------------------------------------------------------------------------
    def predict(self, config: UniversalityConfig) -> Result:
        results = {(data, d): predict_curves(config.setting(d, data)) for data, d in _settings(config)}
        return Result(series=_stack(results, ("learning_curve", "learnability", "spectrum")))

    # -- experiment --------------------------------------------------------------------------------
    def measure(self, config: UniversalityConfig, progress: Progress | None = None) -> Result:
        progress = progress or NullProgress()
        results = {(data, d): measure_curves(config.setting(d, data), progress) for data, d in _settings(config)}
        return Result(series=_stack(results, ("trials", "learning_curve", "learnability")))

    # -- verdict -----------------------------------------------------------------------------------
    def verdict(self, config: UniversalityConfig, prediction: Result, measurement: Result):
        from scipy import stats

        gaps = departures(config, prediction, measurement)
        d0, d1 = config.dims[0], config.dims[-1]
        gauss, low = gaps[("gaussian", d0)], gaps[("sphere", d0)]
        chi2 = float(np.sum((gauss["gap"] / gauss["sem"]) ** 2))
        k = len(gauss)
        chi2_max = float(stats.chi2.ppf(CHI2_LEVEL, k) / k)
        delta = {d: float(gaps[("sphere", d)]["gap"].max()) for d in config.dims}
        lower = float((low["gap"] - 2 * low["sem"]).max())
        per_n = {f"{data} d={d}": dict(zip(g["n"].tolist(), g["gap"].round(4).tolist())) for (data, d), g in gaps.items()}
        ratio = delta[d1] / delta[d0] if delta[d0] > 0 else float("nan")
        return [
            self.make_verdict(
                "gaussian_follows", f"Gaussian features, spectrum of S^{d0 - 1}: χ²/k of the gaps E_measured / "
                f"E_predicted − 1 against their standard errors, k = {k} values of n", 1.0, chi2 / k, chi2 / k,
                chi2_max,
                per_n=per_n[f"gaussian d={d0}"], sem=dict(zip(gauss["n"].tolist(), gauss["sem"].tolist()))),
            self.make_verdict(
                "sphere_departs", f"S^{d0 - 1}: max over n of (E_measured / E_predicted − 1 − 2 s.e.), the departure's "
                "lower bound", f"≥ {DEPARTURE_MIN:g} (Gaussian universality fails)", lower, lower, (DEPARTURE_MIN, 1e3),
                departure=delta[d0], per_n=per_n[f"sphere d={d0}"],
                sem=dict(zip(low["n"].tolist(), low["sem"].tolist()))),
            self.make_verdict(
                "departure_shrinks", f"Δ(d = {d1}) / Δ(d = {d0}), Δ = max over n of (E_measured / E_predicted − 1)",
                f"≤ {SHRINK_MAX:g}", ratio, ratio, SHRINK_MAX,
                departure_by_d=delta, per_n=per_n),
        ]

    # -- figures -----------------------------------------------------------------------------------
    def figures(self, config: UniversalityConfig, prediction: Result, measurement: Result, outdir: Path):
        from matplotlib.ticker import NullFormatter

        from lmech.report import plotting as P

        gaps = departures(config, prediction, measurement)
        fig, (ax_curve, ax_gap, ax_d) = P.panels(3, ncols=3, size=(5.0, 4.0))
        d0 = config.dims[0]
        sphere_colors = dict(zip(config.dims, ["C3", "C1", "C2", "C4", "C5", "C6", "C7", "C8"]))
        draw_learning_curve(ax_curve, part(prediction, "sphere", d0), part(measurement, "sphere", d0), "", 0,
                            color=sphere_colors[d0], label=f"sphere S^{d0 - 1}")
        draw_learning_curve(ax_curve, part(prediction, "gaussian", d0), part(measurement, "gaussian", d0),
                            f"spectrum of S^{d0 - 1}", 0, color="C0", label="Gaussian features")
        ax_curve.set_title(f"learning curves, one spectrum (S^{d0 - 1}'s), two kinds of data", fontsize=10)
        ax_curve.legend(fontsize=7, frameon=False, loc="lower left")
        rows = [(f"Gaussian features (spectrum of S^{d0 - 1})", "C0", gaps[("gaussian", d0)])]
        rows += [(f"sphere S^{d - 1}", sphere_colors[d], gaps[("sphere", d)]) for d in config.dims]
        draw_gaps(ax_gap, rows, None)
        lo = min(float((g["gap"] - g["sem"]).min()) for _, _, g in rows)
        hi = max(float((g["gap"] + g["sem"]).max()) for _, _, g in rows)
        ax_gap.set_ylim(lo - 0.05 * (hi - lo), hi + 0.6 * (hi - lo))  # room for the legend above the data
        ax_gap.set_title("relative test-MSE gap, mean ± s.e. (departure Δ = worst n)", fontsize=10)
        dims = np.array(config.dims)
        delta = np.array([gaps[("sphere", d)]["gap"].max() for d in config.dims])
        ax_d.plot(dims, delta, "o-", color="grey", zorder=1)
        for d, value in zip(dims, delta):
            ax_d.plot([d], [value], "o", color=sphere_colors[int(d)], markersize=8, zorder=2)
        ax_d.plot([], [], "o-", color="grey", label="sphere: Δ(d), the worst-n gap")
        ax_d.axhline(float(gaps[("gaussian", d0)]["gap"].abs().max()), color="C0", linestyle=":",
                     label=f"Gaussian features: max |gap| (spectrum of S^{d0 - 1})")
        ax_d.axhline(DEPARTURE_MIN, color="C3", linewidth=0.8, linestyle="--",
                     label=f"judged: Δ(d = {d0}) − 2 s.e. ≥ {DEPARTURE_MIN:g}")
        ax_d.axhline(SHRINK_MAX * delta[0], color="C2", linewidth=0.8, linestyle="--",
                     label=f"judged: Δ(d = {dims[-1]}) ≤ {SHRINK_MAX:g}·Δ(d = {d0})")
        ax_d.axhline(0.0, color="black", linewidth=0.8)
        ax_d.set(xscale="log", xlabel="dimension d", ylabel="departure Δ", title="the sphere's departure shrinks with d")
        ax_d.set_xticks(dims)
        ax_d.set_xticklabels([str(d) for d in dims])
        ax_d.xaxis.set_minor_formatter(NullFormatter())
        ax_d.legend(fontsize=7, frameon=False, loc="upper right")
        return [P.save(fig, outdir / "eigenlearning-universality.png")]
