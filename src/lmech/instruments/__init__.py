"""Instruments: observables of any ``nn.Module``, loss and batch, usable alone or through a Monitor.

* :mod:`~lmech.instruments.curvature`: Hessian/GGN operators, Lanczos top-k, Hutchinson/Hutch++ trace,
  stochastic Lanczos quadrature, preconditioned (Adam/RMSprop) sharpness;
* :mod:`~lmech.instruments.sharpness`: stability thresholds and the warm-started ``SharpnessTracker``;
* :mod:`~lmech.instruments.ntk`: empirical NTK (Jacobian, NTK-vector products, structured Linear path),
  kernel distance/velocity/alignment, the linearized model;
* :mod:`~lmech.instruments.features`: weight and feature movement, coordinate sizes, effective rank;
* :mod:`~lmech.instruments.similarity`: CKA (linear, RBF, debiased), mutual k-NN, Procrustes, SVCCA,
  layer-by-layer ``compare``;
* :mod:`~lmech.instruments.noise`: the gradient noise scales B_simple = tr Σ/|G|² and B_noise = tr(HΣ)/GᵀHG;
* :mod:`~lmech.instruments.batch_sharpness`: the batch sharpness E_B[g_B·H_B g_B/|g_B|²] (edge of stochastic
  stability) with its Monte Carlo standard error, and its Monitor probe;
* :mod:`~lmech.instruments.monitor`: ``Monitor`` attaches probes to any training loop without perturbing it.
"""

from lmech.instruments.batch_sharpness import BatchSharpness, BatchSharpnessProbe, batch_sharpness
from lmech.instruments.curvature import (
    GGNOperator,
    HessianOperator,
    PreconditionedOperator,
    hessian_eigenvalues,
    hessian_spectral_density,
    hessian_trace,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    preconditioned_sharpness,
    spectral_density,
)
from lmech.instruments.features import (
    capture_activations,
    coordinate_change,
    coordinate_size,
    effective_rank,
    participation_ratio,
    relative_weight_change,
    update_to_weight_rms,
)
from lmech.instruments.monitor import (
    GradNormProbe,
    HessianTraceProbe,
    LossProbe,
    Monitor,
    ParamNormProbe,
    hessian_eigenvalues_probe,
    preconditioned_sharpness_probe,
    sharpness_probe,
)
from lmech.instruments.noise import (
    exact_hessian_noise_scale,
    exact_noise_scale,
    gradient_noise_scale,
    hessian_noise_scale,
)
from lmech.instruments.ntk import (
    LinearizedModel,
    NTKOperator,
    empirical_ntk,
    kernel_distance,
    kernel_target_alignment,
    kernel_velocity,
)
from lmech.instruments.sharpness import SharpnessTracker, stability_threshold
from lmech.instruments.similarity import (
    compare,
    debiased_cka,
    linear_cka,
    mutual_knn,
    procrustes_distance,
    rbf_cka,
    svcca,
)

__all__ = [
    "BatchSharpness", "BatchSharpnessProbe", "batch_sharpness",
    "GGNOperator", "GradNormProbe", "HessianOperator", "HessianTraceProbe", "LinearizedModel", "LossProbe",
    "Monitor", "NTKOperator", "ParamNormProbe", "PreconditionedOperator", "SharpnessTracker", "capture_activations",
    "compare", "coordinate_change", "coordinate_size", "debiased_cka", "effective_rank", "empirical_ntk",
    "exact_hessian_noise_scale", "exact_noise_scale", "gradient_noise_scale", "hessian_noise_scale", "hessian_eigenvalues", "hessian_eigenvalues_probe",
    "hessian_spectral_density", "hessian_trace", "hutchinson_trace", "hutchpp_trace", "kernel_distance",
    "kernel_target_alignment", "kernel_velocity", "lanczos", "linear_cka", "mutual_knn", "participation_ratio",
    "preconditioned_sharpness", "preconditioned_sharpness_probe", "procrustes_distance", "rbf_cka",
    "relative_weight_change", "sharpness_probe", "spectral_density", "stability_threshold", "svcca",
    "update_to_weight_rms",
]
