"""linear_nd: a linear on a 3-D input that the exporter cannot make one Gemm (two dynamic
leading dims) becomes matmul with a pre-transposed weight plus bias."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower

aten = torch.ops.aten


class Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 5)
        self.b = nn.Linear(5, 4, bias=False)
        self.flat = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flat(self.b(self.a(x).relu()).mean(1))


BATCH_AND_SEQ = {0: {0: "batch", 1: "seq"}}


def test_linear_nd_fires_only_on_non_2d_inputs_and_saves_the_transposes() -> None:
    model, make = Seq(), randn(7, 6)
    before, after, stats = optimize(model, make, ["linear_nd"], dynamic_dims=BATCH_AND_SEQ)
    assert stats["linear_nd"] == {"rewritten": 2}
    assert call_targets(after).count(aten.linear.default) == 1
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)
    _, folded, _ = optimize(
        model, make, ["linear_nd", "const_fold", "dce"], dynamic_dims=BATCH_AND_SEQ
    )
    ops = [n.op_type for n in lower(folded).graph.node]
    assert "Transpose" not in ops and len(ops) == len(lower(before).graph.node) - 2
    assert_grads_match(model, folded, make, params=False)


def test_linear_nd_keeps_the_linears_the_exporter_makes_one_gemm() -> None:
    """One dynamic leading dim (the batch): Reshape, Gemm with the bias, Reshape beats MatMul
    and a separate Add, so the pass leaves those linears to the exporter."""
    model, make = Seq(), randn(7, 6)
    _, after, stats = optimize(model, make, ["linear_nd"])
    assert stats["linear_nd"] == {"kept:one_gemm": 2}
    ops = [n.op_type for n in lower(after).graph.node]
    assert ops.count("Gemm") == 3 and "MatMul" not in ops
    assert_outputs_match(model, after, make)


class Computed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.w * 2)


def test_linear_nd_holds_back_on_computed_weights() -> None:
    model, make = Computed(), randn(3, 4)
    _, after, stats = optimize(model, make, ["linear_nd"], dynamic_dims=BATCH_AND_SEQ)
    assert stats["linear_nd"] == {"miss:weight_not_state": 1}
    assert_outputs_match(model, after, make)
