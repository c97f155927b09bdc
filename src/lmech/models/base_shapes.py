"""Put a reference model in its parametrization against its own base shapes.

lmech's reference models take ``width``, ``depth`` and ``parametrization`` and a base width and depth
at which the parametrization coincides with SP. :func:`self_parametrize` builds the same architecture
at the base width and at twice the base width on the ``meta`` device (shapes only, no memory) to tell
which dimensions grow with width, and calls :func:`lmech.param.parametrize` with the depth multiplier
``depth / base_depth`` and the model's residual branches. The model applies the branch multiplier in
its own forward (``branch_hooks=False``), so the equation is visible where it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import nn

from lmech.param import Parametrized, parametrize

__all__ = ["self_parametrize"]


def self_parametrize(model: nn.Module, build: Callable[[int, str], nn.Module], parametrization: str,
                     base_width: int, depth_mult: float, branches: Sequence[str] = (),
                     roles: Mapping[str, str] | None = None) -> Parametrized:
    """``parametrize(model, parametrization, base=build(base_width), delta=build(2·base_width), ...)``.

    ``build(width, device)`` constructs the architecture at another width (called with ``"meta"``).
    """
    base = build(base_width, "meta")
    delta = build(2 * base_width, "meta")
    return parametrize(model, parametrization, base=base, delta=delta, roles=roles, depth_mult=depth_mult,
                       branches=branches, branch_hooks=False)
