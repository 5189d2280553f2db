"""transpose: permute/transpose pairs cancel or merge."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower

aten = torch.ops.aten


class Pairs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(x)
        a = h.transpose(1, 2).transpose(2, 1)  # cancels
        b = h.permute(2, 0, 1).permute(0, 2, 1)  # merges into one permute
        return a, b


def test_transpose_fires() -> None:
    model, make = Pairs(), randn(3, 4)
    before, after, stats = optimize(model, make, ["transpose"])
    assert stats["transpose"] == {"cancelled": 1, "merged": 1}
    assert call_targets(after) == [aten.linear.default, aten.permute.default]
    ops = [n.op_type for n in lower(before).graph.node]
    assert [n.op_type for n in lower(after).graph.node].count("Transpose") == ops.count(
        "Transpose"
    ) - 3
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


class Shared(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = x.transpose(1, 2)
        return t.permute(2, 0, 1), t + 1


def test_transpose_holds_back_when_the_first_is_shared() -> None:
    model, make = Shared(), randn(3, 4)
    _, after, stats = optimize(model, make, ["transpose"])
    assert stats["transpose"] == {"miss:inner_has_other_users": 1}
    assert_outputs_match(model, after, make)
