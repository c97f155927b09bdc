# %% [markdown]
# # Lazy versus rich training
#
# Scale a network's output by $\alpha$ around its initialization, $f_\alpha(x) = \alpha\,(h(x; w) -
# h(x; w_0))$, and train it with step $\eta/\alpha^2$ (Chizat, Oyallon & Bach 2019, arXiv 1812.07956).
# For large $\alpha$ the weights need to move only $O(1/\alpha)$ to fit the data: training is *lazy*,
# the network stays its own linearization, and it learns exactly what kernel regression with its
# tangent kernel (NTK) at initialization learns. For small $\alpha$ the weights, and the kernel,
# move: the *rich* (feature-learning) regime. Here a two-layer tanh network on digits (even vs odd),
# for $\alpha$ from 0.3 to 100, with `lmech.instruments` measuring the weight and kernel movement and
# `lmech.theory.linearized` giving the kernel prediction. About a minute on a CPU.

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from lmech.data.digits import digits
from lmech.instruments.features import relative_weight_change
from lmech.instruments.ntk import empirical_ntk, kernel_distance
from lmech.theory.linearized import linearized_predictions

torch.set_num_threads(1)  # networks this small train fastest on one thread (and reproducibly)

x_all, labels = digits(400, one_hot=False)
y_all = torch.where(labels % 2 == 0, 1.0, -1.0).to(torch.float64)   # even digits +1, odd −1
x, y, x_test, y_test = x_all[:200], y_all[:200], x_all[200:], y_all[200:]

torch.manual_seed(0)
width = 256
base = nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, 1)).double()
K0 = empirical_ntk(base, x)                          # the tangent kernel of h at initialization, (200, 200)
K0_test = empirical_ntk(base, x_test, x)
n = x.shape[0]
eta = float(n / torch.linalg.eigvalsh(K0).max())    # half the largest stable step of the linearized model
steps = 400
print(f"η = {eta:.3g}, {steps} steps")

# %%
def train(alpha: float):
    model = copy.deepcopy(base)
    start = copy.deepcopy(base)
    with torch.no_grad():
        h0, h0_test = start(x)[:, 0], start(x_test)[:, 0]
    opt = torch.optim.SGD(model.parameters(), lr=eta / alpha**2)
    for _ in range(steps):
        opt.zero_grad()
        f = alpha * (model(x)[:, 0] - h0)
        (0.5 * ((f - y) ** 2).mean()).backward()
        opt.step()
    with torch.no_grad():
        f_test = alpha * (model(x_test)[:, 0] - h0_test)
    moved = relative_weight_change(model, start)
    return {"alpha": alpha, "test_loss": float(0.5 * ((f_test - y_test) ** 2).mean()),
            "weight_change": max(moved.values()),
            "kernel_distance": kernel_distance(K0, empirical_ntk(model, x))}


alphas = [0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
results = [train(a) for a in alphas]
kernel = linearized_predictions(K0, y, steps, eta, k_test_train=K0_test, dynamics="gd")
kernel_test_loss = float(0.5 * ((kernel.test - y_test) ** 2).mean())
for r in results:
    print(f"α = {r['alpha']:6.1f}: test loss {r['test_loss']:.4f} (kernel regression {kernel_test_loss:.4f}), "
          f"weights moved {r['weight_change']:.2e}, kernel distance {r['kernel_distance']:.2e}")

# %%
a = np.array(alphas)
fig, (ax_move, ax_loss) = plt.subplots(1, 2, figsize=(11, 3.8))
ax_move.loglog(a, [r["weight_change"] for r in results], "o-", label="relative weight change ‖w − w0‖/‖w0‖")
ax_move.loglog(a, [r["kernel_distance"] for r in results], "s-", label="kernel distance S(K0, K_end)")
ax_move.loglog(a, results[-1]["weight_change"] * a[-1] / a, "k:", label="∝ 1/α (lazy)")
ax_move.set(xlabel="output scale α", title="how far training moves the network")
ax_move.legend(fontsize=8)
ax_loss.semilogx(a, [r["test_loss"] for r in results], "o-", label="network")
ax_loss.axhline(kernel_test_loss, color="k", ls="--", label="kernel regression with the initial NTK")
ax_loss.set(xlabel="output scale α", ylabel="test loss", title="lazy networks learn what their kernel learns")
ax_loss.legend(fontsize=8)
plt.tight_layout()
plt.show()
