"""Law: the test error of kernel regression follows from the kernel's eigensystem (eigenlearning).

Simon, Dickens, Karkada & DeWeese 2023 (arXiv 2110.03922, the eigenlearning equations; the same
learning curves as Bordelon, Canatar & Pehlevan 2020, arXiv 2002.02561, and Jacot et al. 2020, arXiv
2006.05013): kernel (ridge) regression on n i.i.d. samples, with the kernel's Mercer eigenvalues λ_i and
the target's eigencoefficients v_i, has test MSE

    E = E0 (Σ_i (1 − L_i)² v_i² + σ²),    L_i = λ_i/(λ_i + κ),    E0 = n/(n − Σ_i L_i²),

with κ the root of the conservation law Σ_i L_i + δ/κ = n (δ the ridge, σ² the label noise);
:mod:`lmech.theory.eigenlearning`.

Setting: the analytic NTK (:func:`lmech.theory.kernels.dot_product_kernels`: ReLU MLP, NTK
parametrization) — or its NNGP, ``kernel="nngp"`` — of inputs uniform on the sphere S^(d−1) (radius √d).
It is a dot-product kernel, so its eigenfunctions are the spherical harmonics and its eigenvalues λ_ℓ
(multiplicity N(d, ℓ)) follow from the Funk–Hecke formula (:func:`lmech.theory.eigenlearning.sphere_eigenvalues`),
for ℓ ≤ ``max_degree``. The remaining degrees, whose eigenvalues are all far below κ, are kept as a flat
continuum of total trace τ = k(1) − Σ_{ℓ≤L} N_ℓ λ_ℓ (addition theorem: Σ_ℓ N_ℓ λ_ℓ = k(1)), one eigenvalue
τ/M of multiplicity M = 10¹²: its learnability sum is τ/(κ + τ/M) → τ/κ, the "high modes act as a ridge"
of the eigenlearning literature, exact up to O(λ_{L+1}/κ) (reported as ``tail_ratio``).

The target is a sum of zonal harmonics, f(x) = Σ_ℓ c_ℓ √N_ℓ P_ℓ(x̂·u_ℓ) with random unit u_ℓ: each term lies
in the degree-ℓ eigenspace with squared norm c_ℓ² (‖P_ℓ(x̂·u)‖² = 1/N_ℓ), so the target power per degree is
known exactly. Labels carry Gaussian noise of variance σ².

Measurement: for each n, ``trials`` independent training sets; the regression with the same kernel;
test MSE on ``n_test`` fresh uniform points against the clean target, plus σ² (the expected MSE on noisy
test labels, what E predicts). Also measured: the learnability of each target degree,
⟨f̂[f_ℓ], f_ℓ⟩/‖f_ℓ‖² (regression on that component alone, Monte Carlo inner product).

Verdicts: (1) the mean over n of |E_measured/E_predicted − 1| ≤ 0.1 (the issue's tolerance; the trial
average has a standard error of 1–4%, and the theory's own finite-n error in this setting is a few %);
(2) the conservation law max_n |Σ_i N_i L_i + δ/κ − n|/n ≤ 1e-6 (κ is solved to ~1e-15).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmech.config import MAX_ELEMENTS, check_budget, spec
from lmech.data.synthetic import generator, sphere_points
from lmech.errors import BadInput
from lmech.experiments.base import Experiment, NullProgress, Progress, Result, RunConfig
from lmech.experiments.registry import register
from lmech.theory.eigenlearning import eigenlearning, gegenbauer, sphere_eigenvalues, sphere_multiplicity
from lmech.theory.kernels import dot_product_kernels, mlp_kernels

#: multiplicity of the flat continuum standing for the degrees above max_degree (module docstring)
TAIL_MULTIPLICITY = 1e12


@dataclass(frozen=True)
class EigenlearningConfig(RunConfig):
    in_features: int = spec(6, "ambient dimension d: inputs uniform on the sphere S^(d-1) of radius √d "
                           "(<= 128: beyond, the Gauss–Jacobi weight (1 − t²)^((d−3)/2) underflows)", min=2, max=128)
    kernel: str = spec("ntk", "the regression kernel: the analytic NTK or NNGP of the MLP", choices=("ntk", "nngp"))
    depth: int = spec(2, "hidden layers of the MLP whose kernel is used", min=1, max=8)
    weight_std: float = spec(1.4142135623730951, "σ_w of every layer", min=0.0, max=100.0, min_exclusive=True)
    bias_std: float = spec(0.1, "σ_b of every layer", min=0.0, max=100.0)
    degrees: tuple[int, ...] = spec((1, 2, 3, 4), "spherical-harmonic degrees ℓ of the target", min=0, max=4096,
                                    max_items=16)
    powers: tuple[float, ...] = spec((1.0, 0.5, 0.25, 0.125), "target power c_ℓ² in each degree", min=0.0, max=1e6,
                                     max_items=16)
    noise_var: float = spec(0.0, "label-noise variance σ²", min=0.0, max=1e6)
    ridge: float = spec(0.0, "ridge δ (0: ridgeless interpolation)", min=0.0, max=1e6)
    ns: tuple[int, ...] = spec((20, 40, 80, 160, 320, 640), "training-set sizes n (a decade or more)", min=1,
                                max=2**13)
    trials: int = spec(100, "training sets per n", min=1, max=10**4)
    n_test: int = spec(2000, "fresh test points per trial", min=10, max=2**16)
    max_degree: int = spec(150, "degrees resolved by Funk–Hecke; higher ones are the flat continuum", min=1,
                            max=4096)
    quadrature_points: int = spec(4096, "Gauss–Jacobi nodes of the Funk–Hecke integrals", min=16,
                                   max=2**16)

    def check(self) -> None:
        super().check()
        if len(self.degrees) != len(self.powers) or not self.degrees:
            raise BadInput("powers", self.powers, f"one power per target degree ({len(self.degrees)})")
        if len(set(self.degrees)) != len(self.degrees):
            raise BadInput("degrees", self.degrees, "distinct degrees")
        if max(self.degrees) > self.max_degree:
            raise BadInput("max_degree", self.max_degree, f">= the largest target degree {max(self.degrees)}")
        if self.quadrature_points <= self.max_degree:
            raise BadInput("quadrature_points", self.quadrature_points, f"> max_degree = {self.max_degree}")
        if len(set(self.ns)) < 2:
            raise BadInput("ns", self.ns, "at least 2 distinct training-set sizes")
        check_budget("n_test", self.n_test, self.n_test * max(self.ns), MAX_ELEMENTS,
                     "elements of the test kernel (n_test·max(ns))")
        check_budget("max_degree", self.max_degree, self.max_degree * self.quadrature_points, MAX_ELEMENTS,
                     "Gegenbauer evaluations (max_degree·quadrature_points)")
        # the multiplicity N(d, ℓ) ~ C(ℓ + d − 2, ℓ) of the highest degree must be a finite float
        if math.comb(self.max_degree + self.in_features - 2, self.max_degree) > 1e300:
            raise BadInput("max_degree", self.max_degree, f"a degree whose multiplicity on S^{self.in_features - 1} "
                           "is a finite float (lower max_degree or in_features)")


def _profile(cfg: EigenlearningConfig):
    """k(t): the kernel as a function of the cosine between two inputs (unit input variance)."""
    index = 0 if cfg.kernel == "nngp" else 1
    return lambda t: dot_product_kernels(t, cfg.depth, "relu", cfg.weight_std, cfg.bias_std, "ntk")[index].numpy()


def _gram(cfg: EigenlearningConfig, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    nngp, ntk = mlp_kernels(x1, x2, cfg.depth, "relu", cfg.weight_std, cfg.bias_std, "ntk")
    return nngp if cfg.kernel == "nngp" else ntk


@dataclass
class Spectrum:
    """Funk–Hecke eigenvalues and multiplicities for ℓ ≤ L plus the flat continuum (last entry)."""

    eigenvalues: np.ndarray
    multiplicities: np.ndarray
    tail_trace: float

    def power(self, degrees, powers) -> np.ndarray:
        out = np.zeros_like(self.eigenvalues)
        out[list(degrees)] = powers
        return out


def spectrum(cfg: EigenlearningConfig) -> Spectrum:
    """The kernel's Mercer eigensystem on the sphere (module docstring)."""
    profile = _profile(cfg)
    lam, mult = sphere_eigenvalues(profile, cfg.in_features, cfg.max_degree, points=cfg.quadrature_points)
    tail = max(float(profile(np.array([1.0]))[0]) - float(np.sum(lam * mult)), 0.0)
    return Spectrum(np.append(lam, tail / TAIL_MULTIPLICITY), np.append(mult, TAIL_MULTIPLICITY), tail)


