r"""The empirical neural tangent kernel (eNTK), its movement, and the linearized model.

For a model :math:`f(x;\theta) \in \mathbb{R}^o` with trainable parameters :math:`\theta \in \mathbb{R}^P`
the empirical NTK (Jacot et al. 2018, arXiv 1806.07572, the neural tangent kernel; evaluated at
finite width as in Lee et al. 2019, arXiv 1902.06720) is

.. math::
    K_{ij}^{ab} = \sum_{p=1}^{P} \frac{\partial f^a(x_i;\theta)}{\partial \theta_p}
                                 \frac{\partial f^b(x'_j;\theta)}{\partial \theta_p}
    = [J(X)\, J(X')^\top]_{(i,a),(j,b)},

an :math:`(n_1, n_2, o, o)` array. ``mode="trace"`` returns :math:`\sum_a K_{ij}^{aa}` and
``mode="diagonal"`` returns :math:`K_{ij}^{aa}` (shape ``(n1, n2, o)``), as in the ``compute`` options of
the PyTorch ``torch.func`` NTK tutorial, which follows Novak, Sohl-Dickstein & Schoenholz 2022
("Fast finite width neural tangent kernel", arXiv 2206.08720).

Three methods compute it (all give the same numbers up to round-off):

* ``"jacobian"``: per-example Jacobians by ``vmap(jacrev)`` and one contraction per parameter tensor;
* ``"ntvp"``: NTK-vector products :math:`K v = J(X) (J(X')^\top v)` (a ``vjp`` then a ``jvp``, the "NTK-vector
  products" of Novak et al. 2022) applied to the columns of the identity; :class:`NTKOperator` exposes the product
  itself, matrix-free;
* ``"linear"`` (and ``"auto"``): a structured path for dense layers, ``nn.Linear`` and
  :class:`lmech.models.mlp.DenseLayer`. A dense layer :math:`z = m_W W a + m_b b` (multipliers 1 for
  ``nn.Linear``) contributes :math:`\partial f^a/\partial W = m_W\, g^a a^\top` and
  :math:`\partial f^a/\partial b = m_b\, g^a` with :math:`g^a = \partial f^a/\partial z`, so its part of
  the kernel is

  .. math::
      K_{ij}^{ab}\big|_{W,b} = (m_W^2\, a_i \cdot a'_j + m_b^2)\,(g_i^a \cdot g'^b_j),

  one Gram matrix of layer inputs times one Gram matrix of back-propagated output gradients (the
  per-layer factorisation behind the "structured derivatives" of Novak et al. 2022). The remaining
  parameters (anything that is not the weight or bias of a dense layer called once on a
  ``(batch, features)`` input) fall back to the Jacobian contraction; a model with no such layer is
  handled entirely by the Jacobian path.

All methods assume that the model treats examples independently (no attention across the batch):
``f(X)[i]`` depends only on ``X[i]``. The model is evaluated in eval mode and each module's mode is
restored afterwards (the instruments' one policy, :mod:`lmech.instruments._mode`): the kernel of a
network with dropout or batch norm is that of the function it computes in eval mode (batch norm
with its running statistics). A batch norm without running statistics couples examples even in
eval mode and is refused with an error naming it.

``chunk_size`` bounds the memory: the kernel is assembled block by block over the :math:`n_1 \times n_2`
grid, and no intermediate (Jacobian, activation) ever holds more than ``chunk_size`` examples.
``x1`` and ``x2`` may also be DataLoaders (any re-iterable of batches, :mod:`lmech.instruments._batches`):
the kernel is then the Gram matrix over all their examples in the loader's order, built block by block
over pairs of batches, so that memory holds two batches (split further by ``chunk_size``) besides
the kernel itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from lmech.errors import BadInput
from lmech.instruments._batches import Examples, is_loader
from lmech.instruments._mode import check_examples_independent, measuring
from lmech.models.mlp import DenseLayer

__all__ = [
    "empirical_ntk",
    "NTKOperator",
    "LinearizedModel",
    "kernel_distance",
    "kernel_velocity",
    "kernel_target_alignment",
]

MODES = ("full", "trace", "diagonal")
METHODS = ("auto", "jacobian", "ntvp", "linear")


# --------------------------------------------------------------------------------------------------
# validation and small helpers
# --------------------------------------------------------------------------------------------------


def _named_trainable(model: nn.Module) -> dict[str, Tensor]:
    """The trainable parameters of ``model`` by name (``named_parameters`` order), detached."""
    if not isinstance(model, nn.Module):
        raise BadInput("model", type(model).__name__, "a torch.nn.Module")
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise BadInput("model", type(model).__name__, "a module with at least one parameter requiring grad")
    return params


def _check_inputs(x1: Any, x2: Any) -> tuple[Tensor, Tensor | None]:
    if not isinstance(x1, Tensor) or x1.ndim < 1 or x1.shape[0] == 0:
        raise BadInput("x1", getattr(x1, "shape", type(x1).__name__), "a tensor (n1, ...) with n1 >= 1")
    if x2 is None:
        return x1, None
    if not isinstance(x2, Tensor) or x2.ndim < 1 or x2.shape[0] == 0:
        raise BadInput("x2", getattr(x2, "shape", type(x2).__name__), "a tensor (n2, ...) with n2 >= 1")
    if x2.shape[1:] != x1.shape[1:]:
        raise BadInput(
            "x2", tuple(x2.shape), f"the per-example shape of x1, (n2, {', '.join(map(str, x1.shape[1:]))})"
        )
    return x1, x2


def _sources(x1: Any, x2: Any, chunk_size: int | None, device: torch.device) -> tuple[Examples, Examples | None]:
    """``x1`` and ``x2`` (tensors or DataLoaders) as blocks of at most ``chunk_size`` examples."""
    if not is_loader(x1) and not is_loader(x2):
        x1, x2 = _check_inputs(x1, x2)
    src1 = Examples(x1, chunk_size=chunk_size, with_targets=False, device=device, name="x1")
    if x2 is None:
        return src1, None
    src2 = Examples(x2, chunk_size=chunk_size, with_targets=False, device=device, name="x2")
    if src2.example_shape != src1.example_shape:
        raise BadInput("x2", f"examples of shape {src2.example_shape}", f"the per-example shape of x1, {src1.example_shape}")
    return src1, src2


@contextlib.contextmanager
def _deterministic(model: nn.Module) -> Iterator[None]:
    """Turn torch.func's refusal of a random operation (in eval mode) into an error naming the fix."""
    try:
        yield
    except RuntimeError as err:
        if "random operation" not in str(err):
            raise
        raise BadInput("model", type(model).__name__, "a model whose forward is deterministic in eval mode: it "
                       "called a random operation (dropout-like noise that ignores model.eval()); make that "
                       "module honour self.training") from None


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise BadInput(name, value, "one of " + ", ".join(repr(a) for a in allowed))


