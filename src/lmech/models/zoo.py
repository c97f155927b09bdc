"""lmech's model zoo by name: rebuild a saved network from its state dict, and load model files safely.

A state dict holds tensors only, so loading it runs no code (``torch.load(weights_only=True)``); the shapes
in it give the architecture's sizes (width, depth, classes, ...), and the zoo name gives the rest. A whole
pickled module (``torch.save(model)``) can only be read by unpickling arbitrary objects, which runs whatever
code the file names: :func:`load_model` refuses it unless ``trust_pickle=True``.

Names (the models the universality laws train, :mod:`lmech.experiments.representation_alignment`):

* ``mlp``: :func:`lmech.models.mlp.mlp`, ReLU, standard parametrization (options ``activation``,
  ``parametrization``);
* ``cnn``: :class:`lmech.models.cnn.SmallCNN` (options ``activation``, ``image_size``, ``pool``: a bare state dict
  of a pooled CNN needs ``pool=True``, a checkpoint of :func:`save` records it);
* ``transformer``: :class:`lmech.models.patch_transformer.PatchTransformer` (option ``n_head``, default 2: the
  number of heads is not visible in the weights).

A checkpoint written by :func:`save` is ``{"model": name, "options": {...}, "state_dict": {...}}``, also
readable without unpickling code.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmech.errors import BadInput

__all__ = ["ZOO", "architecture_options", "build_from_state_dict", "default_layers", "load_model", "save"]

#: the zoo's names
ZOO = ("mlp", "cnn", "transformer")


def _indices(state: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))})


def _shape(state: Mapping[str, torch.Tensor], key: str, name: str) -> tuple[int, ...]:
    if key not in state or not isinstance(state[key], torch.Tensor):
        shown = ", ".join(list(state)[:6])
        raise BadInput("state_dict", shown or "no keys", f"the weights of lmech's {name!r} (missing {key!r})")
    return tuple(state[key].shape)


def build_from_state_dict(name: str, state: Mapping[str, torch.Tensor], **options: Any) -> nn.Module:
    """The zoo model ``name`` with the sizes read off ``state``, loaded with ``state`` (strict)."""
    if name not in ZOO:
        raise BadInput("model", name, f"a model of lmech's zoo: {', '.join(ZOO)}")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput("state_dict", type(state).__name__, "a state dict (parameter name -> tensor)")
    try:
        if name == "mlp":
            from lmech.models.mlp import mlp

            dense = _indices(state, r"layers\.(\d+)\.weight")
            if len(dense) < 2:
                raise BadInput("state_dict", ", ".join(list(state)[:6]), "the weights of lmech's 'mlp' "
                               "(layers.0.weight, ..., at least one hidden layer and a readout)")
            first, last = _shape(state, f"layers.{dense[0]}.weight", name), _shape(state, f"layers.{dense[-1]}.weight",
                                                                                  name)
            act = options.pop("activation", "relu")
            model = mlp(first[1], first[0], len(dense) - 1, act, weight_std=math.sqrt(2.0) if act == "relu" else 1.0,
                        bias_std=0.0, parametrization=options.pop("parametrization", "sp"), out_features=last[0])
        elif name == "cnn":
            from lmech.models.cnn import SmallCNN

            conv = _shape(state, "input.weight", name)
            readout = _shape(state, "readout.weight", name)
            model = SmallCNN(width=conv[0], depth=1 + len(_indices(state, r"hidden\.(\d+)\.weight")),
                             in_channels=conv[1], num_classes=readout[0], **options)
        else:
            from lmech.models.patch_transformer import PatchTransformer

            embed = _shape(state, "embed.weight", name)
            tokens = _shape(state, "position.weight", name)[0]
            fc = _shape(state, "blocks.0.fc.weight", name)
            in_channels = options.pop("in_channels", 1)
            patch = math.isqrt(embed[1] // in_channels)
            side = math.isqrt(tokens)
            model = PatchTransformer(width=embed[0], depth=len(_indices(state, r"blocks\.(\d+)\.fc\.weight")),
                                     patch=patch, image_size=patch * side, in_channels=in_channels,
                                     num_classes=_shape(state, "readout.weight", name)[0],
                                     mlp_ratio=fc[0] // embed[0], **options)
    except TypeError as exc:  # an unknown option
        raise BadInput("options", sorted(options), f"options of lmech's {name!r} ({exc})") from None
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise BadInput("state_dict", "these weights", f"the weights of lmech's {name!r} ({first_line})") from None
    model.eval()
    return model


def default_layers(name: str, model: nn.Module) -> list[str]:
    """The representations worth comparing in a zoo model: hidden layers (post-activation for the MLP; the
    convolutions' outputs for the CNN, whose activation is functional), the transformer's embedding, blocks and
    pooled output, and the readout (the logits)."""
    modules = dict(model.named_modules())
    if name == "mlp":
        count = len(model.layers)
        return [f"layers.{i}" for i in range(1, count - 1, 2)] + [f"layers.{count - 1}"]
    if name == "cnn":
        return ["input"] + [f"hidden.{i}" for i in range(len(model.hidden))] + ["readout"]
    if name == "transformer":
        return ["embed"] + [f"blocks.{i}" for i in range(len(model.blocks))] + ["pool", "readout"]
    return [k for k in modules if k]


def architecture_options(name: str, model: nn.Module) -> dict[str, Any]:
    """The options of zoo model ``name`` that its weights do not show, read off ``model``: a CNN's ``pool``,
    ``image_size`` and ``activation``, a transformer's ``n_head``. A state dict alone cannot carry them (the
    pools have no parameters), so :func:`save` records them: rebuilt without them, a pooled CNN would load
    its weights strictly and still compute a different function."""
    found: dict[str, Any] = {}
    if name == "cnn":
        for key in ("pool", "image_size", "activation"):
            if isinstance(getattr(model, key, None), (bool, int, str)):
                found[key] = getattr(model, key)
    elif name == "transformer":
        blocks = getattr(model, "blocks", None)
        if blocks is not None and len(blocks) and hasattr(getattr(blocks[0], "attn", None), "n_head"):
            found["n_head"] = int(blocks[0].attn.n_head)
    return found


def save(name: str, model: nn.Module, path: str | Path, **options: Any) -> Path:
    """Write ``model`` (a zoo model ``name``) as a checkpoint that loads without unpickling code, with the
    options its weights do not show (:func:`architecture_options`; ``options`` given here take precedence)."""
    if name not in ZOO:
        raise BadInput("model", name, f"a model of lmech's zoo: {', '.join(ZOO)}")
    path = Path(path)
    recorded = architecture_options(name, model) | dict(options)
    torch.save({"model": name, "options": recorded, "state_dict": model.state_dict()}, path)
    return path


def load_model(path: str | Path, model: str | None = None, *, trust_pickle: bool = False,
               options: Mapping[str, Any] | None = None, argument: str = "path") -> tuple[nn.Module, str | None]:
    """A model from ``path``: (module, zoo name or None for a whole pickled module).

    The file may be a checkpoint of :func:`save` (its zoo name inside), a bare state dict with ``model`` the
    zoo name, or, only with ``trust_pickle=True``, a whole pickled ``nn.Module``. Without ``trust_pickle``
    the file is read with ``torch.load(weights_only=True)``, which unpickles tensors and plain containers
    only: a file that needs anything else (a module, or a payload that would run code) is refused.
    """
    p = Path(path)
    if not p.is_file():
        raise BadInput(argument, str(path), "an existing model file (.pt: a state dict, or a checkpoint)")
    if model is not None and model not in ZOO:
        raise BadInput("--model", model, f"a model of lmech's zoo: {', '.join(ZOO)}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if trust_pickle:
            raise BadInput(argument, str(path), f"a readable torch file ({str(exc).splitlines()[0]})") from None
        raise BadInput(argument, str(path), "a state dict or checkpoint (read with weights_only=True); this file "
                       "holds other pickled objects, e.g. a whole module: --trust-pickle reads it, which RUNS "
                       "CODE from the file, so only for files you trust") from None
    except Exception as exc:  # noqa: BLE001  (a file torch cannot read: truncated, not a torch file, ...)
        raise BadInput(argument, str(path), f"a torch file written by torch.save ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if isinstance(obj, nn.Module):
        obj.eval()
        return obj, None
    if isinstance(obj, Mapping) and "state_dict" in obj and "model" in obj:
        opts = dict(obj.get("options") or {})
        opts.update(options or {})
        name = model or obj["model"]
        return build_from_state_dict(name, obj["state_dict"], **opts), name
    if isinstance(obj, Mapping):
        if model is None:
            raise BadInput("--model", None, f"the zoo name of the state dict in {path} ({', '.join(ZOO)})")
        return build_from_state_dict(model, obj, **dict(options or {})), model
    raise BadInput(argument, str(path), f"a state dict, a checkpoint or (with --trust-pickle) a module, not a "
                   f"{type(obj).__name__}")