class _Target:
    """f = Σ_ℓ c_ℓ √N_ℓ P_ℓ(x̂·u_ℓ) with random unit directions u_ℓ from the run's seed."""

    def __init__(self, cfg: EigenlearningConfig, gen: torch.Generator):
        d = cfg.in_features
        self.cfg = cfg
        self.directions = []
        for _ in cfg.degrees:
            u = torch.randn(d, generator=gen, dtype=torch.float64)
            self.directions.append(u / u.norm())
        self.scales = [math.sqrt(p * sphere_multiplicity(d, ell)) for ell, p in zip(cfg.degrees, cfg.powers)]

    def components(self, x: torch.Tensor) -> torch.Tensor:
        """(n, number of degrees): each degree's term at the points."""
        xh = (x / x.norm(dim=1, keepdim=True)).numpy()
        cols = [s * gegenbauer(ell, self.cfg.in_features, np.clip(xh @ u.numpy(), -1, 1))
                for ell, s, u in zip(self.cfg.degrees, self.scales, self.directions)]
        return torch.as_tensor(np.stack(cols, axis=1))


@register
class Eigenlearning(Experiment):
    """Verdicts: mean relative test-MSE error over n ≤ 0.1; conservation law to 1e-6 (module docstring)."""

    name = "eigenlearning"
    law = ("The test MSE of kernel regression on n samples equals E0·(Σ_i (1 − L_i)² v_i² + σ²) with learnabilities "
           "L_i = λ_i/(λ_i + κ) fixed by the conservation law Σ_i L_i + δ/κ = n.")
    citation = "Simon, Dickens, Karkada & DeWeese 2023, arXiv 2110.03922 (the eigenlearning equations)"
    Config = EigenlearningConfig

    def quick_config(self) -> EigenlearningConfig:
        return EigenlearningConfig(ns=(20, 40, 80, 160, 320), trials=50, n_test=1000)

    # -- theory ------------------------------------------------------------------------------------
    def predict(self, config: EigenlearningConfig) -> Result:
        spec_ = spectrum(config)
        power = spec_.power(config.degrees, config.powers)
        rows, learn_rows = [], []
        for n in config.ns:
            p = eigenlearning(spec_.eigenvalues, power, float(n), config.ridge, config.noise_var, spec_.multiplicities)
            total = float(np.sum(spec_.multiplicities * p.learnabilities)) + config.ridge / p.kappa
            rows.append({"n": n, "test_mse": p.test_mse, "train_mse": p.train_mse, "kappa": p.kappa,
                         "e0": p.overfitting_coefficient, "learnability_sum": total,
                         "conservation_residual": abs(total - n) / n,
                         "tail_ratio": float(spec_.eigenvalues[-2] / p.kappa)})
            for ell in config.degrees:
                learn_rows.append({"n": n, "degree": ell, "learnability": float(p.learnabilities[ell])})
        lam, mult = spec_.eigenvalues[:-1], spec_.multiplicities[:-1]
        return Result(series={"learning_curve": pd.DataFrame(rows), "learnability": pd.DataFrame(learn_rows),
                              "spectrum": pd.DataFrame({"degree": np.arange(len(lam)), "eigenvalue": lam,
                                                        "multiplicity": mult})},
                      summary={"tail_trace": spec_.tail_trace, "lambda_0": float(lam[0])})

    # -- experiment --------------------------------------------------------------------------------
    def measure(self, config: EigenlearningConfig, progress: Progress | None = None) -> Result:
        progress = progress or NullProgress()
        progress.start(len(config.ns) * config.trials, "eigenlearning")
        target = _Target(config, generator(config.seed))
        gen = generator(config.seed + 1_000_003)
        power = torch.tensor(config.powers, dtype=torch.float64)
        rows = []
        for n in config.ns:
            for trial in range(config.trials):
                x = sphere_points(n, config.in_features, gen)
                x_test = sphere_points(config.n_test, config.in_features, gen)
                comps, comps_test = target.components(x), target.components(x_test)
                y = comps.sum(1) + math.sqrt(config.noise_var) * torch.randn(n, generator=gen, dtype=torch.float64)
                k = _gram(config, x)
                if config.ridge:
                    k = k + config.ridge * torch.eye(n, dtype=torch.float64)
                coef = torch.linalg.solve(k, torch.cat([y[:, None], comps], dim=1))  # labels, then each degree
                pred = _gram(config, x_test, x) @ coef
                mse = float((pred[:, 0] - comps_test.sum(1)).pow(2).mean()) + config.noise_var
                learn = (pred[:, 1:] * comps_test).mean(0) / power.clamp(min=1e-300)
                row = {"n": n, "trial": trial, "test_mse": mse}
                row.update({f"learnability_{ell}": float(v) for ell, v in zip(config.degrees, learn)})
                rows.append(row)
                progress.advance(1)
        trials = pd.DataFrame(rows)
        curve = trials.groupby("n", sort=True)["test_mse"].agg(["mean", "std", "count"]).reset_index()
        curve["sem"] = curve["std"] / np.sqrt(curve["count"])
        learn_rows = [{"n": n, "degree": ell, "learnability": float(trials[trials.n == n][f"learnability_{ell}"].mean())}
                      for n in sorted(set(config.ns)) for ell in config.degrees]
        return Result(series={"trials": trials, "learning_curve": curve.rename(columns={"mean": "test_mse"}),
                              "learnability": pd.DataFrame(learn_rows)},
                      summary={"test_mse_largest_n": float(curve["mean"].iloc[-1])})

    # -- verdict -----------------------------------------------------------------------------------
    def verdict(self, config: EigenlearningConfig, prediction: Result, measurement: Result):
        pred = prediction.series["learning_curve"].set_index("n")
        meas = measurement.series["learning_curve"].set_index("n")
        ns = sorted(set(config.ns))
        e_pred = pred.loc[ns, "test_mse"].to_numpy()
        e_meas = meas.loc[ns, "test_mse"].to_numpy()
        rel = np.abs(e_meas / e_pred - 1.0)
        residual = float(pred["conservation_residual"].max())
        return [
            self.make_verdict("test_mse", "mean over n of |E_measured / E_predicted − 1|", e_pred, e_meas,
                              float(np.mean(rel)), 0.1, per_n=dict(zip(ns, rel.tolist())),
                              sem=dict(zip(ns, meas.loc[ns, "sem"].tolist()))),
            self.make_verdict("conservation", "max over n of |Σ_i N_i L_i + δ/κ − n| / n", 0.0, residual,
                              residual, 1e-6, learnability_sum=dict(zip(ns, pred.loc[ns, "learnability_sum"].tolist())),
                              tail_ratio_max=float(pred["tail_ratio"].max())),
        ]

    # -- figures -----------------------------------------------------------------------------------
    def figures(self, config: EigenlearningConfig, prediction: Result, measurement: Result, outdir: Path):
        from lmech.report import plotting as P

        fig, (ax_curve, ax_learn, ax_spec) = P.panels(3, ncols=3, size=(4.6, 3.8))
        pred, meas = prediction.series["learning_curve"], measurement.series["learning_curve"]
        ax_curve.errorbar(meas["n"], meas["test_mse"], yerr=meas["sem"], fmt="o", color="C0", **P.MEASURED)
        ax_curve.plot(pred["n"], pred["test_mse"], **P.THEORY)
        ax_curve.set(xscale="log", yscale="log", xlabel="training samples n", ylabel="test MSE",
                     title=f"learning curve ({config.kernel.upper()}, S^{config.in_features - 1})")
        P.theory_legend(ax_curve)
        lp, lm = prediction.series["learnability"], measurement.series["learnability"]
        for color, ell in zip(P.colors(len(config.degrees)), config.degrees):
            p, m = lp[lp.degree == ell], lm[lm.degree == ell]
            ax_learn.plot(m["n"], m["learnability"], "o", color=color, label=f"ℓ = {ell}", **P.MEASURED)
            ax_learn.plot(p["n"], p["learnability"], **P.THEORY)
        ax_learn.set(xscale="log", xlabel="training samples n", ylabel="learnability L_ℓ",
                     title="learnability of each target degree", ylim=(-0.05, 1.05))
        P.theory_legend(ax_learn)
        spec_ = prediction.series["spectrum"]
        shown = spec_[(spec_.eigenvalue > 0) & (spec_.degree <= 40)]
        ax_spec.semilogy(shown["degree"], shown["eigenvalue"], "o", color="C2", markersize=3, label="λ_ℓ (Funk–Hecke)")
        for kappa in pred["kappa"]:
            ax_spec.axhline(kappa, color="grey", linewidth=0.6, linestyle=":")
        ax_spec.set(xlabel="degree ℓ", ylabel="eigenvalue", title="kernel spectrum; dotted: κ(n)")
        ax_spec.legend(fontsize=8, frameon=False)
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        for ax in (ax_curve, ax_learn):
            ax.set_xticks(sorted(set(config.ns)))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        return [P.save(fig, outdir / "eigenlearning.png")]
