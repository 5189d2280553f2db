"""scalar_fold: scalar multiplies/adds next to conv/linear go into their weights and bias."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

aten = torch.ops.aten


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = (self.fc(x * 0.5) * 3.0) / 2.0 + 1.0 - 0.25
        c = self.conv(x.view(-1, 2, 2, 1)) * 0.1
        return a, c


def test_scalar_fold_fires_and_keeps_parameter_gradients() -> None:
    model, make = Scaled(), randn(4)
    _, after, stats = optimize(model, make, ["scalar_fold"])
    assert stats["scalar_fold"] == {"folded": 6}
    scalars = [aten.mul.Tensor, aten.div.Tensor, aten.add.Tensor, aten.sub.Tensor]
    layers = [
        n for n in after.gm.graph.nodes if n.target in (aten.linear.default, aten.conv2d.default)
    ]
    assert all(
        n.args[0].op == "placeholder" or n.args[0].target == aten.view.default for n in layers
    )
    assert all(u.target not in scalars for n in layers for u in n.users)
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


class Held(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4, bias=False)
        self.shared = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.shared(x)
        return self.fc(x) + 1.0, h * 2.0, h, self.fc(x).double() * 2.0


def test_scalar_fold_holds_back() -> None:
    model, make = Held(), randn(4)
    _, after, stats = optimize(model, make, ["scalar_fold"])
    assert stats["scalar_fold"] == {
        "miss:no_bias": 1,
        "miss:layer_has_other_users": 1,
    }
    assert call_targets(after).count(aten.linear.default) == 3
    assert_outputs_match(model, after, make)
