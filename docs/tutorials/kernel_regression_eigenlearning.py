# %% [markdown]
# # Kernel regression and eigenlearning
#
# Kernel (ridge) regression with $n$ samples learns each eigenfunction of its kernel by a fraction,
# its *learnability* $\mathcal L_i = \lambda_i/(\lambda_i + \kappa)$, where the effective
# regularization $\kappa$ solves the conservation law $\sum_i \mathcal L_i + \delta/\kappa = n$
# ($\delta$ the ridge). The test error follows:
# $\mathcal E = \mathcal E_0 \big(\sum_i (1-\mathcal L_i)^2 v_i^2 + \sigma^2\big)$ with
# $\mathcal E_0 = n/(n - \sum_i \mathcal L_i^2)$, $v_i$ the target's coefficients and $\sigma^2$ the
# label noise (Simon, Dickens, Karkada & DeWeese 2023, arXiv 2110.03922: "eigenlearning").
#
# We check it on the sphere $S^2$ with a dot-product kernel $k(x\cdot x') = e^{3(x\cdot x' - 1)}$:
# its eigenfunctions are the spherical harmonics, its eigenvalues come from the Funk-Hecke formula
# (`lmech.theory.eigenlearning.sphere_eigenvalues`), and a target built from zonal harmonics has a
# known power per degree. About a minute on a CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np

from lmech.theory import eigenlearning as el

d = 3                                         # the sphere S^(d-1) in R^d


def profile(t):
    return np.exp(3.0 * (t - 1.0))            # k(x, x') = profile(x · x')


eigenvalues, multiplicities = el.sphere_eigenvalues(profile, d, 40)   # λ_ℓ and N(d, ℓ) for degrees 0..40
degrees, powers = [1, 2, 4], [0.5, 0.3, 0.2]                         # the target's power per degree
power = np.zeros_like(eigenvalues)
power[degrees] = powers
noise = 0.1                                                          # label noise variance σ²
ridge = 1e-2                                                         # δ in (K + δI)

plt.figure(figsize=(6, 3.5))
plt.semilogy(eigenvalues[:20], "o", label="eigenvalue λ_ℓ (multiplicity 2ℓ + 1)")
plt.semilogy(degrees, powers, "x", ms=9, mew=2, label="target power per degree")
plt.xlabel("degree ℓ")
plt.legend()
plt.title("the kernel's spectrum and the target")
plt.show()

# %% [markdown]
# The target $f(x) = \sum_\ell c_\ell \sqrt{N_\ell}\, P_\ell(x\cdot u_\ell)$ (Gegenbauer polynomials
# $P_\ell$ with $P_\ell(1) = 1$, random directions $u_\ell$) has power $c_\ell^2$ in degree $\ell$.
# Kernel regression: $n$ uniform points, noisy labels, the test error against the clean target on
# fresh points (plus $\sigma^2$, the error on noisy test labels), averaged over draws.

# %%
rng = np.random.default_rng(0)
directions = [u / np.linalg.norm(u) for u in rng.standard_normal((len(degrees), d))]


def target(x):
    return sum(np.sqrt(p * el.sphere_multiplicity(d, ell)) * el.gegenbauer(ell, d, np.clip(x @ u, -1, 1))
               for ell, p, u in zip(degrees, powers, directions))


def sphere(n):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


x_test = sphere(2000)
y_test = target(x_test)


def kernel_regression_mse(n: int, trials: int = 30) -> tuple[float, float]:
    errors = []
    for _ in range(trials):
        x = sphere(n)
        y = target(x) + np.sqrt(noise) * rng.standard_normal(n)
        alpha = np.linalg.solve(profile(x @ x.T) + ridge * np.eye(n), y)
        errors.append(np.mean((profile(x_test @ x.T) @ alpha - y_test) ** 2) + noise)
    return float(np.mean(errors)), float(np.std(errors) / np.sqrt(trials))


ns = np.array([10, 20, 40, 80, 160])
measured = np.array([kernel_regression_mse(int(n)) for n in ns])
theory = el.learning_curve(eigenvalues, power, ns, ridge=ridge, noise_var=noise, multiplicities=multiplicities)
dense = el.learning_curve(eigenvalues, power, np.geomspace(5, 300, 60), ridge=ridge, noise_var=noise,
                          multiplicities=multiplicities)

plt.figure(figsize=(6, 4))
plt.loglog(dense["n"], dense["test_mse"], "k--", label="eigenlearning (theory)")
plt.errorbar(ns, measured[:, 0], yerr=measured[:, 1], fmt="o", color="C0", capsize=3,
             label="kernel regression (mean ± s.e. of 30 draws)")
plt.axhline(noise, color="grey", lw=0.8, label="noise floor σ²")
plt.xlabel("training samples n")
plt.ylabel("test MSE")
plt.legend()
plt.title("learning curve")
plt.show()
for n, m, p in zip(ns, measured[:, 0], theory["test_mse"]):
    print(f"n = {n:4d}: measured {m:.4f}, predicted {p:.4f}  ({100 * (m / p - 1):+.1f}%)")

# %% [markdown]
# Each degree is learned in turn as $\kappa$ falls below its eigenvalue, and the learnabilities
# (with $\delta/\kappa$) add up to exactly $n$:

# %%
for n in (10, 40, 160):
    pred = el.eigenlearning(eigenvalues, power, n, ridge=ridge, noise_var=noise, multiplicities=multiplicities)
    total = float(np.sum(multiplicities * pred.learnabilities)) + ridge / pred.kappa
    print(f"n = {n:3d}: κ = {pred.kappa:.3g}, learnabilities of degrees {degrees}:",
          np.round(pred.learnabilities[degrees], 3), f" Σ N L + δ/κ = {total:.12g}")
