"""scikit-learn's embedded handwritten digits (1,797 8×8 images, shipped with scikit-learn: no download).

The edge-of-stability setting of Cohen et al. 2021 scaled to a CPU: the first ``n`` images, each pixel
standardized over those ``n`` images, and one-hot targets for a squared loss.
"""

from __future__ import annotations

import numpy as np
import torch

from lmech.errors import BadInput

N_DIGITS = 1797


def digits(n: int = 1000, *, standardize: bool = True, one_hot: bool = True,
           dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` digits as (inputs (n, 64), targets (n, 10) one-hot or (n,) labels).

    Standardization: each pixel minus its mean over the ``n`` images, divided by its standard deviation
    (pixels constant over the subset, e.g. always-blank corners, are left at 0).
    """
    from sklearn.datasets import load_digits

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= N_DIGITS:
        raise BadInput("n_samples", n, f"an integer in [1, {N_DIGITS}] (scikit-learn digits)")
    x, y = load_digits(return_X_y=True)
    x, y = x[:n].astype(np.float64), y[:n]
    if standardize:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    inputs = torch.as_tensor(x, dtype=dtype)
    labels = torch.as_tensor(y, dtype=torch.long)
    if one_hot:
        return inputs, torch.nn.functional.one_hot(labels, 10).to(dtype)
    return inputs, labels
