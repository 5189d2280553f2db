"""qkv_heads: nn.MultiheadAttention's packed QKV split into heads with one transpose."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower
from fxonnx.passes.qkv_heads import _reshape_dims

aten = torch.ops.aten


class Attn(nn.Module):
    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(12, 3, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


def test_qkv_heads_fires_on_multihead_attention_and_saves_layout_nodes() -> None:
    for batch_first in (True, False):
        model = Attn(batch_first).eval()
        # seq-first: dim 0, the dynamic one, is the sequence here (batch 2 static)
        make = randn(5, 12) if batch_first else (lambda n: (torch.randn(n, 2, 12),))
        before, after, stats = optimize(model, make, ["qkv_heads"])
        assert stats["qkv_heads"] == {"rewritten": 1}, batch_first
        assert call_targets(after).count(aten.permute.default) >= 1
        assert_outputs_match(model, after, make)
        assert_grads_match(model, after, make)
        assert len(lower(after).graph.node) <= len(lower(before).graph.node) - 8


def _split_heads(c: torch.Tensor, s: int, b: int, h: int, dh: int, first: list[int]) -> list:
    return [c[i].reshape(first).transpose(0, 1).reshape(b, h, s, dh) for i in range(3)]


class Handmade(nn.Module):
    """torch's packed split written out, with knobs that break one precondition each."""

    def __init__(self, extra_user: bool = False, odd_view: bool = False, no_t: bool = False):
        super().__init__()
        self.proj = nn.Linear(12, 36)
        self.extra_user, self.odd_view, self.no_t = extra_user, odd_view, no_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (S, B, 12)
        s, b = x.shape[0], x.shape[1]
        y = self.proj(x)
        c = y.unflatten(-1, (3, 12)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()
        first = [s * 2, b * 3, 2] if self.odd_view else [s, b * 3, 4]
        q, k, v = _split_heads(c, s, b, 3, 4, first)
        if self.no_t:
            v = c[2].reshape(b, 3, s, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return out.sum() + c.sum() if self.extra_user else out


def test_qkv_heads_holds_back_on_each_broken_precondition() -> None:
    make = lambda n: (torch.randn(n, 2, 12),)  # noqa: E731 - (S, B, E), S dynamic
    for knob, reason in (
        ("extra_user", "not_three_selects"),
        ("no_t", "head_chain"),
        ("odd_view", "shape_mismatch"),
    ):
        model = Handmade(**{knob: True}).eval()
        _, after, stats = optimize(model, make, ["qkv_heads"])
        assert stats["qkv_heads"] == {f"miss:{reason}": 1}, knob
        assert_outputs_match(model, after, make)
    model = Handmade().eval()
    _, after, stats = optimize(model, make, ["qkv_heads"])
    assert stats["qkv_heads"] == {"rewritten": 1}
    assert_outputs_match(model, after, make)


def test_reshape_sizes_allow_one_dynamic_dim_only() -> None:
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    env = ShapeEnv()
    b = env.create_unbacked_symint()
    s = env.create_unbacked_symint()
    assert _reshape_dims((17, b, 3, 3, 64)) == [17, -1, 3, 3, 64]
    assert _reshape_dims((s, b, 3, 3, 64)) is None
