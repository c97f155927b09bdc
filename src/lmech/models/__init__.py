"""Readable reference models built from parametrization-aware layers.

``mlp``/``MLP`` build a fully connected network from a description (Dense and Activation specs) that
``lmech.theory.kernels`` also reads, so a network and its infinite-width kernel cannot drift apart;
``DeepLinear`` is the deep linear network of Saxe et al. 2014. ``ResidualMLP``, ``TinyTransformer``
and ``SmallCNN`` take ``width=``, ``depth=`` and ``parametrization=`` (any preset of
:mod:`lmech.param.presets`, relative to a base width and depth) and are the models the
hyperparameter-transfer, scaling and universality laws train.
"""

from lmech.models.cnn import SmallCNN
from lmech.models.deep_linear import DeepLinear
from lmech.models.mlp import MLP, Activation, Dense, mlp_layers
from lmech.models.patch_transformer import PatchTransformer
from lmech.models.residual_mlp import ResidualMLP
from lmech.models.transformer import TinyTransformer, TransformerConfig

__all__ = ["MLP", "Activation", "Dense", "DeepLinear", "PatchTransformer", "ResidualMLP", "SmallCNN", "TinyTransformer",
           "TransformerConfig", "mlp_layers"]  # the builder: lmech.models.mlp.mlp
