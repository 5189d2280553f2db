"""linear_chain: linear -> linear collapses into one linear (W2 @ W1, W2 @ b1 + b2)."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower

aten = torch.ops.aten


class Three(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(10, 20)
        self.b = nn.Linear(20, 30, bias=False)
        self.c = nn.Linear(30, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.a(x)))


def test_linear_chain_fires_and_keeps_parameter_gradients() -> None:
    model, make = Three(), randn(10)
    _, after, stats = optimize(model, make, ["linear_chain"])
    assert stats["linear_chain"]["collapsed"] == 2
    assert call_targets(after).count(aten.linear.default) == 1
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


def test_linear_chain_with_const_fold_is_one_gemm_on_3d_inputs_too() -> None:
    model, make = Three(), randn(5, 10)
    _, after, _ = optimize(model, make, ["linear_chain", "const_fold", "dce"])
    assert call_targets(after) == [aten.linear.default]
    assert len(after.state_inputs) == 2
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make, params=False)
    assert [n.op_type for n in lower(after).graph.node] == ["Reshape", "Gemm", "Reshape"]


class Bottleneck(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 2)
        self.b = nn.Linear(2, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.a(x)
        return self.b(h), h


class Nonlinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x).relu())


def test_linear_chain_holds_back() -> None:
    for model, reason, width in (
        (Bottleneck(), "not_cheaper", 64),
        (Shared(), "inner_has_other_users", 4),
    ):
        _, after, stats = optimize(model, randn(width), ["linear_chain"])
        assert stats["linear_chain"] == {f"miss:{reason}": 1}
        assert_outputs_match(model, after, randn(width))
    _, _, stats = optimize(Nonlinear(), randn(4), ["linear_chain"])
    assert stats["linear_chain"] == {}
