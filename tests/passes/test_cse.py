"""cse: equal deterministic calls on equal arguments are computed once."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

aten = torch.ops.aten


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).relu() + self.fc(x).relu() + (x * 2.0) * (x * 2)


def test_cse_fires() -> None:
    model, make = Twice(), randn(4)
    _, after, stats = optimize(model, make, ["cse"])
    assert stats["cse"] == {"merged": 2}  # x*2.0 and x*2 differ in the scalar's type: kept
    assert call_targets(after).count(aten.linear.default) == 1
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


class Noise(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand_like(x) - torch.rand_like(x)


def test_cse_holds_back_on_random_ops() -> None:
    _, after, stats = optimize(Noise(), randn(4), ["cse"], verify_each=False)
    assert stats["cse"] == {"miss:nondeterministic": 2}
    assert call_targets(after).count(aten.rand_like.default) == 2
