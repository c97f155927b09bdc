r"""A tiny vision transformer for small images (8×8 scikit-learn digits), in one file.

The image is cut into non-overlapping ``patch``×``patch`` patches (an 8×8 digit with ``patch=2``: 16
tokens of 4 pixels), each linearly embedded, plus a learned position embedding; ``depth`` pre-norm
blocks of bidirectional self-attention and an MLP, each a residual branch; a final LayerNorm, the mean
over tokens and a linear readout to the classes (Dosovitskiy et al. 2021, arXiv 2010.11929, with
mean pooling in place of a class token):

.. math::
   x_0 = E\,\mathrm{patches}(x) + P, \qquad
   x \leftarrow x + \mathrm{Attn}(\mathrm{LN}(x)), \qquad
   x \leftarrow x + \mathrm{MLP}(\mathrm{LN}(x)), \qquad
   f(x) = W_{out}\,\overline{\mathrm{LN}(x)}.

Attention is written out, :math:`\mathrm{softmax}(QK^\top/\sqrt d)V` (no fused kernel), so double
backward works on every device. ``pool`` (an ``nn.Identity``) outputs the pooled representation, the
readout's input: the penultimate layer of the representation-convergence law. Built with the standard
init (:mod:`lmech.models.init`) from ``seed``; in SP only (the model is its own base).
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from lmech.errors import BadInput
from lmech.models.init import standard_init_

__all__ = ["PatchTransformer"]


class Attention(nn.Module):
    """Bidirectional multi-head self-attention over the patch tokens."""

    def __init__(self, width: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * (C // self.n_head) ** -0.5
        return self.proj((att.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, width: int, n_head: int, mlp_ratio: int):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(width), Attention(width, n_head)
        self.ln_2 = nn.LayerNorm(width)
        self.fc, self.proj = nn.Linear(width, mlp_ratio * width), nn.Linear(mlp_ratio * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class PatchTransformer(nn.Module):
    """The transformer of the module docstring; inputs (B, 64), (B, 8, 8) or (B, C, H, W)."""

    def __init__(self, *, width: int = 32, depth: int = 2, n_head: int = 2, patch: int = 2, image_size: int = 8,
                 in_channels: int = 1, num_classes: int = 10, mlp_ratio: int = 2, seed: int = 0,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        for name, value in (("width", width), ("depth", depth), ("n_head", n_head), ("patch", patch),
                            ("image_size", image_size), ("in_channels", in_channels), ("num_classes", num_classes),
                            ("mlp_ratio", mlp_ratio)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise BadInput(name, value, "a positive integer")
        if width % n_head:
            raise BadInput("width", width, f"a multiple of n_head = {n_head}")
        if image_size % patch:
            raise BadInput("patch", patch, f"a divisor of image_size = {image_size}")
        self.in_channels, self.image_size, self.patch = in_channels, image_size, patch
        self.tokens = (image_size // patch) ** 2
        self.embed = nn.Linear(in_channels * patch * patch, width)
        self.position = nn.Embedding(self.tokens, width)
        self.blocks = nn.ModuleList(Block(width, n_head, mlp_ratio) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.pool = nn.Identity()
        self.readout = nn.Linear(width, num_classes)
        standard_init_(self, torch.Generator().manual_seed(int(seed)))
        with torch.no_grad():  # position embeddings start small against the patch embeddings (ViT: std 0.02)
            self.position.weight.mul_(0.02)
        self.to(dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, p, s = x.shape[0], self.patch, self.image_size
        x = x.reshape(B, self.in_channels, s // p, p, s // p, p).permute(0, 2, 4, 1, 3, 5)
        h = self.embed(x.reshape(B, self.tokens, -1)) + self.position.weight
        for block in self.blocks:
            h = block(h)
        return self.readout(self.pool(self.ln_f(h).mean(dim=1)))