def _check_chunk(chunk_size: Any) -> None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise BadInput("chunk_size", chunk_size, "None or a positive integer")


def _output_dim(model: nn.Module, x: Tensor) -> int:
    """Number of outputs ``o`` per example; checks that the output has a leading batch dimension."""
    with torch.no_grad():
        out = model(x[:1])
    if not isinstance(out, Tensor) or out.ndim < 1 or out.shape[0] != 1:
        raise BadInput(
            "model", type(model).__name__, "a module returning a tensor (batch, ...) for a batch input"
        )
    return max(1, out[0].numel())


def _blocks(n: int, chunk_size: int | None) -> list[slice]:
    step = n if chunk_size is None else chunk_size
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def _transpose_block(block: Tensor, mode: str) -> Tensor:
    """The (j, i) block of a symmetric kernel from its (i, j) block."""
    if mode == "full":
        return block.permute(1, 0, 3, 2)
    if mode == "trace":
        return block.T
    return block.permute(1, 0, 2)


def _empty_kernel(n1: int, n2: int, o: int, mode: str, like: Tensor) -> Tensor:
    shape = {"full": (n1, n2, o, o), "trace": (n1, n2), "diagonal": (n1, n2, o)}[mode]
    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def _positions(examples: Examples) -> Iterator[tuple[slice, Tensor]]:
    """The blocks of ``examples`` with the rows of the kernel they fill."""
    start = 0
    for x, _ in examples:
        yield slice(start, start + x.shape[0]), x
        start += x.shape[0]


