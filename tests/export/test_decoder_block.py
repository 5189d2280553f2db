"""A decoder block written the way current model libraries write Llama/Mistral/Qwen-style
models: a packed-sequence causal mask from ``position_ids`` (``torch.diff(..., prepend=...)``,
``(diff != 1).cumsum(-1)`` and comparisons), RMSNorm (``nn.RMSNorm`` and the hand-written
pow/mean/rsqrt form), rotary embeddings computed from the positions, grouped-query attention
(``repeat_interleave`` or ``expand`` + ``reshape``) and a SwiGLU MLP; compiled with
``fxonnx.compile`` (verified against eager at two batch sizes) and checked here again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fxonnx

VOCAB, DIM, HEADS, KV_HEADS, FFN, SEQ = 50, 32, 4, 2, 48, 9
HEAD_DIM = DIM // HEADS


class HandRMSNorm(nn.Module):
    """The RMSNorm of model libraries: computed in float32, weight applied after the cast."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        dtype = h.dtype
        h = h.to(torch.float32)
        variance = h.pow(2).mean(-1, keepdim=True)
        return self.weight * (h * torch.rsqrt(variance + self.eps)).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0, einsum: bool = False) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.einsum = einsum

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple:
        if self.einsum:
            freqs = torch.einsum("bt,f->btf", position_ids.float(), self.inv_freq)
        else:
            inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
            freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def packed_causal_mask(
    position_ids: torch.Tensor, dtype: torch.dtype, style: str = "masked_fill"
) -> torch.Tensor:
    """Additive (B, 1, T, T) mask: causal, and no attention across packed sequences (a new
    sequence starts wherever the position does not grow by one)."""
    first = position_ids[:, :1] - 1
    starts = torch.diff(position_ids, dim=-1, prepend=first) != 1
    seq_idx = starts.cumsum(-1)
    t = position_ids.shape[-1]
    q_idx = torch.arange(t, device=position_ids.device)
    causal = q_idx[None, :] <= q_idx[:, None]  # (T, T) key <= query
    same = seq_idx[:, :, None] == seq_idx[:, None, :]
    low = torch.finfo(dtype).min
    if style == "where":
        return torch.where(causal[None] & same, 0.0, low).to(dtype)[:, None]
    if style == "triu":
        future = torch.full((t, t), low, dtype=dtype).triu(1)
        return (future[None] + torch.where(same, 0.0, low).to(dtype)).clamp(min=low)[:, None]
    mask = torch.zeros((causal[None] & same).shape, dtype=dtype)
    return mask.masked_fill(~(causal[None] & same), low)[:, None]


