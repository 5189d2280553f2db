"""views: chains of view-like ops become one reshape (with -1 for the dynamic batch)."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower

aten = torch.ops.aten


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x).view(x.shape[0], 3, 4).unsqueeze(1).flatten(2).squeeze(1)
        return h.reshape(-1, 2, 6)


def test_views_fire_and_export_smaller() -> None:
    model, make = Chain(), randn(12)
    before, after, stats = optimize(model, make, ["views", "dce"])
    assert stats["views"]["collapsed"] == 4
    views = [t for t in call_targets(after) if t != aten.linear.default]
    assert views == [aten.reshape.default]
    assert len(lower(after).graph.node) < len(lower(before).graph.node)
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


class Shared(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.view(x.shape[0], 3, 4)
        return h.flatten(1), h * 2


class TwoDynamic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1).view(x.shape[0], 2, 6).unflatten(0, (x.shape[0], 1)).flatten(0, 1)


def test_views_hold_back() -> None:
    _, after, stats = optimize(Shared(), randn(12), ["views"])
    assert stats["views"] == {"miss:inner_has_other_users": 1, "made_static": 1}
    assert_outputs_match(Shared(), after, randn(12))


class Empty(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], 0, 3).view(x.shape[0], 3, 0)


def test_views_hold_back_on_zero_sized() -> None:
    make = randn(0)
    _, after, stats = optimize(Empty(), make, ["views"])
    assert stats["views"] == {"miss:zero_sized": 2}  # as a chain and as a single view
    assert_outputs_match(Empty(), after, make)


class Symbolic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0] * 3, 4)


def test_views_make_batch_sized_shapes_static() -> None:
    model, make = Symbolic(), randn(3, 4)
    before, after, stats = optimize(model, make, ["views", "dce"])
    assert stats["views"] == {"made_static": 1}
    view = next(n for n in after.gm.graph.nodes if n.target == aten.view.default)
    assert view.args[1] == [-1, 4]
    ops = [n.op_type for n in lower(after).graph.node]
    # the lowering alone writes this reshape as [-1, 4] too; the pass makes the graph say so
    assert ops == ["Reshape"] and len(ops) <= len(lower(before).graph.node)
    assert_outputs_match(model, after, make)


class Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x @ x.t()  # (batch, batch)
        return s.view(s.shape[0], s.shape[1], 1).flatten(1)


def test_views_hold_back_on_several_dynamic_dims() -> None:
    model, make = Square(), randn(4)
    _, after, stats = optimize(model, make, ["views"])
    assert stats["views"] == {"miss:several_dynamic_dims": 1}
    assert_outputs_match(model, after, make)