def _assemble(
    x1: Examples,
    x2: Examples | None,
    o: int,
    mode: str,
    features: Callable[[Tensor], Any],
    contract: Callable[[Any, Any, str], Tensor],
    like: Tensor,
) -> Tensor:
    """Fill the kernel block by block: ``K[I, J] = contract(features(x1[I]), features(x2[J]))``.

    ``features`` of a column block are recomputed for each row block, so memory never holds more
    than two blocks' features; for ``x2 is None`` only the upper block triangle is computed.
    """
    symmetric = x2 is None
    x2_ = x1 if symmetric else x2
    K = _empty_kernel(len(x1), len(x2_), o, mode, like)
    for bi, (I, xi) in enumerate(_positions(x1)):
        fi = features(xi)
        for bj, (J, xj) in enumerate(_positions(x2_)):
            if symmetric and bj < bi:
                continue
            fj = fi if (symmetric and bj == bi) else features(xj)
            block = contract(fi, fj, mode)
            K[I, J] = block
            if symmetric and bj != bi:
                K[J, I] = _transpose_block(block, mode)
    return K


# --------------------------------------------------------------------------------------------------
# method 1: Jacobian contraction
# --------------------------------------------------------------------------------------------------


def _per_example_jacobians(
    model: nn.Module, params: dict[str, Tensor], x: Tensor, frozen: dict[str, Tensor] | None = None
) -> list[Tensor]:
    """Per-example Jacobians of the flattened output, one ``(n, o, P_k)`` tensor per tensor of ``params``.

    ``frozen`` holds (detached) values of the other parameters, so no autograd graph reaches the model.
    """
    frozen = frozen or {}

    def f_single(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(model, {**frozen, **p}, (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(f_single), in_dims=(None, 0))(params, x)
    n = x.shape[0]
    return [j.reshape(n, j.shape[1], -1) for j in jac.values()]


def _contract_jacobians(J1: list[Tensor], J2: list[Tensor], mode: str) -> Tensor:
    r"""Sum over parameter tensors of :math:`J_1 J_2^\top` in the requested mode (one einsum each)."""
    expr = {"full": "iaf,jbf->ijab", "trace": "iaf,jaf->ij", "diagonal": "iaf,jaf->ija"}[mode]
    out = torch.einsum(expr, J1[0], J2[0])
    for a, b in zip(J1[1:], J2[1:]):
        out += torch.einsum(expr, a, b)
    return out


# --------------------------------------------------------------------------------------------------
# method 2: NTK-vector products
# --------------------------------------------------------------------------------------------------


class NTKOperator:
    r"""The eNTK as a matrix-free linear operator of shape :math:`(n_1 o, n_2 o)`.

    ``K @ v = J(X_1) (J(X_2)^\top v)``: one vector-Jacobian product of :math:`f(X_2)` followed by one
    Jacobian-vector product of :math:`f(X_1)` (the "NTK-vector products" of Novak et al. 2022, arXiv
    2206.08720). Rows and columns are indexed by ``(example, output)`` pairs flattened example-major,
    ``i * o + a``, so ``to_dense()`` equals
    ``empirical_ntk(model, x1, x2).permute(0, 2, 1, 3).reshape(n1*o, n2*o)``.
    ``v`` may be a vector ``(n2*o,)`` or a matrix ``(n2*o, k)`` (the ``k`` products are vmapped).
    Parameters are read when the operator is built; later training does not change it. The model
    is evaluated in eval mode (each module's mode restored after every product).
    """

    def __init__(self, model: nn.Module, x1: Tensor, x2: Tensor | None = None):
        self._params = _named_trainable(model)
        x1, x2 = _check_inputs(x1, x2)
        check_examples_independent(model, "the empirical NTK")
        self.model, self.x1, self.x2 = model, x1, (x1 if x2 is None else x2)
        with measuring(model):
            self.num_outputs = _output_dim(model, x1)
        self.shape = (x1.shape[0] * self.num_outputs, self.x2.shape[0] * self.num_outputs)

    def _f(self, x: Tensor) -> Callable[[dict[str, Tensor]], Tensor]:
        return lambda p: functional_call(self.model, p, (x,)).reshape(x.shape[0], -1)

    def __matmul__(self, v: Tensor) -> Tensor:
        if not isinstance(v, Tensor) or v.ndim not in (1, 2) or v.shape[0] != self.shape[1]:
            raise BadInput(
                "v",
                getattr(v, "shape", type(v).__name__),
                f"a tensor ({self.shape[1]},) or ({self.shape[1]}, k)",
            )
        vec = v.ndim == 1
        V = (v.unsqueeze(1) if vec else v).T.reshape(-1, self.x2.shape[0], self.num_outputs)
        with measuring(self.model), _deterministic(self.model):
            _, vjp_fn = vjp(self._f(self.x2), self._params)
            U = vmap(vjp_fn)(V)[0]  # J2^T v for each of the k columns, a dict of (k, *p.shape)
            f1 = self._f(self.x1)
            KV = vmap(lambda u: jvp(f1, (self._params,), (u,))[1])(U)  # (k, n1, o)
        out = KV.reshape(KV.shape[0], -1).T
        return out[:, 0] if vec else out

    def to_dense(self, chunk_size: int | None = None) -> Tensor:
        """The ``(n1*o, n2*o)`` matrix, built from products with ``chunk_size`` identity columns at a time."""
        _check_chunk(chunk_size)
        n_cols = self.shape[1]
        like = next(iter(self._params.values()))
        eye = torch.eye(n_cols, dtype=like.dtype, device=like.device)
        return torch.cat([self @ eye[:, J] for J in _blocks(n_cols, chunk_size)], dim=1)


def _ntvp_block(model: nn.Module, x1: Tensor, x2: Tensor, o: int, mode: str) -> Tensor:
    dense = NTKOperator(model, x1, x2).to_dense()
    K = dense.reshape(x1.shape[0], o, x2.shape[0], o).permute(0, 2, 1, 3)
    if mode == "full":
        return K
    diag = torch.diagonal(K, dim1=2, dim2=3)
    return diag.sum(-1) if mode == "trace" else diag


# --------------------------------------------------------------------------------------------------
# method 3: structured path for nn.Linear
# --------------------------------------------------------------------------------------------------


def _dense_multipliers(m: nn.Module) -> tuple[float, float] | None:
    """(m_W, m_b) of a dense layer the structured path understands, else None.

    ``nn.Linear`` (its own forward): (1, 1). :class:`lmech.models.mlp.DenseLayer` (its own forward,
    ``z = m_W · W a + m_b · b``): its weight and bias multipliers.
    """
    if isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward:
        return 1.0, 1.0
    if isinstance(m, DenseLayer) and type(m).forward is DenseLayer.forward:
        b_mult = m.bias_multiplier if m.bias_multiplier is not None else 0.0
        return float(m.weight_multiplier), float(b_mult)
    return None


def _linear_candidates(
    model: nn.Module, params: dict[str, Tensor]
) -> dict[str, tuple[str | None, str | None, float, float]]:
    """Dense modules whose trainable weight/bias belong to them alone.

    name -> (weight name, bias name, weight multiplier m_W, bias multiplier m_b).
    """
    owners: dict[int, int] = {}
    for m in model.modules():
        for p in m._parameters.values():
            if p is not None:
                owners[id(p)] = owners.get(id(p), 0) + 1
    named = dict(model.named_parameters())
    by_id = {id(named[k]): k for k in params}
    found = {}
    for mname, m in model.named_modules():
        mults = _dense_multipliers(m)
        if mults is None:
            continue
        names = []
        for p in (m.weight, m.bias):
            ok = p is not None and id(p) in by_id and owners[id(p)] == 1
            names.append(by_id[id(p)] if ok else None)
        if names[0] is not None or names[1] is not None:
            found[mname] = (names[0], names[1], *mults)
    return found


class _LinearFeatures:
    """Per-example factors of each dense layer's kernel.

    Layer inputs ``a`` (n, d_in) and back-propagated output gradients ``g`` (n, o, d_out).
    """

    def __init__(self, model: nn.Module, params: dict[str, Tensor], o: int):
        self.model, self.o = model, o
        self.layers = _linear_candidates(model, params)
        self.rest: list[str] | None = None  # parameter names left to the Jacobian path, set on first call
        self.all_params = params

    def __call__(self, x: Tensor) -> tuple[dict[str, tuple[Tensor, Tensor]], list[Tensor] | None]:
        modules = dict(self.model.named_modules())
        records: dict[str, list[tuple[Tensor, Tensor, int]]] = {name: [] for name in self.layers}
        hooks = [
            modules[name].register_forward_hook(
                lambda _m, inp, out, name=name: records[name].append((inp[0], out, out._version))
            )
            for name in self.layers
        ]
        try:
            with torch.enable_grad():
                out = self.model(x).reshape(x.shape[0], -1)
        finally:
            for h in hooks:
                h.remove()
        # the factorisation needs one call per forward, a (batch, features) input, and an output that
        # later layers did not overwrite in place (an in-place activation would change what z means)
        usable = [
            k
            for k, r in records.items()
            if len(r) == 1 and r[0][0].ndim == 2 and r[0][1].requires_grad and r[0][1]._version == r[0][2]
        ]
        if self.rest is None:
            covered = {p for k in usable for p in self.layers[k][:2] if p is not None}
            self.rest = [k for k in self.all_params if k not in covered]
            self.usable = usable
        elif usable != self.usable:  # pragma: no cover - a model whose call structure changes with the input
            raise BadInput("model", type(self.model).__name__, "the same layer calls for every input chunk")
        zs = [records[k][0][1] for k in self.usable]
        grads = [torch.zeros(x.shape[0], self.o, z.shape[-1], dtype=z.dtype, device=z.device) for z in zs]
        for a in range(self.o if zs else 0):
            gs = torch.autograd.grad(out[:, a].sum(), zs, retain_graph=a < self.o - 1, allow_unused=True)
            for g_all, g in zip(grads, gs):
                if g is not None:
                    g_all[:, a] = g
        feats = {k: (records[k][0][0].detach(), g) for k, g in zip(self.usable, grads)}
        rest = {k: self.all_params[k] for k in self.rest}
        frozen = {k: v for k, v in self.all_params.items() if k not in rest}
        jac = _per_example_jacobians(self.model, rest, x, frozen) if rest else None
        return feats, jac

    def contract(self, fi: Any, fj: Any, mode: str) -> Tensor:
        (feats_i, jac_i), (feats_j, jac_j) = fi, fj
        out = _contract_jacobians(jac_i, jac_j, mode) if jac_i is not None else None
        for k in self.usable:
            w_name, b_name, w_mult, b_mult = self.layers[k]
            (a_i, g_i), (a_j, g_j) = feats_i[k], feats_j[k]
            n1, n2, o = g_i.shape[0], g_j.shape[0], self.o
            if w_name is not None:
                S = a_i @ a_j.T if w_mult == 1.0 else (w_mult * w_mult) * (a_i @ a_j.T)
            else:
                S = torch.zeros(n1, n2, dtype=a_i.dtype, device=a_i.device)
            if b_name is not None:
                S = S + b_mult * b_mult
            if mode == "full":
                GG = (
                    (g_i.reshape(n1 * o, -1) @ g_j.reshape(n2 * o, -1).T)
                    .reshape(n1, o, n2, o)
                    .permute(0, 2, 1, 3)
                )
                blk = S[:, :, None, None] * GG
            elif mode == "trace":
                blk = S * (g_i.reshape(n1, -1) @ g_j.reshape(n2, -1).T)
            else:
                blk = S[:, :, None] * torch.bmm(g_i.transpose(0, 1), g_j.permute(1, 2, 0)).permute(1, 2, 0)
            out = blk if out is None else out + blk
        return out


# --------------------------------------------------------------------------------------------------
# the entry point
# --------------------------------------------------------------------------------------------------


def empirical_ntk(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    mode: str = "full",
    method: str = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    r"""The empirical NTK :math:`K_{ij}^{ab} = \nabla_\theta f^a(x_i) \cdot \nabla_\theta f^b(x'_j)`.

    Jacot et al. 2018 (arXiv 1806.07572), the neural tangent kernel at the model's current parameters (every parameter
    with ``requires_grad``); ``x2=None`` means ``x2 = x1`` (the symmetric Gram matrix).

    Args:
        model: any module mapping a batch ``(n, ...)`` to outputs ``(n, ...)``; the ``o`` outputs per
            example are its flattened output. Examples must be processed independently. It is
            evaluated in eval mode; each module's mode is restored on return.
        x1, x2: inputs ``(n1, ...)`` and ``(n2, ...)`` with the same per-example shape, or DataLoaders
            (re-iterables of batches ``(inputs, ...)`` or of input tensors, the same examples on every
            pass): the kernel over all their examples, in order.
        mode: ``"full"`` -> ``(n1, n2, o, o)``; ``"trace"`` -> :math:`\sum_a K^{aa}`, ``(n1, n2)``;
            ``"diagonal"`` -> :math:`K^{aa}`, ``(n1, n2, o)``. With one output every mode gives ``(n1, n2)``.
        method: ``"jacobian"`` (per-example Jacobian contraction), ``"ntvp"`` (NTK-vector products),
            ``"linear"`` (structured Gram-times-Gram path for ``nn.Linear`` and
            :class:`lmech.models.mlp.DenseLayer`, Jacobian for the rest) or
            ``"auto"`` (= ``"linear"``).
        chunk_size: at most this many examples per block of the :math:`n_1 \times n_2` grid
            (``None``: one block).

    Returns:
        The kernel in the dtype and device of the model's parameters.
    """
    params = _named_trainable(model)
    _check_choice("mode", mode, MODES)
    _check_choice("method", method, METHODS)
    _check_chunk(chunk_size)
    like = next(iter(params.values()))
    src1, src2 = _sources(x1, x2, chunk_size, like.device)
    check_examples_independent(model, "the empirical NTK")
    with measuring(model), _deterministic(model):
        o = _output_dim(model, src1.first()[0])
        if method == "jacobian":
            features: Callable[[Tensor], Any] = lambda x: _per_example_jacobians(model, params, x)  # noqa: E731
            K = _assemble(src1, src2, o, mode, features, _contract_jacobians, like)
        elif method == "ntvp":
            K = _assemble(src1, src2, o, mode, lambda x: x, lambda a, b, m: _ntvp_block(model, a, b, o, m), like)
        else:
            lin = _LinearFeatures(model, params, o)
            K = _assemble(src1, src2, o, mode, lin, lin.contract, like)
    if o == 1 and mode != "trace":
        K = K.reshape(K.shape[0], K.shape[1])
    return K


# --------------------------------------------------------------------------------------------------
# the linearized model
# --------------------------------------------------------------------------------------------------


class LinearizedModel:
    r"""The first-order Taylor expansion of a model around saved parameters :math:`\theta_0`.

    .. math::
        f_{\rm lin}(x;\theta) = f(x;\theta_0) + J(x;\theta_0)\,(\theta - \theta_0),

    Lee et al. 2019 (arXiv 1902.06720), their linearized network :math:`f^{\rm lin}`, computed with one
    forward-mode product ``torch.func.jvp`` (no Jacobian is formed). Under gradient flow on a
    squared loss this model follows the eNTK dynamics exactly.

    ``LinearizedModel(model)`` saves a copy of the model's trainable parameters as :math:`\theta_0`;
    ``lin(x, params)`` evaluates the linearization at ``params`` (a mapping name -> tensor covering
    the trainable parameters; missing names are taken at :math:`\theta_0`), and ``lin(x)`` at the
    model's *current* parameters. The output is differentiable with respect to ``params``, so the
    linearized model can itself be trained. The model is evaluated in eval mode (its modes restored),
    so the linearization is that of the deterministic network.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.params0 = {k: v.clone() for k, v in _named_trainable(model).items()}

    def __call__(self, x: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        if params is None:
            named = dict(self.model.named_parameters())
            params = {k: named[k] for k in self.params0}
        unknown = sorted(set(params) - set(self.params0))
        if unknown:
            raise BadInput("params", unknown, f"names of trainable parameters, among {sorted(self.params0)}")
        for k, v in params.items():
            if not isinstance(v, Tensor) or v.shape != self.params0[k].shape:
                raise BadInput(
                    f"params[{k!r}]",
                    getattr(v, "shape", v),
                    f"a tensor of shape {tuple(self.params0[k].shape)}",
                )
        delta = {
            k: (params[k] - p0 if k in params else torch.zeros_like(p0)) for k, p0 in self.params0.items()
        }
        with measuring(self.model), _deterministic(self.model):
            f0, jdelta = jvp(lambda p: functional_call(self.model, p, (x,)), (self.params0,), (delta,))
        return f0 + jdelta


# --------------------------------------------------------------------------------------------------
# kernel movement and alignment
# --------------------------------------------------------------------------------------------------


def _as_kernel(name: str, K: Any) -> Tensor:
    if not isinstance(K, Tensor):
        try:
            K = torch.as_tensor(K)
        except (TypeError, ValueError, RuntimeError):
            raise BadInput(name, type(K).__name__, "a tensor or array") from None
    if K.numel() == 0:
        raise BadInput(name, tuple(K.shape), "a non-empty kernel")
    return K.to(torch.float64)


def kernel_distance(K1: Tensor, K2: Tensor) -> float:
    r"""Kernel distance :math:`S(K_1, K_2) = 1 - \langle K_1, K_2\rangle_F / (\|K_1\|_F \|K_2\|_F)`.

    Fort et al. 2020, "Deep learning versus kernel learning" (arXiv 2010.15110), the kernel distance
    used to track how far the eNTK has moved. It is 0 for proportional kernels, invariant to scaling
    either kernel, and at most 2. Any shapes work as long as they match (the kernels are flattened).
    """
    K1, K2 = _as_kernel("K1", K1), _as_kernel("K2", K2)
    if K1.shape != K2.shape:
        raise BadInput("K2", tuple(K2.shape), f"the shape of K1, {tuple(K1.shape)}")
    norms = torch.linalg.vector_norm(K1) * torch.linalg.vector_norm(K2)
    if norms == 0:
        raise BadInput("K1", "a zero kernel", "kernels with non-zero Frobenius norm")
    return float(1.0 - (K1 * K2).sum() / norms)


def kernel_velocity(kernels: Sequence[Tensor], times: Sequence[float]) -> Tensor:
    r"""Kernel velocity :math:`v_k = S(K_{t_k}, K_{t_{k+1}}) / (t_{k+1} - t_k)` between successive kernels.

    Fort et al. 2020 (arXiv 2010.15110): the kernel distance per unit time (steps, or ``step * lr``
    for gradient-flow time). Returns a float64 tensor of length ``len(kernels) - 1``.
    """
    if len(kernels) < 2:
        raise BadInput("kernels", f"{len(kernels)} kernel(s)", "at least two kernels")
    if len(times) != len(kernels):
        raise BadInput("times", f"{len(times)} times", f"one time per kernel ({len(kernels)})")
    t = torch.as_tensor(list(times), dtype=torch.float64)
    dt = t[1:] - t[:-1]
    if not bool((dt > 0).all()):
        raise BadInput("times", list(times), "strictly increasing times")
    dist = torch.tensor(
        [kernel_distance(a, b) for a, b in zip(kernels[:-1], kernels[1:])], dtype=torch.float64
    )
    return dist / dt


def kernel_target_alignment(K: Tensor, y: Tensor, *, centered: bool = False) -> float:
    r"""Kernel-target alignment :math:`A(K, yy^\top) = \langle K, yy^\top\rangle_F / (\|K\|_F \|yy^\top\|_F)`.

    Cristianini et al. 2002, "On kernel-target alignment" (NeurIPS 14), Definition 1, with
    :math:`yy^\top` replaced by :math:`YY^\top` for targets ``Y`` of shape ``(n, c)``. With
    ``centered=True`` both matrices are first centred, :math:`K \to HKH`, :math:`YY^\top \to HYY^\top H`,
    :math:`H = I - \frac{1}{n}\mathbf{1}\mathbf{1}^\top` (Cortes, Mohri & Rostamizadeh 2012, JMLR 13,
    Definition 3). ``K`` must be an ``(n, n)`` kernel (use ``mode="trace"`` for a multi-output eNTK).
    """
    K = _as_kernel("K", K)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise BadInput("K", tuple(K.shape), "a square (n, n) kernel")
    Y = _as_kernel("y", y)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != K.shape[0]:
        raise BadInput("y", tuple(Y.shape), f"targets (n,) or (n, c) with n = {K.shape[0]}")
    T = Y @ Y.T
    if centered:
        K = K - K.mean(0, keepdim=True) - K.mean(1, keepdim=True) + K.mean()
        T = T - T.mean(0, keepdim=True) - T.mean(1, keepdim=True) + T.mean()
    norms = torch.linalg.vector_norm(K) * torch.linalg.vector_norm(T)
    if norms == 0:
        raise BadInput("K", "a zero (centred) kernel or target", "non-zero kernel and targets")
    return float((K * T).sum() / norms)
