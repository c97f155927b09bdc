r"""``parametrize``: put any ``nn.Module`` in a parametrization (μP, CompleteP, ...) relative to a base model.

>>> from lmech.param import parametrize
>>> p = parametrize(model, "mup", base=base_model)
>>> opt = torch.optim.Adam(p.param_groups(lr=1e-2, optimizer="adam"))

Three things happen (the numbers come from :mod:`lmech.param.presets`):

1. roles are inferred by comparing every parameter's shape with ``base`` (:mod:`lmech.param.roles`);
2. the init is rescaled in place: each parameter is multiplied by its ``init_scale`` (the model is
   assumed freshly built with the standard init, as ``mup.set_base_shapes`` assumes);
3. forward multipliers :math:`A \ne 1` are installed. On a plain ``nn.Linear`` (the default,
   ``multipliers="inline"``) the module's class becomes :class:`ScaledLinear`, the same ``nn.Linear``
   with the float ``weight_multiplier`` in its ``__dict__`` and a forward that computes
   :math:`A\,(Wx) + b` on the smaller side: :math:`A` times the output when ``out_features <=
   in_features`` (one ``torch.add(b, Wx, alpha=A)``), else :math:`W(Ax) + b`. That is the weight
   multiplier (what ``mup.MuReadout`` computes) to rounding, and it adds one small elementwise operation
   and no module hook: a forward hook sends every call through torch's slow module-call path, which
   cost 84-201 µs per training step on the readout of ``benchmarks/param_overhead.py``'s MLP (readout
   forward and backward, 128×1024 → 10, measured apart in four runs), the inline form −21 to +72 µs
   (three runs: zero within the measurement's scatter). ``multipliers="hooks"``
   (and every module that is not exactly ``nn.Linear``: a subclass keeps its own forward) installs
   hooks instead: for ``nn.Linear`` and convolutions a forward pre-hook multiplies the input
   (:math:`W(Ax) + b = (AW)x + b`), except for an ``nn.Linear`` with fewer outputs than inputs (a
   readout), where a forward hook computes :math:`A(Wx + b) + (1 - A)b` on the output; for
   ``nn.Embedding`` a forward hook multiplies the output. Residual branches named in ``branches`` get a
   forward hook multiplying their output by :math:`m_L^{-\alpha}` (unless the model applies it itself:
   ``branch_hooks=False``). The Table 3 form of μP (``"mup-table3"``) has no readout multiplier at all
   (it is folded into the stored weights by the abc-symmetry) but needs one more Adam parameter group
   for the readout (its lr and ε scales differ from every other parameter's).

A multiplier of exactly 1 installs nothing and an init scale of exactly 1 touches nothing, so at the
base shape every preset leaves the model bit for bit as it was. The scales live in a side table
(:class:`~lmech.param.table.ParamTable`) keyed by parameter name, never on tensors: the multipliers are
plain module state (a class and a float, or a hook), copied by ``copy.deepcopy`` and traced by
``torch.compile``; the parameter names are unchanged and a state dict is the raw
parameters, so a checkpoint is ``{"model": model.state_dict(), "param": p.table.to_dict()}`` and is
restored by ``parametrize(fresh_model, ParamTable.from_dict(...), init=False)`` then
``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmech.errors import BadInput
from lmech.param.presets import Preset
from lmech.param.roles import ParamShape, infer_roles, shapes_of
from lmech.param.table import ParamTable, build_table

__all__ = ["parametrize", "Parametrized", "ScaledLinear", "ScaleInput", "ScaleOutput", "ScaleLinearOutput"]


class ScaleInput:
    """Forward pre-hook: multiply a layer's first input by ``factor`` (a weight multiplier for linear maps)."""

    def __init__(self, factor: float):
        self.factor = float(factor)

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (args[0] * self.factor, *args[1:]), kwargs
        return args, {**kwargs, "input": kwargs["input"] * self.factor}  # layer(input=x)

    def __repr__(self) -> str:
        return f"ScaleInput({self.factor:g})"


class ScaleOutput:
    """Forward hook: multiply a module's output by ``factor`` (embeddings, residual branches)."""

    def __init__(self, factor: float):
        self.factor = float(factor)

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * self.factor

    def __repr__(self) -> str:
        return f"ScaleOutput({self.factor:g})"


