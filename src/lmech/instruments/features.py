r"""Feature movement: how far weights and representations travel during training.

Weights (between two parameter snapshots, e.g. at initialisation and at step ``t``):

* :func:`relative_weight_change` :math:`\|W_t - W_0\| / \|W_0\|` per parameter tensor, Frobenius or spectral;
* :func:`update_to_weight_rms` :math:`\mathrm{RMS}(\Delta W)/\mathrm{RMS}(W)` per parameter tensor.

Representations (layer outputs captured by forward hooks on named submodules):

* :func:`capture_activations` the outputs of named submodules on a batch;
* :func:`coordinate_size` mean :math:`|h|` per layer, the statistic of the muP coordinate check
  (Yang et al. 2021, Tensor Programs V, arXiv 2203.03466);
* :func:`coordinate_change` mean :math:`|h_t - h_0|` per layer, between a trained model and its initial copy;
* :func:`effective_rank` (Roy & Vetterli 2007) and :func:`participation_ratio` of a representation matrix.

A snapshot is a module (its ``named_parameters``) or a mapping ``name -> tensor`` (e.g. a state dict,
or ``{k: v.detach().clone() for k, v in model.named_parameters()}`` taken at initialisation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lmech.errors import BadInput
from lmech.instruments._mode import eval_mode

__all__ = [
    "relative_weight_change",
    "update_to_weight_rms",
    "capture_activations",
    "coordinate_size",
    "coordinate_change",
    "effective_rank",
    "participation_ratio",
]


# --------------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------------


def _snapshot(name: str, obj: Any) -> dict[str, Tensor]:
    if isinstance(obj, nn.Module):
        snap = {k: v.detach() for k, v in obj.named_parameters()}
    elif isinstance(obj, Mapping) and all(isinstance(v, Tensor) for v in obj.values()):
        snap = {k: v.detach() for k, v in obj.items()}
    else:
        raise BadInput(name, type(obj).__name__, "an nn.Module or a mapping name -> tensor")
    if not snap:
        raise BadInput(name, type(obj).__name__, "a snapshot with at least one tensor")
    return snap


def _paired(name_a: str, a: Any, name_b: str, b: Any) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    sa, sb = _snapshot(name_a, a), _snapshot(name_b, b)
    if sa.keys() != sb.keys():
        diff = sorted(set(sa) ^ set(sb))
        raise BadInput(
            name_b, f"names differing from {name_a}: {diff}", f"the same parameter names as {name_a}"
        )
    for k in sa:
        if sa[k].shape != sb[k].shape:
            raise BadInput(
                f"{name_b}[{k!r}]", tuple(sb[k].shape), f"the shape in {name_a}, {tuple(sa[k].shape)}"
            )
    return sa, sb


def _norm(t: Tensor, kind: str) -> Tensor:
    t = t.to(torch.float64)
    if kind == "fro" or t.ndim < 2:
        return torch.linalg.vector_norm(t)
    return torch.linalg.matrix_norm(t.reshape(t.shape[0], -1), ord=2)


def relative_weight_change(current: Any, initial: Any, *, norm: str = "fro") -> dict[str, float]:
    r"""Relative change :math:`\|W_t - W_0\| / \|W_0\|` of every parameter tensor.

    The lazy-training diagnostic of Chizat, Oyallon & Bach 2019 (arXiv 1812.07956, Sec. 1) and the
    weight-movement measurements of Lee et al. 2019 (arXiv 1902.06720, Sec. 3, Fig. 1): in the kernel
    regime it vanishes as :math:`1/\sqrt{\text{width}}`.

    Args:
        current, initial: snapshots (modules or mappings name -> tensor) with the same names and shapes.
        norm: ``"fro"`` (Frobenius) or ``"spectral"`` (largest singular value of ``W.reshape(out, -1)``;
            for 1-D tensors such as biases both norms are the Euclidean norm).

    Returns:
        ``{name: ratio}``; ``inf`` where :math:`W_0 = 0` but :math:`W_t \neq 0` (e.g. a zero-initialised
        muP readout), ``nan`` where both are zero.
    """
    if norm not in ("fro", "spectral"):
        raise BadInput("norm", norm, "'fro' or 'spectral'")
    init, now = _paired("initial", initial, "current", current)
    return {k: float(_norm(now[k] - init[k], norm) / _norm(init[k], norm)) for k in init}


def update_to_weight_rms(before: Any, after: Any) -> dict[str, float]:
    r"""Update-to-weight ratio :math:`\mathrm{RMS}(W_{\rm after} - W_{\rm before})/\mathrm{RMS}(W_{\rm before})`.

    :math:`\mathrm{RMS}(A) = \|A\|_F / \sqrt{\#A}`; since both tensors have the same number of entries the
    ratio equals the relative Frobenius change of one update. It is the per-step statistic that muP and
    its follow-ups keep width-independent (Yang et al. 2021, arXiv 2203.03466: every layer's update
    should change its output by :math:`\Theta(1)` relative to its size); taken between successive steps it is
    the "update/data ratio" commonly monitored when tuning learning rates.
    """
    b, a = _paired("before", before, "after", after)

    def rms(t: Tensor) -> Tensor:
        return torch.linalg.vector_norm(t.to(torch.float64)) / math.sqrt(max(t.numel(), 1))

    return {k: float(rms(a[k] - b[k]) / rms(b[k])) for k in b}


# --------------------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------------------


def _default_layers(model: nn.Module) -> list[str]:
    leaves = [name for name, m in model.named_modules() if name and next(m.children(), None) is None]
    return leaves or [""]


def _first_tensor(out: Any) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, Tensor)), None)
    return None


def _layer_outputs(model: nn.Module, x: Tensor, layers: list[str], strict: bool) -> dict[str, Tensor]:
    """One forward pass without grad, returning the (first tensor) output of each named layer."""
    modules = dict(model.named_modules())
    calls: dict[str, list[Tensor]] = {name: [] for name in layers}

    def hook(name: str):
        def record(_m: nn.Module, _inp: Any, out: Any) -> None:
            t = _first_tensor(out)
            if t is not None:
                calls[name].append(t.detach())

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in layers]
    try:
        with torch.no_grad(), eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, ts in calls.items():
        if len(ts) == 1:
            out[name] = ts[0]
        elif strict:
            raise BadInput(
                "layers", name, f"a submodule producing one tensor per forward (it produced {len(ts)})"
            )
    return out


def _check_layers(model: nn.Module, layers: Sequence[str] | None) -> tuple[list[str], bool]:
    if not isinstance(model, nn.Module):
        raise BadInput("model", type(model).__name__, "a torch.nn.Module")
    if layers is None:
        return _default_layers(model), False
    if isinstance(layers, str):
        layers = [layers]
    names = dict(model.named_modules())
    unknown = [name for name in layers if name not in names]
    if unknown or not layers:
        shown = list(names)[:20]
        raise BadInput("layers", list(layers), f"names of submodules of the model, e.g. {shown}")
    return list(layers), True


def _check_batch(x: Any, batch_size: Any) -> None:
    if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] == 0:
        raise BadInput("x", getattr(x, "shape", type(x).__name__), "a non-empty batch tensor (n, ...)")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise BadInput("batch_size", batch_size, "None or a positive integer")


def capture_activations(
    model: nn.Module, x: Tensor, layers: Sequence[str] | None = None, *, batch_size: int | None = None
) -> dict[str, Tensor]:
    """Outputs of named submodules on ``x``, captured by forward hooks (no gradients are kept).

    Args:
        model: any module; it is evaluated in eval mode and each module's mode is restored (the
            instruments' policy, :mod:`lmech.instruments._mode`).
        x: a batch ``(n, ...)``.
        layers: names from ``model.named_modules()`` (``""`` is the model itself). ``None``: every leaf
            submodule called exactly once per forward pass. A named layer must produce one tensor per
            forward (for a tuple output, its first tensor is taken).
        batch_size: run the model on chunks of this many examples and concatenate.

    Returns:
        ``{layer: tensor (n, ...)}``, detached, in the order of ``layers``.
    """
    names, strict = _check_layers(model, layers)
    _check_batch(x, batch_size)
    step = x.shape[0] if batch_size is None else batch_size
    parts = [_layer_outputs(model, x[s : s + step], names, strict) for s in range(0, x.shape[0], step)]
    return {name: torch.cat([p[name] for p in parts]) for name in names if name in parts[0]}


def coordinate_size(
    model: nn.Module, x: Tensor, layers: Sequence[str] | None = None, *, batch_size: int | None = None
) -> dict[str, float]:
    r"""Mean absolute coordinate :math:`\frac{1}{nD}\sum_{i,d} |h_{i,d}|` of every layer's output.

    The statistic of the coordinate check of Yang et al. 2021 (Tensor Programs V, arXiv 2203.03466,
    the coordinate-check figures and the ``mup`` package's ``get_coord_data``): under muP it stays
    :math:`\Theta(1)` as width grows, under a wrong parametrization it blows up or vanishes.
    """
    acts = capture_activations(model, x, layers, batch_size=batch_size)
    return {k: float(v.to(torch.float64).abs().mean()) for k, v in acts.items()}


def coordinate_change(
    model: nn.Module,
    model0: nn.Module,
    x: Tensor,
    layers: Sequence[str] | None = None,
    *,
    batch_size: int | None = None,
) -> dict[str, float]:
    r"""Mean absolute change :math:`\frac{1}{nD}\sum_{i,d} |h^{(t)}_{i,d} - h^{(0)}_{i,d}|` per layer output.

    ``model`` is the trained model and ``model0`` its copy at initialisation (same architecture and
    layer names). This is the coordinate check "after t steps" of Yang et al. 2021 (arXiv 2203.03466):
    muP makes the change :math:`\Theta(1)` in width in every layer (feature learning), the NTK
    parametrization makes it vanish in hidden layers.
    """
    names, _ = _check_layers(model, layers)
    _check_layers(model0, names)
    now = capture_activations(model, x, names if layers is not None else None, batch_size=batch_size)
    then = capture_activations(model0, x, list(now), batch_size=batch_size)
    out = {}
    for k, v in now.items():
        if v.shape != then[k].shape:
            raise BadInput(
                "model0", f"layer {k!r} output {tuple(then[k].shape)}", f"shape {tuple(v.shape)} as in model"
            )
        out[k] = float((v.to(torch.float64) - then[k].to(torch.float64)).abs().mean())
    return out


# --------------------------------------------------------------------------------------------------
# dimensionality of representations
# --------------------------------------------------------------------------------------------------


def _singular_values(name: str, X: Any, center: bool) -> Tensor:
    if not isinstance(X, Tensor):
        try:
            X = torch.as_tensor(X)
        except (TypeError, ValueError, RuntimeError):
            raise BadInput(name, type(X).__name__, "a tensor or array (n, p)") from None
    if X.ndim < 2 or X.shape[0] == 0 or X[0].numel() == 0:
        raise BadInput(name, tuple(X.shape), "a non-empty matrix (n, p) (higher dimensions are flattened)")
    X = X.reshape(X.shape[0], -1).to(torch.float64)
    if center:
        X = X - X.mean(0, keepdim=True)
    s = torch.linalg.svdvals(X)
    if s.sum() == 0:
        raise BadInput(name, "a zero matrix", "a matrix with at least one non-zero singular value")
    return s


def effective_rank(X: Tensor, *, center: bool = False) -> float:
    r"""Entropy effective rank :math:`\exp(-\sum_k p_k \log p_k)`, :math:`p_k = \sigma_k / \sum_j \sigma_j`.

    Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality" (EUSIPCO),
    the defining formula of the paper (with :math:`0 \log 0 = 0`). It lies in
    :math:`[1, \mathrm{rank}\,X]` and equals :math:`k` for a matrix with :math:`k` equal non-zero singular values. ``X`` is ``(n, p)`` (higher
    dimensions are flattened); ``center=True`` subtracts the column means first.
    """
    s = _singular_values("X", X, center)
    p = s[s > 0] / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def participation_ratio(X: Tensor, *, center: bool = False) -> float:
    r"""Participation ratio :math:`(\sum_k \lambda_k)^2 / \sum_k \lambda_k^2`, :math:`\lambda_k = \sigma_k^2`.

    The dimensionality of Gao et al. 2017 ("A theory of multineuronal dimensionality, dynamics and
    measurement", bioRxiv 214262) with :math:`\lambda_k` the eigenvalues of :math:`X^\top X`
    (of the covariance when ``center=True``). It equals :math:`k` for :math:`k` equal singular values.
    """
    lam = _singular_values("X", X, center) ** 2
    return float(lam.sum() ** 2 / (lam**2).sum())
