"""fuse_layer_norm: LayerNorm and RMSNorm written out by hand become the ATen op."""

from __future__ import annotations

import pytest
import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower
from fxonnx.passes._match import lowerable

aten = torch.ops.aten


class HandLayerNorm(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(d))
        self.b = nn.Parameter(torch.randn(d))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        a = (x - mu) / torch.sqrt(var + 1e-5) * self.w + self.b
        y = x * 2
        c = y - y.mean(-1, keepdim=True)
        b = c * torch.rsqrt((c * c).mean(-1, keepdim=True) + 1e-6)  # no affine
        return a, b


def test_fuse_layer_norm_fires() -> None:
    model, make = HandLayerNorm(), randn(5, 8)
    before, after, stats = optimize(model, make, ["cse", "fuse_layer_norm"])
    assert stats["fuse_layer_norm"] == {"layer_norm": 2}
    assert call_targets(after) == [
        aten.layer_norm.default,
        aten.mul.Tensor,
        aten.layer_norm.default,
    ]
    assert len(lower(after).graph.node) < len(lower(before).graph.node)
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


class HandRMSNorm(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w


def test_fuse_rms_norm(monkeypatch: pytest.MonkeyPatch) -> None:
    model, make = HandRMSNorm(), randn(5, 8)
    if not lowerable(aten.rms_norm.default):
        _, _, stats = optimize(model, make, ["fuse_layer_norm"])
        assert stats["fuse_layer_norm"] == {"miss:no_lowering": 1}
        monkeypatch.setattr("fxonnx.passes.norms.lowerable", lambda target: True)
    _, after, stats = optimize(model, make, ["fuse_layer_norm"])
    assert stats["fuse_layer_norm"] == {"rms_norm": 1}
    assert call_targets(after) == [aten.rms_norm.default]
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


class NotLayerNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = x.mean(1, keepdim=True)  # over a middle dim
        a = (x - mu) / torch.sqrt(((x - mu) ** 2).mean(1, keepdim=True) + 1e-5)
        m2 = x.mean(-1, keepdim=True)
        c = x - m2
        v = (c**2).mean(-1, keepdim=True)
        b = c / torch.sqrt(v + 1e-5)
        return a, b + v  # the variance is used outside the pattern


def test_fuse_layer_norm_holds_back() -> None:
    model, make = NotLayerNorm(), randn(5, 8)
    _, after, stats = optimize(model, make, ["cse", "fuse_layer_norm"])
    assert stats["fuse_layer_norm"] == {
        "miss:not_last_dims": 1,
        "miss:intermediate_has_other_users": 1,
    }
    assert aten.layer_norm.default not in call_targets(after)
    assert_outputs_match(model, after, make)


class ConvBn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def test_a_batch_norm_fold_is_not_mistaken_for_a_norm_pattern() -> None:
    """fold_bn writes w * rsqrt(running_var + eps) on the parameters; without const_fold the
    next round's fuse_layer_norm sees it (running_var is a placeholder, not a mean)."""
    model = ConvBn().eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.running_mean.normal_()
    make = randn(3, 8, 8)
    _, after, stats = optimize(model, make, ["fuse_layer_norm", "fold_bn"])
    assert stats["fold_bn"]["folded"] == 1
    assert aten.layer_norm.default not in call_targets(after)
    assert_outputs_match(model, after, make)
