"""noops: identity ops go; anything that changes dtype, shape or layout stays."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

aten = torch.ops.aten


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.fc(x)).clone().contiguous()
        h = (h * 1) + 0
        h = (h / 1.0 - 0).to(torch.float32)
        h = h.reshape(h.shape).expand(h.shape)
        return h.relu()


def test_noops_fire() -> None:
    model, make = Noisy(), randn(4)
    _, after, stats = optimize(model, make, ["noops", "dce"])
    assert stats["noops"]["removed"] >= 8
    assert call_targets(after) == [aten.linear.default, aten.relu.default]
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make, params=True)


class Kept(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = x.to(torch.float64)  # changes dtype
        b = x.reshape(x.shape[0], 2, 2)  # changes shape
        c = x.t().contiguous()  # a copy that changes the layout
        d = torch.arange(4).expand(x.shape[0], 4) * 1.0  # int64 * 1.0 is float
        return a, b, c.view(-1), d


def test_noops_hold_back_with_reasons() -> None:
    model, make = Kept(), randn(4)
    _, after, stats = optimize(model, make, ["noops"], batch=4)
    assert stats["noops"] == {"miss:not_contiguous": 1, "miss:changes_dtype_or_shape": 1}
    assert_outputs_match(model, after, make, batches=(4, 5))


class Train(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.dropout.default(x, 0.5, True)


def test_noops_keep_train_mode_dropout() -> None:
    _, _, stats = optimize(Train(), randn(4), ["noops"])
    assert stats["noops"] == {"miss:train_mode_dropout": 1}


class Detached(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().relu()


def test_noops_drop_detach_for_inference_only() -> None:
    """detach is an identity on values (gradients through it differ: not training-safe)."""
    model, make = Detached(), randn(4)
    _, after, stats = optimize(model, make, ["noops"])
    assert stats["noops"] == {"removed": 1}
    assert_outputs_match(model, after, make)
