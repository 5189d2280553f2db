"""matmul_bias: x @ W + b with a weight and a bias vector becomes linear (Gemm on 2-D)."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower

aten = torch.ops.aten


class Manual(nn.Module):
    def __init__(self, bias_shape: tuple[int, ...] = (3,)) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3))
        self.b = nn.Parameter(torch.randn(*bias_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.w) + self.b


def test_matmul_bias_fires_and_lowers_to_gemm() -> None:
    model, make = Manual(), randn(4)
    _, after, stats = optimize(model, make, ["matmul_bias", "const_fold", "dce"])
    assert stats["matmul_bias"] == {"fused": 1}
    assert [n.op_type for n in lower(after).graph.node] == ["Gemm"]
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make, params=False)
    _, after, _ = optimize(model, make, ["matmul_bias"])
    assert aten.linear.default in call_targets(after)
    assert_grads_match(model, after, make)


class Scores(nn.Module):
    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q @ q.transpose(0, 1) + torch.ones(())


class Shared(Manual):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x @ self.w
        return h + self.b, h


def test_matmul_bias_holds_back() -> None:
    for model, reason in (
        (Manual((1, 3)), "bias_not_vector"),
        (Shared(), "matmul_has_other_users"),
    ):
        _, after, stats = optimize(model, randn(4), ["matmul_bias"])
        assert stats["matmul_bias"] == {f"miss:{reason}": 1}
        assert_outputs_match(model, after, randn(4), batches=(2,))
    _, _, stats = optimize(Scores(), randn(4), ["matmul_bias"])
    assert stats["matmul_bias"] == {"miss:weight_not_state": 1}
    _, _, stats = optimize(Manual(), randn(5, 4), ["matmul_bias"])  # 3-D: no Gemm to gain
    assert stats["matmul_bias"] == {"miss:input_not_2d": 1}
