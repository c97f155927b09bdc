r"""A tiny decoder-only transformer (GPT), in one file, in the style of nanoGPT's ``model.py``.

Token and position embeddings, ``depth`` pre-norm blocks (causal self-attention then an MLP, each a
residual branch scaled by the parametrization's branch multiplier :math:`m = (L/L_{base})^{-\alpha}`),
a final LayerNorm and an untied readout to the vocabulary:

.. math::
   x_0 = E[t] + P[i], \qquad
   x \leftarrow x + m\,\mathrm{Attn}(\mathrm{LN}(x)), \qquad
   x \leftarrow x + m\,\mathrm{MLP}(\mathrm{LN}(x)), \qquad
   \text{logits} = W_{out}\,\mathrm{LN}(x).

Attention is written out (:math:`\mathrm{softmax}(s\,QK^\top + \text{mask})V`), not a fused kernel,
so double backward (Hessian-vector products) works on every device. The logit scale is
:math:`s = 1/\sqrt{d}` (SP) or :math:`\sqrt{d_{base}}/d \propto 1/d` under μP (TP V, arXiv 2203.03466,
§4 and Appendix B: query and key become correlated during training, so their dot product grows like
d, not √d), d the head dimension. The number of heads is fixed and the head dimension grows with
``width``. Under the μP family the query projection and the readout start at zero (TP V, Appendix D.2).

Roles for :func:`lmech.param.parametrize`: embeddings are input weights, the readout is the output
weight, every other projection a hidden weight (the query and key projections marked ``query`` and
``key``), LayerNorm gains norm gains. Build with the standard init from ``seed``
(:mod:`lmech.models.init`); ``model.param_groups(lr, optimizer)`` gives the optimizer groups.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmech.errors import BadInput
from lmech.models.base_shapes import self_parametrize
from lmech.models.init import standard_init_
from lmech.param import ParamTable, get_preset

__all__ = ["TransformerConfig", "TinyTransformer"]


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes and parametrization of a :class:`TinyTransformer`."""

    vocab_size: int = 256  # byte-level tokens
    block_size: int = 64  # longest context
    width: int = 64  # model dimension (n_embd)
    depth: int = 2  # number of blocks (n_layer)
    n_head: int = 4
    mlp_ratio: int = 4
    bias: bool = False  # biases in the linear layers
    parametrization: str = "sp"
    base_width: int | None = None  # None: width (the model is its own base)
    base_depth: int | None = None  # None: depth

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "width", "depth", "n_head", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BadInput(name, value, "a positive integer")
        if self.width % self.n_head:
            raise BadInput("width", self.width, f"a multiple of n_head = {self.n_head}")
        base = self.width if self.base_width is None else self.base_width
        if isinstance(base, bool) or not isinstance(base, int) or base < 1 or base % self.n_head:
            raise BadInput("base_width", self.base_width, f"a positive multiple of n_head = {self.n_head}")
        if self.base_depth is not None and (not isinstance(self.base_depth, int) or self.base_depth < 1):
            raise BadInput("base_depth", self.base_depth, "a positive integer")
        get_preset(self.parametrization)


def _embedding(num: int, dim: int, device: str) -> nn.Embedding:
    # on the meta device, skip torch's default init (its normal_ on meta imports torch._dynamo: slow)
    weight = torch.empty(num, dim, device=device) if device == "meta" else None
    return nn.Embedding(num, dim, device=device, _weight=weight)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig, scale: float, device):
        super().__init__()
        n = config.width
        self.n_head, self.scale = config.n_head, scale
        self.query = nn.Linear(n, n, bias=config.bias, device=device)
        self.key = nn.Linear(n, n, bias=config.bias, device=device)
        self.value = nn.Linear(n, n, bias=config.bias, device=device)
        self.proj = nn.Linear(n, n, bias=config.bias, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        heads = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # noqa: E731 (B, h, T, d)
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        att = (q @ k.transpose(-2, -1)) * self.scale
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, config: TransformerConfig, device):
        super().__init__()
        self.fc = nn.Linear(config.width, config.mlp_ratio * config.width, bias=config.bias, device=device)
        self.proj = nn.Linear(config.mlp_ratio * config.width, config.width, bias=config.bias, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig, scale: float, device):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, bias=config.bias, device=device)
        self.attn = CausalSelfAttention(config, scale, device)
        self.ln_2 = nn.LayerNorm(config.width, bias=config.bias, device=device)
        self.mlp = MLP(config, device)
        self.branch_multiplier = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x + m·branch in one pass (the multiplier folded into the residual addition)
        x = torch.add(x, self.attn(self.ln_1(x)), alpha=self.branch_multiplier)
        x = torch.add(x, self.mlp(self.ln_2(x)), alpha=self.branch_multiplier)
        return x


class TinyTransformer(nn.Module):
    """GPT of the module docstring: ``TinyTransformer(config)`` or ``TinyTransformer(width=..., depth=...)``."""

    def __init__(self, config: TransformerConfig | None = None, *, seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", **overrides):
        super().__init__()
        config = dataclasses.replace(config or TransformerConfig(), **overrides)
        self.config = config
        preset = get_preset(config.parametrization)
        base_width = config.width if config.base_width is None else config.base_width
        base_depth = config.depth if config.base_depth is None else config.base_depth
        scale = preset.attention_scale(config.width // config.n_head, base_width // config.n_head)
        build_device = "meta"
        self.wte = _embedding(config.vocab_size, config.width, build_device)
        self.wpe = _embedding(config.block_size, config.width, build_device)
        self.blocks = nn.ModuleList(Block(config, scale, build_device) for _ in range(config.depth))
        self.ln_f = nn.LayerNorm(config.width, bias=config.bias, device=build_device)
        self.lm_head = nn.Linear(config.width, config.vocab_size, bias=False, device=build_device)
        self.param_table: ParamTable | None = None
        if str(device) == "meta":
            return

        def build(width: int, dev: str) -> nn.Module:
            return TinyTransformer(config, width=width, parametrization="sp", base_width=None, device=dev)

        self.to_empty(device="cpu").to(dtype)  # built on meta: skip torch's default init, draw ours once
        standard_init_(self, torch.Generator().manual_seed(int(seed)))
        branches = [f"blocks.{i}.{part}" for i in range(config.depth) for part in ("attn", "mlp", "ln_1", "ln_2")]
        p = self_parametrize(self, build, config.parametrization, base_width, config.depth / base_depth,
                             branches=branches, roles={"blocks.*.attn.query.*": "query", "blocks.*.attn.key.*": "key"})
        if preset.zero_query_readout:
            with torch.no_grad():
                for block in self.blocks:
                    block.attn.query.weight.zero_()
                self.lm_head.weight.zero_()
        self.param_table = p.table
        for block in self.blocks:
            block.branch_multiplier = p.table.branch_multiplier
        self.to(device)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids ``idx`` (B, T), T ≤ block_size."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise BadInput("sequence length", T, f"at most block_size = {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy."""
        logits = self(idx)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))

    def param_groups(self, lr: float, optimizer: str = "adam", weight_decay: float = 0.0,
                     eps: float | None = 1e-8) -> list[dict]:
        """Optimizer groups with this model's parametrization scales (:meth:`ParamTable.param_groups`)."""
        return self.param_table.param_groups(self, lr, optimizer, weight_decay, eps)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
