"""The parametrization side table: one row per parameter name, plain data.

A :class:`ParamTable` holds, for each parameter of a model (keyed by its name in
``named_parameters()``), its role, width and depth multipliers, and the numbers a preset assigns it:
the init rescaling, the forward multiplier, and for each optimizer family (``sgd``, ``adam``) the
learning-rate and weight-decay scales and (Adam) the ε scale. Nothing is stored on tensors, so the
table survives ``torch.save``/``load`` of a state dict (save ``table.to_dict()`` beside it),
``copy.deepcopy`` and ``torch.compile``; :meth:`ParamTable.param_groups` turns it into optimizer
parameter groups for any model whose parameter names match.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from lmech.errors import BadInput
from lmech.param.presets import Preset, get_preset
from lmech.param.roles import RoleInfo

__all__ = ["Entry", "ParamTable", "FAMILIES", "optimizer_family", "build_table"]

#: Optimizer names and the family whose scales they read.
FAMILIES = {"sgd": "sgd", "adam": "adam", "adamw": "adam", "adam-atan2": "adam"}


def optimizer_family(optimizer: str) -> str:
    """``"sgd"`` or ``"adam"`` for an optimizer name of :data:`FAMILIES`."""
    if not isinstance(optimizer, str) or optimizer.lower() not in FAMILIES:
        raise BadInput("optimizer", optimizer, f"one of {', '.join(FAMILIES)}")
    return FAMILIES[optimizer.lower()]


@dataclass(frozen=True)
class Entry:
    """One parameter's row: role, multipliers, and the preset's scales (module docstring)."""

    name: str
    role: str
    shape: tuple[int, ...]
    fan_in_mult: float
    fan_out_mult: float
    depth_mult: float
    in_branch: bool
    init_scale: float
    multiplier: float
    lr_sgd: float
    lr_adam: float
    wd_sgd: float
    wd_adam: float
    eps: float

    def lr(self, family: str) -> float:
        return self.lr_sgd if family == "sgd" else self.lr_adam

    def weight_decay(self, family: str) -> float:
        return self.wd_sgd if family == "sgd" else self.wd_adam


@dataclass(frozen=True)
class ParamTable:
    """A preset applied to one model: an :class:`Entry` per parameter name, and the branch multiplier."""

    preset: str
    entries: tuple[Entry, ...]
    depth_mult: float = 1.0
    branch_multiplier: float = 1.0
    branches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {e.name: e for e in self.entries})

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._by_name[name]
        except KeyError:
            raise BadInput("parameter", name, "a parameter name of the parametrized model") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON- and ``torch.save``-able); :meth:`from_dict` restores it."""
        return {"preset": self.preset, "depth_mult": self.depth_mult, "branch_multiplier": self.branch_multiplier,
                "branches": list(self.branches),
                "entries": [{**dataclasses.asdict(e), "shape": list(e.shape)} for e in self.entries]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParamTable:
        entries = tuple(Entry(**{**e, "shape": tuple(e["shape"])}) for e in data["entries"])
        return cls(data["preset"], entries, float(data["depth_mult"]), float(data["branch_multiplier"]),
                   tuple(data["branches"]))

    def frame(self):
        """The table as a pandas DataFrame, one row per parameter."""
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(e) for e in self.entries])

    def param_groups(self, model: nn.Module, lr: float, optimizer: str = "adam", weight_decay: float = 0.0,
                     eps: float | None = 1e-8) -> list[dict[str, Any]]:
        r"""Optimizer parameter groups for ``model``: one group per distinct (lr, weight decay, ε).

        Each trainable parameter gets ``lr × lr scale``, ``weight_decay × weight-decay scale`` and, for
        the Adam family (``"adam"``, ``"adamw"``), ``eps × ε scale`` (``eps=None``: no ``eps`` key;
        ``"adam-atan2"`` has no ε). Parameters whose three numbers agree to 12 significant digits share
        a group (scales computed by different products may differ in the last bit; fewer groups make
        torch's optimizers cheaper: each group is a Python-level pass); every other option (betas,
        momentum) is the optimizer's own, the same for all groups. Pass the groups to the matching torch
        optimizer. A learning-rate scheduler then scales every group's lr by the same factor, which keeps
        the ratios.
        """
        family = optimizer_family(optimizer)
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise BadInput("lr", lr, "a positive finite number")
        if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
            raise BadInput("weight_decay", weight_decay, "a finite number >= 0")
        with_eps = family == "adam" and optimizer.lower() != "adam-atan2" and eps is not None
        groups: dict[tuple, dict[str, Any]] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            entry = self[name]
            values = (lr * entry.lr(family), weight_decay * entry.weight_decay(family),
                      eps * entry.eps if with_eps else None)
            key = tuple(None if v is None else float(f"{v:.12g}") for v in values)
            if key not in groups:
                group: dict[str, Any] = {"params": [], "lr": values[0], "weight_decay": values[1]}
                if with_eps:
                    group["eps"] = values[2]
                groups[key] = group
            groups[key]["params"].append(param)
        return list(groups.values())


