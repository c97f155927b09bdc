"""Readable reference models built from parametrization-aware layers.

``mlp``/``MLP`` build a fully connected network from a description (Dense and Activation specs) that
``lmech.theory.kernels`` also reads, so a network and its infinite-width kernel cannot drift apart;
``DeepLinear`` is the deep linear network of Saxe et al. 2014.
"""

from lmech.models.deep_linear import DeepLinear
from lmech.models.mlp import MLP, Activation, Dense, mlp_layers

__all__ = ["MLP", "Activation", "Dense", "DeepLinear", "mlp_layers"]  # the builder: lmech.models.mlp.mlp
