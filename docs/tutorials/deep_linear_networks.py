# %% [markdown]
# # Deep linear networks: the closed form against training
#
# A deep linear network $f(x) = W_L \cdots W_1 x$ trained by gradient descent on whitened inputs
# learns the singular modes of its teacher $M = \sum_i s_i u_i v_i^\top$ one at a time, each along a
# sigmoid (Saxe, McClelland & Ganguli 2014, arXiv 1312.6120, eq. 7). With the loss
# $\frac12\lVert M - W_L\cdots W_1\rVert_F^2$ and a small balanced start aligned with the teacher, the
# strength $u_i$ of mode $i$ obeys, in time $t = \eta\cdot\text{step}$,
#
# $$\frac{du_i}{dt} = L\,u_i^{2-2/L}(s_i - u_i),$$
#
# solved in closed form for depth $L = 2$ and by quadrature and ODE for deeper networks
# (`lmech.theory.deep_linear`). This notebook puts that theory beside a network trained by plain
# gradient descent, then runs lmech's own law for it. It takes a few seconds on a CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from lmech.theory import deep_linear as dl

torch.set_num_threads(1)  # networks this small train fastest on one thread (and reproducibly)

s = np.array([3.0, 2.0, 1.0])  # the teacher's singular values
u0 = 1e-3                      # the initial strength of every mode
for depth in (2, 3, 4):
    print(f"depth {depth}: t½ =", np.round(dl.half_learning_time(s, u0, depth), 3), "(units of 1/η steps)")

# %% [markdown]
# Larger modes are learned first, and deeper networks wait longer on a plateau and then learn more
# abruptly. Now train: a random orthogonal teacher, a network of depth $L$ started at
# $W_1 = a V^\top$, $W_k = I$ in between... scaled so that every mode starts at $u_0$ (balanced,
# $W_k = u_0^{1/L}$ along each mode), then gradient descent with a small step.

# %%
def train(depth: int, lr: float, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    d = len(s)
    U, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    M = U @ torch.diag(torch.tensor(s)) @ V.T
    a = u0 ** (1 / depth)
    Ws = [a * V.T] + [a * torch.eye(d, dtype=torch.float64) for _ in range(depth - 2)] + [a * U]
    Ws = [W.clone().requires_grad_(True) for W in Ws]
    modes = []
    for _ in range(steps + 1):
        prod = Ws[0]
        for W in Ws[1:]:
            prod = W @ prod
        modes.append(torch.diagonal(U.T @ prod.detach() @ V).numpy().copy())
        loss = 0.5 * ((M - prod) ** 2).sum()
        grads = torch.autograd.grad(loss, Ws)
        with torch.no_grad():
            for W, G in zip(Ws, grads):
                W -= lr * G
    return np.arange(steps + 1) * lr, np.array(modes)


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, depth in zip(axes, (2, 3)):
    lr = 0.01
    t_end = 1.6 * dl.half_learning_time(s, u0, depth).max()
    t, measured = train(depth, lr, int(t_end / lr))
    theory = dl.mode_trajectories(t, s, u0, depth)
    for i, color in enumerate(("C0", "C1", "C2")):
        ax.plot(t, measured[:, i], color=color, lw=3, alpha=0.5, label=f"mode s={s[i]:g}: gradient descent")
        ax.plot(t, theory[:, i], "k--", lw=1)
    ax.plot([], [], "k--", label="theory")
    ax.set(title=f"depth {depth}", xlabel="t = η · step", ylabel="mode strength $u_i$")
    ax.legend(fontsize=8, loc="lower right")
    measured_half = [dl.crossing_time(t, measured[:, i], s[i] / 2) for i in range(len(s))]
    print(f"depth {depth}: t½ measured", np.round(measured_half, 3), "predicted",
          np.round(dl.half_learning_time(s, u0, depth), 3))
plt.tight_layout()
plt.show()

# %% [markdown]
# The measured half-learning times agree with the prediction to about the step size $\eta$: gradient
# descent is a discretization of the flow the theory solves.
#
# ## The law, as lmech checks it
#
# `lmech.experiments.run` runs the `deep-linear` law of the law book (a random, not aligned,
# small initialization and a data set instead of the whitened identity): theory, training,
# verdicts, figures. A progress bar shows in this cell while it trains.

# %%
from lmech.experiments import run

outcome = run("deep-linear", quick=True)
print("verdict:", outcome.verdict)
for v in outcome.verdicts:
    print(f"  {v['key']:>16}: agreement {v['agreement']:.3g} against tolerance {v['tolerance']}  -> {v['status']}")

# %%
from IPython.display import Image, display

for path in outcome.figures:
    display(Image(filename=str(path)))
