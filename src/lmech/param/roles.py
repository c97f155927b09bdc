"""Which role each parameter of a model plays, found by comparing its shape with a base model's.

A dimension that differs between the model and its base (or, when the model is at base width,
between the base and a ``delta`` model of another width: mup's convention) grows with width. The
module a parameter belongs to says how its dimensions read:

* ``nn.Linear`` and ``nn.Conv1d/2d/3d`` weights are (fan_out, fan_in, kernel...): both growing →
  ``hidden``, only fan_out → ``input``, only fan_in → ``output``, none → ``fixed``;
* ``nn.Embedding`` weights are (vocabulary, dim): dim growing → ``embedding``;
* the biases of those layers → ``bias``; the weights of normalization layers (LayerNorm, RMSNorm,
  GroupNorm, BatchNorm, InstanceNorm) → ``norm``, their biases → ``bias``.

A parameter of any other module, or a shape that fits none of these (a growing kernel dimension),
is ambiguous: :func:`infer_roles` raises :class:`~lmech.errors.BadInput` naming every such parameter
and how to pass its role (``roles={"name or glob": "hidden"}``). Explicit roles read weights in
``nn.Linear``'s (fan_out, fan_in, ...) layout, embeddings as (vocabulary, dim), biases and norm gains
as vectors.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from lmech.errors import BadInput
from lmech.param.presets import ROLES

__all__ = ["ParamShape", "RoleInfo", "shapes_of", "infer_roles"]

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, getattr(nn, "RMSNorm", nn.LayerNorm))
_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_WEIGHT_ROLES = ("input", "hidden", "output", "query", "key", "fixed")

ParamShape = tuple[int, ...]


@dataclass(frozen=True)
class RoleInfo:
    """A parameter's role and its width multipliers (``fan_in``/``fan_out`` over the base's)."""

    role: str
    fan_in_mult: float
    fan_out_mult: float
    #: fan-in multiplier of the SP init the model was built with (the layer's, for a bias; 1 for
    #: embeddings and norm gains, whose default init does not depend on width)
    init_fan_in_mult: float
    #: the parameter belongs to a hidden layer (a hidden or attention weight, or its bias)
    hidden_layer: bool


def shapes_of(model_or_shapes: nn.Module | Mapping[str, ParamShape]) -> dict[str, ParamShape]:
    """name → shape of every parameter of a module (a meta-device module is enough), or a mapping."""
    if isinstance(model_or_shapes, nn.Module):
        return {name: tuple(p.shape) for name, p in model_or_shapes.named_parameters()}
    if isinstance(model_or_shapes, Mapping):
        return {str(k): tuple(int(d) for d in v) for k, v in model_or_shapes.items()}
    raise BadInput("base", type(model_or_shapes).__name__,
                   "an nn.Module of base width (e.g. built on the meta device) or a mapping name -> shape")


def _explicit(name: str, roles: Mapping[str, str] | None) -> str | None:
    if not roles:
        return None
    if name in roles:
        return roles[name]
    for pattern, role in roles.items():
        if fnmatch.fnmatchcase(name, pattern):
            return role
    return None


def _mult(size: int, base: int) -> float:
    return size / base


def _layout(module: nn.Module, pname: str, role: str | None) -> str | None:
    """'matrix' (fan_out, fan_in, ...), 'table' (vocab, dim), 'vector', or None (unknown)."""
    if role is not None:
        if role == "embedding":
            return "table"
        return "vector" if role in ("bias", "norm") else "matrix"
    if isinstance(module, _LINEAR):
        return "matrix" if pname == "weight" else "vector" if pname == "bias" else None
    if isinstance(module, nn.Embedding) and pname == "weight":
        return "table"
    if isinstance(module, _NORMS) and pname in ("weight", "bias"):
        return "vector"
    return None


def infer_roles(model: nn.Module, base: Mapping[str, ParamShape], delta: Mapping[str, ParamShape] | None = None,
                roles: Mapping[str, str] | None = None) -> dict[str, RoleInfo]:
    """The :class:`RoleInfo` of every parameter of ``model`` (module docstring).

    ``base`` and ``delta`` map parameter names to shapes (see :func:`shapes_of`); ``roles`` maps
    names or glob patterns to roles and overrides inference.
    """
    for key, role in (roles or {}).items():
        if role not in ROLES:
            raise BadInput(f"roles[{key!r}]", role, f"one of {', '.join(ROLES)}")
    owners = {}
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            owners[f"{mname}.{pname}" if mname else pname] = (module, pname)
    infos: dict[str, RoleInfo] = {}
    ambiguous: list[str] = []
    weight_roles: dict[int, RoleInfo] = {}
    for name, param in model.named_parameters():
        shape = tuple(param.shape)
        if name not in base:
            raise BadInput("base", f"no parameter {name!r}",
                           "a base model with the same parameter names as the model (only widths differ)")
        bshape = base[name]
        other = delta.get(name) if delta is not None else None
        if delta is not None and other is None:
            raise BadInput("delta", f"no parameter {name!r}", "a model with the same parameter names as the base")
        if len(bshape) != len(shape) or (other is not None and len(other) != len(shape)):
            raise BadInput("base", f"{name}: shape {bshape} vs {shape}", "the same number of dimensions")
        grows = [s != b or (other is not None and o != b)
                 for s, b, o in zip(shape, bshape, other if other is not None else bshape)]
        module, pname = owners[name]
        role = _explicit(name, roles)
        layout = _layout(module, pname, role)
        mults = [_mult(s, b) for s, b in zip(shape, bshape)]
        if layout is None or not shape:
            if any(grows):
                ambiguous.append(f"{name} {shape} (base {bshape}, module {type(module).__name__})")
                continue
            infos[name] = RoleInfo(role or "fixed", 1.0, 1.0, 1.0, False)
            continue
        if layout == "matrix":
            if len(shape) < 2 or any(grows[2:]):
                ambiguous.append(f"{name} {shape} (base {bshape}): a growing kernel dimension")
                continue
            fan_out, fan_in = mults[0], mults[1]
            grow_out, grow_in = grows[0], grows[1]
            if role is None:
                role = {(True, True): "hidden", (True, False): "input", (False, True): "output",
                        (False, False): "fixed"}[(grow_out, grow_in)]
            info = RoleInfo(role, fan_in, fan_out, fan_in, role in ("hidden", "query", "key"))
            weight_roles[id(module)] = info
        elif layout == "table":
            if len(shape) != 2:
                ambiguous.append(f"{name} {shape}: an embedding table must be 2-d (vocabulary, dim)")
                continue
            info = RoleInfo(role or ("embedding" if grows[1] else "fixed"), mults[0], mults[1], 1.0, False)
        else:
            if len(shape) != 1:
                ambiguous.append(f"{name} {shape}: a bias or norm gain must be 1-d")
                continue
            if role is None:
                role = "norm" if isinstance(module, _NORMS) and pname == "weight" else "bias"
            info = RoleInfo(role, 1.0, mults[0], 1.0, False)
        infos[name] = info
    if ambiguous:
        raise BadInput("roles", "cannot infer the role of " + "; ".join(ambiguous),
                       f"roles={{'<name or glob>': role}} for each of them (roles: {', '.join(ROLES)}; weights "
                       "are read as (fan_out, fan_in, ...) like nn.Linear, embeddings as (vocabulary, dim))")
    # a bias takes its init fan-in and hidden-layer flag from its layer's weight
    for name in infos:
        module, pname = owners[name]
        info = infos[name]
        if info.role == "bias" and id(module) in weight_roles and isinstance(module, _LINEAR):
            layer = weight_roles[id(module)]
            infos[name] = RoleInfo("bias", info.fan_in_mult, info.fan_out_mult, layer.init_fan_in_mult,
                                   layer.hidden_layer)
    for name, info in infos.items():
        for value in (info.fan_in_mult, info.fan_out_mult):
            if not (math.isfinite(value) and value > 0):
                raise BadInput("base", name, "positive shapes")
    return infos