class ScaleLinearOutput:
    """Forward hook of an ``nn.Linear``: its weight multiplied by ``factor``, applied to the (smaller) output.

    :math:`A(Wx + b) + (1 - A)b = (AW)x + b`; the bias's gradient is :math:`A + (1 - A) = 1` times the
    output's, as without the multiplier.
    """

    def __init__(self, factor: float):
        self.factor = float(factor)

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        scaled = output * self.factor
        return scaled if module.bias is None else scaled.add_(module.bias, alpha=1.0 - self.factor)

    def __repr__(self) -> str:
        return f"ScaleLinearOutput({self.factor:g})"


class ScaledLinear(nn.Linear):
    r"""An ``nn.Linear`` whose weight is used as :math:`A\,W` (TP V's multiplier), A = ``weight_multiplier``.

    ``parametrize`` sets a plain ``nn.Linear``'s class to this one (same parameters, same state dict)
    and stores A as a float attribute of the module. Forward: :math:`A\,(W x) + b` with A applied to
    the output when ``out_features <= in_features``, else :math:`W (A x) + b`: one elementwise pass over
    the smaller of the two, equal to :math:`(AW)x + b` to rounding.
    """

    weight_multiplier: float

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        m = self.weight_multiplier
        if self.out_features <= self.in_features:
            out = F.linear(input, self.weight)
            return torch.mul(out, m) if self.bias is None else torch.add(self.bias, out, alpha=m)
        return F.linear(input * m, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_multiplier={self.weight_multiplier:g}"


class _Inline:
    """Handle of an inline multiplier: ``remove()`` turns the :class:`ScaledLinear` back into ``nn.Linear``."""

    def __init__(self, module: nn.Linear, factor: float):
        module.__class__ = ScaledLinear
        module.weight_multiplier = float(factor)
        self.module = module

    def remove(self) -> None:
        if type(self.module) is ScaledLinear:
            del self.module.weight_multiplier
            self.module.__class__ = nn.Linear


def _has_our_hooks(model: nn.Module) -> list[str]:
    found = []
    for name, module in model.named_modules():
        hooks = list(module._forward_pre_hooks.values()) + list(module._forward_hooks.values())
        if isinstance(module, ScaledLinear) or any(isinstance(h, (ScaleInput, ScaleOutput, ScaleLinearOutput))
                                                   for h in hooks):
            found.append(name or "<root>")
    return found


class Parametrized:
    """A model put in a parametrization: its :class:`ParamTable` and the hooks installed on it."""

    def __init__(self, model: nn.Module, table: ParamTable, handles: list):
        self.model = model
        self.table = table
        self._handles = handles

    @property
    def preset(self) -> str:
        return self.table.preset

    def param_groups(self, lr: float, optimizer: str = "adam", weight_decay: float = 0.0,
                     eps: float | None = 1e-8) -> list[dict[str, Any]]:
        """Optimizer parameter groups with the preset's lr, weight-decay and ε scales
        (:meth:`ParamTable.param_groups`)."""
        return self.table.param_groups(self.model, lr, optimizer, weight_decay, eps)

    def optimizer(self, name: str, lr: float, weight_decay: float = 0.0, eps: float = 1e-8,
                  **kwargs: Any) -> torch.optim.Optimizer:
        """A torch optimizer (``sgd``, ``adam``, ``adamw`` or ``adam-atan2``) on :meth:`param_groups`."""
        from lmech.param.optim import make_optimizer

        return make_optimizer(self.model, self.table, name, lr, weight_decay=weight_decay, eps=eps, **kwargs)

    def remove(self) -> None:
        """Remove the installed multipliers and hooks (the rescaled init stays)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __repr__(self) -> str:
        roles: dict[str, int] = {}
        for e in self.table:
            roles[e.role] = roles.get(e.role, 0) + 1
        return (f"Parametrized({self.table.preset}, {len(self.table)} parameters: "
                + ", ".join(f"{n} {r}" for r, n in roles.items()) + f", {len(self._handles)} multipliers)")


def _install(model: nn.Module, table: ParamTable, branch_hooks: bool, inline: bool) -> list:
    modules = dict(model.named_modules())
    handles = []
    unsupported = []
    for entry in table:
        if entry.multiplier == 1.0:
            continue
        mname, _, pname = entry.name.rpartition(".")
        module = modules[mname]
        if inline and type(module) is nn.Linear and pname == "weight":
            handles.append(_Inline(module, entry.multiplier))
        elif isinstance(module, nn.Linear) and pname == "weight" and module.out_features < module.in_features:
            handles.append(module.register_forward_hook(ScaleLinearOutput(entry.multiplier)))
        elif isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and pname == "weight":
            handles.append(module.register_forward_pre_hook(ScaleInput(entry.multiplier), with_kwargs=True))
        elif isinstance(module, nn.Embedding) and pname == "weight":
            handles.append(module.register_forward_hook(ScaleOutput(entry.multiplier)))
        else:
            unsupported.append(f"{entry.name} ({type(module).__name__}, multiplier {entry.multiplier:g})")
    if unsupported:
        for handle in handles:
            handle.remove()
        raise BadInput("parametrization", "; ".join(unsupported),
                       "forward multipliers only on nn.Linear/nn.Conv weights and nn.Embedding tables; apply "
                       "p.table[name].multiplier in the module's forward and pass that role explicitly")
    if branch_hooks and table.branch_multiplier != 1.0:
        for branch in table.branches:
            handles.append(modules[branch].register_forward_hook(ScaleOutput(table.branch_multiplier)))
    return handles


def parametrize(model: nn.Module, parametrization: str | Preset | ParamTable, base: nn.Module |
                Mapping[str, ParamShape] | None = None, *, delta: nn.Module | Mapping[str, ParamShape] | None = None,
                roles: Mapping[str, str] | None = None, depth_mult: float = 1.0, branches: Sequence[str] = (),
                branch_hooks: bool = True, init: bool = True, multipliers: str = "inline") -> Parametrized:
    """Put ``model`` in ``parametrization`` relative to ``base`` (module docstring); returns a :class:`Parametrized`.

    Parameters
    ----------
    parametrization:
        a preset name (``"sp"``, ``"ntk"``, ``"mup"``, ``"mup-table3"``, ``"mean-field"``,
        ``"depth-mup"``, ``"completep"``), a :class:`~lmech.param.presets.Preset`, or a saved
        :class:`ParamTable` (then ``base``, ``roles`` and depth are read from the table).
    base:
        the model at base width (the same architecture; build it on ``device="meta"`` to spend no
        memory), or a mapping parameter name → shape. ``None``: the model is its own base.
    delta:
        a model of another width, when ``model`` is at base width, to tell which dimensions grow.
    roles:
        parameter name or glob pattern → role, overriding inference (``lmech.param.ROLES``).
    depth_mult, branches:
        L / L_base and the residual-branch submodules (by name) the depth rules apply to.
    branch_hooks:
        install the branch multiplier as forward hooks on ``branches`` (False when the model's forward
        applies ``table.branch_multiplier`` itself, as lmech's reference models do).
    init:
        rescale the parameters in place (False when restoring a checkpoint).
    multipliers:
        ``"inline"`` (default): a plain ``nn.Linear`` with a weight multiplier becomes a
        :class:`ScaledLinear`; ``"hooks"``: forward (pre-)hooks everywhere (module docstring). Both give
        the same forward to rounding.
    """
    if multipliers not in ("inline", "hooks"):
        raise BadInput("multipliers", multipliers, "'inline' (ScaledLinear) or 'hooks'")
    if not isinstance(model, nn.Module):
        raise BadInput("model", type(model).__name__, "an nn.Module")
    already = _has_our_hooks(model)
    if already:
        raise BadInput("model", f"already parametrized (hooks on {already})",
                       "a model not yet parametrized: call .remove() on the previous Parametrized first")
    if isinstance(parametrization, ParamTable):
        table = parametrization
        names = [n for n, _ in model.named_parameters()]
        if sorted(names) != sorted(e.name for e in table):
            raise BadInput("parametrization", "a table for other parameter names",
                           "a ParamTable built for this model's parameters")
    else:
        base_shapes = shapes_of(model if base is None else base)
        delta_shapes = None if delta is None else shapes_of(delta)
        infos = infer_roles(model, base_shapes, delta_shapes, roles)
        table = build_table(model, parametrization, infos, depth_mult, branches)
    if init:
        with torch.no_grad():
            for name, param in model.named_parameters():
                scale = table[name].init_scale
                if scale != 1.0:
                    param.mul_(scale)
    return Parametrized(model, table, _install(model, table, branch_hooks, multipliers == "inline"))
