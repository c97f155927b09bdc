"""Predictions that need no training.

* :mod:`~lmech.theory.deep_linear`: mode dynamics of deep linear networks (Saxe et al. 2014);
* :mod:`~lmech.theory.kernels`: infinite-width NNGP and NTK of MLPs, composed layer by layer;
* :mod:`~lmech.theory.linearized`: kernel gradient descent / flow in closed form (Lee et al. 2019);
* :mod:`~lmech.theory.eigenlearning`: learning curves of kernel regression (Simon et al. 2021);
* :mod:`~lmech.theory.gradient_flow`: the gradient-flow ODE of any network, the reference for GD.

Functions that share their module's name (``kernels``, ``eigenlearning``, ``gradient_flow``) are not
re-exported here, so that ``lmech.theory.kernels`` etc. always name the modules.
"""

from lmech.theory.eigenlearning import (
    circle_eigenvalues,
    effective_regularization,
    empirical_eigensystem,
    learning_curve,
    sphere_eigenvalues,
)
from lmech.theory.kernels import activation_kernel, dot_product_kernels, mlp_kernels
from lmech.theory.linearized import ensemble_predictions, linearized_predictions, max_stable_lr

__all__ = ["activation_kernel", "circle_eigenvalues", "dot_product_kernels", "effective_regularization",
           "empirical_eigensystem", "ensemble_predictions", "learning_curve", "linearized_predictions",
           "max_stable_lr", "mlp_kernels", "sphere_eigenvalues"]
