"""bmm_views: a bmm between views of rank-4 tensors (aot_autograd's matmul) becomes matmul."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower

aten = torch.ops.aten


class Scores(nn.Module):
    """Attention scores written the way aot_autograd decomposes ``q @ k.transpose(-2, -1)``:
    both operands flattened to 3-D (the transposed one through a copy), bmm, viewed back."""

    def __init__(self, heads: int = 3, dim: int = 4) -> None:
        super().__init__()
        self.heads, self.dim = heads, dim
        self.proj = nn.Linear(heads * dim, 2 * heads * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k = self.proj(x).view(b, s, 2, self.heads, self.dim).permute(2, 0, 3, 1, 4).unbind(0)
        kt = k.transpose(-2, -1).contiguous()  # [B, H, D, S]
        scores = torch.bmm(q.reshape(b * self.heads, s, self.dim), kt.view(-1, self.dim, s))
        return scores.view(b, self.heads, s, s).softmax(-1)


def test_bmm_views_fires_and_drops_the_views_between_transpose_and_matmul() -> None:
    model, make = Scores(), randn(5, 12)
    before, after, stats = optimize(model, make, ["noops", "bmm_views"])
    assert stats["bmm_views"] == {"rewritten": 1}
    targets = call_targets(after)
    assert aten.bmm.default not in targets and targets.count(aten.matmul.default) == 1
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)
    reshapes = [n.op_type for n in lower(after).graph.node].count("Reshape")
    assert reshapes <= [n.op_type for n in lower(before).graph.node].count("Reshape") - 2


class Flat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, x.transpose(1, 2))


class Mixed(nn.Module):
    """One operand a view of [B, 2, S, S], the other 3-D from the start: batch dims differ."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        four = torch.stack([x, x.relu()], dim=1)  # [B, 2, S, S]
        other = torch.cat([x, x.sigmoid()], dim=0)  # [2B, S, S]
        return torch.bmm(four.view(2 * b, s, s), other)


def test_bmm_views_holds_back_without_views_or_on_other_batch_dims() -> None:
    for model, reason in ((Flat(), "miss:not_views"), (Mixed(), "miss:batch_mismatch")):
        make = randn(4, 4)
        _, after, stats = optimize(model, make, ["noops", "bmm_views"])
        assert stats["bmm_views"] == {reason: 1}, type(model).__name__
        assert aten.bmm.default in call_targets(after)
        assert_outputs_match(model, after, make)


class Kept(nn.Module):
    """The bmm's 3-D value is also an output: it stays, as a flatten of the matmul."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, _ = x.shape
        four = x.view(b, s, 2, 2).permute(0, 2, 1, 3)  # [B, 2, S, 2]
        flat = torch.bmm(four.reshape(2 * b, s, 2), four.transpose(-2, -1).reshape(2 * b, 2, s))
        return flat, flat.view(b, 2, s, s).sum(1)


def test_bmm_views_keeps_a_3d_reader_of_the_product() -> None:
    model, make = Kept(), randn(3, 4)
    _, after, stats = optimize(model, make, ["noops", "bmm_views"])
    assert stats["bmm_views"] == {"rewritten": 1}
    assert aten.flatten.using_ints in call_targets(after)
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make, params=False)