class Attention(nn.Module):
    def __init__(self, gqa: str, sdpa: bool) -> None:
        super().__init__()
        self.q = nn.Linear(DIM, HEADS * HEAD_DIM, bias=False)
        self.k = nn.Linear(DIM, KV_HEADS * HEAD_DIM, bias=True)
        self.v = nn.Linear(DIM, KV_HEADS * HEAD_DIM, bias=True)
        self.o = nn.Linear(HEADS * HEAD_DIM, DIM, bias=False)
        self.gqa, self.sdpa = gqa, sdpa

    def repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        n_rep = HEADS // KV_HEADS
        if self.gqa == "repeat_interleave":
            return x.repeat_interleave(n_rep, dim=1)
        b, kv, t, d = x.shape
        return x[:, :, None].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)

    def forward(
        self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        b, t, _ = h.shape
        q = self.q(h).view(b, t, -1, HEAD_DIM).transpose(1, 2)
        k = self.k(h).view(b, t, -1, HEAD_DIM).transpose(1, 2)
        v = self.v(h).view(b, t, -1, HEAD_DIM).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = self.repeat_kv(k), self.repeat_kv(v)
        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            scores = q @ k.transpose(2, 3) / HEAD_DIM**0.5 + mask
            out = torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v
        return self.o(out.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(DIM, FFN, bias=False)
        self.up = nn.Linear(DIM, FFN, bias=False)
        self.down = nn.Linear(FFN, DIM, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(h)) * self.up(h))


class TinyDecoder(nn.Module):
    """Embedding, one decoder block, final norm, LM head; returns logits (and the shifted
    next-token loss when labels are given, like a library model called with labels)."""

    def __init__(
        self,
        gqa: str = "repeat_interleave",
        sdpa: bool = False,
        hand_norm: bool = False,
        einsum: bool = False,
        mask_style: str = "masked_fill",
    ) -> None:
        super().__init__()
        norm = (lambda: HandRMSNorm(DIM)) if hand_norm else (lambda: nn.RMSNorm(DIM))
        self.embed = nn.Embedding(VOCAB, DIM)
        self.rotary = Rotary(HEAD_DIM, einsum=einsum)
        self.norm1, self.norm2, self.norm = norm(), norm(), norm()
        self.attn = Attention(gqa, sdpa)
        self.mlp = SwiGLU()
        self.head = nn.Linear(DIM, VOCAB, bias=False)
        self.mask_style = mask_style
        with torch.no_grad():
            for n in (self.norm1, self.norm2, self.norm):
                n.weight.uniform_(0.5, 1.5)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> object:
        h = self.embed(input_ids)
        cos, sin = self.rotary(h, position_ids)
        mask = packed_causal_mask(position_ids, h.dtype, self.mask_style)
        h = h + self.attn(self.norm1(h), cos, sin, mask)
        h = h + self.mlp(self.norm2(h))
        logits = self.head(self.norm(h))
        if labels is None:
            return logits
        shift_logits = logits[:, :-1].reshape(-1, VOCAB).float()
        loss = F.cross_entropy(shift_logits, labels[:, 1:].reshape(-1), ignore_index=-100)
        return loss, logits


def _inputs(b: int, labels: bool = False) -> tuple:
    g = torch.Generator().manual_seed(b)
    ids = torch.randint(0, VOCAB, (b, SEQ), generator=g)
    # row 0: one sequence; the others: packed sequences of lengths 4 + 5, 3 + 6, ...
    pos = torch.arange(SEQ).repeat(b, 1)
    for i in range(1, b):
        cut = 2 + i % (SEQ - 3)
        pos[i, cut:] = torch.arange(SEQ - cut)
    if not labels:
        return ids, pos
    lab = ids.clone()
    lab[:, -2:] = -100
    return ids, pos, lab


VARIANTS = {
    "repeat_interleave": dict(),
    "expand_reshape_sdpa": dict(gqa="expand", sdpa=True),
    "hand_rmsnorm_einsum_rotary_where_mask": dict(hand_norm=True, einsum=True, mask_style="where"),
    "triu_mask_sdpa": dict(mask_style="triu", sdpa=True),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_block_compiles_and_matches_eager(variant: str) -> None:
    torch.manual_seed(0)
    model = TinyDecoder(**VARIANTS[variant]).eval()
    inputs = _inputs(3)
    cm = fxonnx.compile(model, inputs, provider="cpu")  # verifies at batch 3 and 1
    assert cm.report.ok
    assert {n.domain for n in cm.onnx_model.graph.node} <= {"", "com.microsoft"}
    for b in (2, 5):
        x = _inputs(b)
        with torch.no_grad():
            expected = model(*x)
        torch.testing.assert_close(cm(*x), expected, rtol=1e-4, atol=1e-5)


def test_decoder_block_standard_onnx_matches_eager(onnx_matches: Callable) -> None:
    """Without compile's passes: the lowering alone, standard-domain ONNX only."""
    torch.manual_seed(0)
    model = onnx_matches(TinyDecoder(), _inputs)
    assert {n.domain for n in model.graph.node} == {""}


def test_decoder_with_labels_returns_matching_loss(onnx_matches: Callable) -> None:
    torch.manual_seed(0)
    onnx_matches(TinyDecoder(gqa="expand"), lambda b: _inputs(b, labels=True))


def test_packed_mask_really_separates_sequences() -> None:
    """The mask the block uses is not just causal (so the test above exercises diff/cumsum)."""
    _, pos = _inputs(3)
    causal_only = torch.ones(SEQ, SEQ).tril().bool()
    masks = [packed_causal_mask(pos, torch.float32, s) for s in ("masked_fill", "where", "triu")]
    for mask in masks:
        assert (mask[0, 0] == 0).equal(causal_only)
        assert not (mask[1, 0] == 0).equal(causal_only)
        assert torch.equal(mask, masks[0])