def _entry(name: str, info: RoleInfo, preset: Preset, depth_mult: float, in_branch: bool) -> Entry:
    """The preset's numbers for one parameter (formulas in :mod:`lmech.param.presets`)."""
    col = preset.column(info.role)
    fi, fo = info.fan_in_mult, info.fan_out_mult
    if preset.identity_init or info.role in ("norm", "fixed"):
        init_scale = 1.0
    else:  # sqrt(table variance / SP variance), the SP variance being ∝ 1/init fan-in
        ratio = col.init_var(fi, fo) * info.init_fan_in_mult
        init_scale = 1.0 if ratio == 1 else math.sqrt(ratio)
    lr_sgd, lr_adam = col.lr_sgd(fi, fo), col.lr_adam(fi, fo)
    wd_sgd = 1.0 / lr_sgd if preset.decay_timescale else 1.0
    wd_adam = 1.0 / lr_adam if preset.decay_timescale else 1.0
    eps = col.eps(fi, fo) if preset.scale_eps else 1.0  # the gradient entries' scale (presets docstring)
    if in_branch and preset.alpha and depth_mult != 1:
        lr_adam *= depth_mult ** (preset.alpha - 1)
        lr_sgd *= depth_mult ** (2 * preset.alpha - 1)
        if preset.scale_eps:
            eps *= depth_mult ** (-preset.alpha)
    return Entry(name, info.role, (), fi, fo, depth_mult if in_branch else 1.0, in_branch, init_scale,
                 col.multiplier(fi, fo), lr_sgd, lr_adam, wd_sgd, wd_adam, eps)


def build_table(model: nn.Module, preset: str | Preset, infos: Mapping[str, RoleInfo], depth_mult: float = 1.0,
                branches: Sequence[str] = ()) -> ParamTable:
    """The :class:`ParamTable` of ``preset`` for ``model`` with roles ``infos`` (see :func:`infer_roles`).

    ``branches`` name the residual-branch modules (prefixes of parameter names); their parameters get
    the preset's depth rules with multiplier ``depth_mult`` = L / L_base.
    """
    preset = get_preset(preset)
    if not (isinstance(depth_mult, (int, float)) and math.isfinite(depth_mult) and depth_mult > 0):
        raise BadInput("depth_mult", depth_mult, "a positive number: depth / base depth")
    branches = tuple(str(b) for b in branches)
    names = {n for n, _ in model.named_modules()}
    missing = [b for b in branches if b not in names]
    if missing:
        raise BadInput("branches", missing, "names of submodules of the model (residual branches)")
    entries = []
    for name, param in model.named_parameters():
        in_branch = any(name.startswith(b + ".") for b in branches)
        entry = _entry(name, infos[name], preset, float(depth_mult), in_branch)
        entries.append(dataclasses.replace(entry, shape=tuple(param.shape)))
    return ParamTable(preset.name, tuple(entries), float(depth_mult),
                      preset.branch_multiplier(depth_mult) if branches else 1.0, branches)
