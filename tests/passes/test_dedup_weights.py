"""dedup_weights: bit-identical state tensors become one initializer."""

from __future__ import annotations

import torch
from pass_helpers import assert_outputs_match, optimize, randn
from torch import nn

from fxonnx.export import lower


class Twins(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 8)
        with torch.no_grad():
            self.b.weight.copy_(self.a.weight)
            self.b.bias.copy_(self.a.bias)
            self.c.weight.copy_(self.a.weight + 1e-9)  # close, not equal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x).relu() + self.c(x)


def test_dedup_fires_and_holds_back_on_near_duplicates() -> None:
    model, make = Twins(), randn(8)
    before, after, stats = optimize(model, make, ["dedup_weights"])
    assert stats["dedup_weights"] == {"merged": 2, "miss:near_duplicate": 1}
    assert {s.name for s in after.state_inputs} == {"a.weight", "a.bias", "c.weight", "c.bias"}
    assert len(lower(after).graph.initializer) == 4
    assert_outputs_match(model, after, make)


class SameHead(nn.Module):
    """Weights equal in their first 64 elements (the pass's quick comparison) only."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16).to(dtype)
        self.b = nn.Linear(16, 16).to(dtype)
        self.c = nn.Linear(16, 16).to(dtype)
        with torch.no_grad():
            self.b.weight.copy_(self.a.weight)
            self.b.weight[15, 15] += 1.0  # differs past the head
            self.c.weight.copy_(self.a.weight)
            self.c.bias.copy_(self.a.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x) + self.c(x)


def test_a_shared_head_is_not_enough_and_bfloat16_twins_merge() -> None:
    for dtype in (torch.float32, torch.bfloat16):
        model = SameHead(dtype)
        _, after, stats = optimize(
            model, lambda b, dt=dtype: (torch.randn(b, 16, dtype=dt),), ["dedup_weights"]
        )
        assert stats["dedup_weights"]["merged"] == 2, dtype  # c.weight and c.bias
        assert "b.weight" in {s.name for s in after.state_inputs}
