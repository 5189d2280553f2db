"""dce: unused nodes and unused parameters go; side-effect-free graphs only shrink."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, optimize, randn
from torch import nn

from fxonnx.export import lower


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 3)
        self.unused = nn.Linear(4, 3)
        self.register_buffer("stale", torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_dce_fires_on_unused_parameters_and_buffers() -> None:
    model, make = Unused(), randn(4)
    before, after, stats = optimize(model, make, ["dce"])
    assert stats["dce"]["removed_state"] == 3
    assert {s.name for s in after.state_inputs} == {"used.weight", "used.bias"}
    assert set(after.state) == {"used.weight", "used.bias"}
    assert len(lower(after).graph.initializer) == 2
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


class AllUsed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).relu()


def test_dce_holds_back_when_everything_is_used() -> None:
    _, after, stats = optimize(AllUsed(), randn(4), ["dce"])
    assert stats["dce"] == {"removed_nodes": 0, "removed_state": 0}


def test_dce_removes_dead_nodes_left_by_another_pass() -> None:
    model, make = AllUsed(), randn(4)
    before, _, _ = optimize(model, make, [])
    gm = before.gm
    x = next(n for n in gm.graph.nodes if n.name == "x")
    with gm.graph.inserting_after(x):
        gm.graph.call_function(torch.ops.aten.neg.default, (x,)).meta["val"] = x.meta["val"]
    from fxonnx.passes import PassContext, get_pass

    result = get_pass("dce").apply(PassContext(before))
    assert result.modified and result.stats["removed_nodes"] == 1
