"""fuse_gelu and fuse_attention: hand-written GELU and attention become single ATen ops."""

from __future__ import annotations

import math

import pytest
import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower
from fxonnx.passes._match import lowerable

aten = torch.ops.aten


class Gelus(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.fc(x)
        a = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
        b = h * (1 + torch.erf(h * 0.7071067811865476)) * 0.5
        c = h * ((torch.erf(h / 1.4142135623730951) + 1) * 0.5)
        d = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * torch.pow(h, 3))))
        return a, b, c, d


def test_fuse_gelu_fires_on_erf_and_tanh_forms() -> None:
    model, make = Gelus(), randn(6)
    before, after, stats = optimize(model, make, ["fuse_gelu"])
    assert stats["fuse_gelu"] == {"fused": 4}
    targets = call_targets(after)
    assert targets.count(aten.gelu.default) == 4 and aten.erf.default not in targets
    assert len(lower(after).graph.node) < len(lower(before).graph.node)
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


class NotGelu(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        e = torch.erf(x / math.sqrt(2.0))
        shared = 0.5 * x * (1.0 + e), e  # the erf is an output too
        wrong = 0.25 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))  # not 0.5
        return (*shared, wrong)


def test_fuse_gelu_holds_back() -> None:
    model, make = NotGelu(), randn(6)
    _, after, stats = optimize(model, make, ["fuse_gelu"])
    assert stats["fuse_gelu"] == {
        "miss:intermediate_has_other_users": 1,
        "miss:not_gelu": 1,
    }
    assert aten.gelu.default not in call_targets(after)
    assert_outputs_match(model, after, make)


class Attention(nn.Module):
    """Multi-head attention written out by hand on [B, H, L, E] heads."""

    def __init__(self, d: int = 8, heads: int = 2, scaled: bool = True) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.heads, self.scaled = heads, scaled

    def split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        s = q @ k.transpose(-2, -1)
        if self.scaled:
            s = s / math.sqrt(q.shape[-1])
        return torch.softmax(s, dim=-1) @ v


@pytest.mark.parametrize("scaled", [True, False])
def test_fuse_attention_fires_for_the_opset_23_attention_op(scaled: bool) -> None:
    model, make = Attention(scaled=scaled), randn(5, 8)
    assert lowerable(aten.scaled_dot_product_attention.default)
    before, after, stats = optimize(model, make, ["fuse_attention"], opset=23)
    assert stats["fuse_attention"] == {"fused": 1}
    assert aten.scaled_dot_product_attention.default in call_targets(after)
    assert len(lower(after, opset=23).graph.node) < len(lower(before, opset=23).graph.node)
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


class NotAttention(nn.Module):
    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s = q @ q.transpose(-2, -1)
        a = torch.softmax(s, dim=1) @ q  # softmax over the wrong axis
        b = torch.softmax(q @ q, dim=-1) @ q  # key not transposed
        c = torch.softmax(s * 0.5, dim=-1) @ q  # the scores are also used by a
        d = q[:, 0]
        e = torch.softmax(d @ d.transpose(-2, -1), dim=-1) @ d  # 3-D: no Attention op
        return a, b, c, e


def test_fuse_attention_holds_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fxonnx.passes.fusions.lowerable", lambda target: True)
    model, make = NotAttention(), randn(2, 4, 4)
    _, after, stats = optimize(model, make, ["fuse_attention"], opset=23)
    assert stats["fuse_attention"] == {
        "miss:softmax_not_last_dim": 1,
        "miss:no_kt": 1,
        "miss:scores_have_other_users": 1,
        "miss:rank_or_dtype": 1,
    }
    assert_outputs_match(model, after, make)
    _, _, stats = optimize(Attention(), randn(5, 8), ["fuse_attention"], opset=21)
    assert stats["fuse_attention"] == {"miss:no_attention_op": 1}
    monkeypatch.setattr("fxonnx.passes.fusions.lowerable", lambda target: False)
    _, _, stats = optimize(Attention(), randn(5, 8), ["fuse_attention"], opset=23)
    assert stats["fuse_attention"] == {"miss:no_lowering": 1}
