"""The patch transformer for 8×8 digits (lmech.models.patch_transformer): its forward pass against the
equations written out by hand, input shapes, bad arguments, seeding, and that it learns digits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmech.errors import BadInput
from lmech.instruments.features import capture_activations
from lmech.models.patch_transformer import PatchTransformer


def _by_hand(model: PatchTransformer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The module docstring's equations, computed independently: patches cut by loops, attention per head."""
    B, s, p = x.shape[0], model.image_size, model.patch
    img = x.reshape(B, s, s)
    patches = torch.stack([img[:, r:r + p, c:c + p].reshape(B, -1)
                           for r in range(0, s, p) for c in range(0, s, p)], dim=1)
    h = patches @ model.embed.weight.T + model.embed.bias + model.position.weight
    for blk in model.blocks:
        z = F.layer_norm(h, h.shape[-1:], blk.ln_1.weight, blk.ln_1.bias)
        q, k, v = (z @ blk.attn.qkv.weight.T).chunk(3, dim=-1)
        heads, d = blk.attn.n_head, h.shape[-1] // blk.attn.n_head
        outs = []
        for i in range(heads):
            qi, ki, vi = (t[..., i * d:(i + 1) * d] for t in (q, k, v))
            outs.append(torch.softmax(qi @ ki.transpose(1, 2) / d**0.5, dim=-1) @ vi)
        h = h + torch.cat(outs, dim=-1) @ blk.attn.proj.weight.T
        z = F.layer_norm(h, h.shape[-1:], blk.ln_2.weight, blk.ln_2.bias)
        h = h + F.gelu(z @ blk.fc.weight.T + blk.fc.bias) @ blk.proj.weight.T + blk.proj.bias
    pooled = F.layer_norm(h, h.shape[-1:], model.ln_f.weight, model.ln_f.bias).mean(1)
    return pooled, pooled @ model.readout.weight.T + model.readout.bias


def test_forward_is_its_equations_and_pool_is_the_readout_input():
    model = PatchTransformer(width=8, depth=2, n_head=2, patch=2, seed=3, dtype=torch.float64)
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pooled, logits = _by_hand(model, x)
    torch.testing.assert_close(model(x), logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(capture_activations(model, x, ["pool"])["pool"], pooled, rtol=1e-10, atol=1e-12)
    # (B, 64), (B, 8, 8) and (B, 1, 8, 8) are the same images
    torch.testing.assert_close(model(x.reshape(5, 8, 8)), logits)
    torch.testing.assert_close(model(x.reshape(5, 1, 8, 8)), logits)


def test_seeded_and_bad_arguments_refused():
    a, b = PatchTransformer(seed=1), PatchTransformer(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.embed.weight, PatchTransformer(seed=2).embed.weight)
    for kwargs, field in (({"width": 30, "n_head": 4}, "width"), ({"patch": 3}, "patch"), ({"depth": 0}, "depth"),
                          ({"width": True}, "width")):
        with pytest.raises(BadInput, match=field):
            PatchTransformer(**kwargs)


def test_learns_digits():
    from lmech.data.digits import digits

    x, y = digits(200, one_hot=False, dtype=torch.float32)
    model = PatchTransformer(width=16, depth=1, n_head=2, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(80):
        loss = F.cross_entropy(model(x), y)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 2.0 and float(loss.detach()) < 0.5 * first
