# %% [markdown]
# # Progressive sharpening and the edge of stability
#
# Gradient descent with step $\eta$ on a quadratic of curvature $\lambda$ is stable only while
# $\lambda < 2/\eta$. Training a neural network with full-batch gradient descent, the sharpness
# (the top eigenvalue $\lambda_1$ of the loss Hessian) first *rises* (progressive sharpening) until it
# reaches $2/\eta$, then hovers there while the loss keeps falling, non-monotonically: the edge of
# stability (Cohen, Kaur, Li, Kolter & Talwalkar 2021, arXiv 2103.00065).
#
# Here a tanh MLP regresses the Chebyshev polynomial $T_6$ on 20 points, and a `Monitor` with a
# `sharpness_probe` (warm-started Lanczos, `lmech.instruments`) records $\lambda_1$ along training
# without perturbing it. About a minute on a CPU.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from lmech.instruments.monitor import Monitor, sharpness_probe

torch.set_num_threads(1)  # networks this small train fastest on one thread (and reproducibly)

x = torch.linspace(-1, 1, 20, dtype=torch.float64)[:, None]
y = torch.cos(6 * torch.arccos(x))                  # T6(x)


def loss_fn(out, target):
    return 0.5 * (out - target).pow(2).sum(1).mean()


def train(lr: float, steps: int, seed: int = 0):
    torch.manual_seed(seed)  # PyTorch's default initialization, as in Cohen et al.
    model = nn.Sequential(nn.Linear(1, 100), nn.Tanh(), nn.Linear(100, 100), nn.Tanh(), nn.Linear(100, 1)).double()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    monitor = Monitor(model, loss_fn, (x, y), probes=[sharpness_probe(tol=1e-3)], every=50)
    losses = []
    for step in range(steps + 1):
        monitor.step(step, optimizer=opt)
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return np.array(losses), monitor.frame()


runs = {lr: train(lr, 1500) for lr in (0.1, 0.13)}  # 2/η = 20 and 15.4, above the initial sharpness (about 13)

# %%
fig, (ax_loss, ax_sharp) = plt.subplots(1, 2, figsize=(11, 3.8))
for (lr, (losses, record)), color in zip(runs.items(), ("C0", "C1")):
    ax_loss.semilogy(losses, color=color, label=f"η = {lr}")
    ax_sharp.plot(record["step"], record["lambda_1"], "o-", ms=2, color=color, label=f"λ1, η = {lr}")
    ax_sharp.axhline(2 / lr, color=color, ls="--", lw=1, label=f"2/η = {2 / lr:g}")
ax_loss.set(xlabel="step", ylabel="training loss", title="the loss keeps falling, not monotonically")
ax_sharp.set(xlabel="step", ylabel="sharpness λ1", title="sharpness rises to 2/η and stays")
ax_loss.legend()
ax_sharp.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Measured: where the sharpness first reaches 95% of $2/\eta$, how close to $2/\eta$ it stays
# afterwards, and how often the loss went up after that.

# %%
for lr, (losses, record) in runs.items():
    ratio = record["lambda_1"].to_numpy() * lr / 2
    reached = np.nonzero(ratio >= 0.95)[0]
    if len(reached) == 0:
        print(f"η = {lr}: λ1 peaked at {ratio.max():.2f} × 2/η: the edge was not reached in this budget")
        continue
    onset = int(record["step"].iloc[reached[0]])
    after = ratio[reached[0]:]
    ups = float(np.mean(np.diff(losses[onset:]) > 0))
    print(f"η = {lr}: edge reached at step {onset}; afterwards λ1·η/2 = {after.mean():.3f} ± {after.std():.3f}; "
          f"the loss rose on {100 * ups:.0f}% of the steps")
