"""const_fold: subgraphs of parameters/buffers/constants become constants, within a size limit."""

from __future__ import annotations

import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower

aten = torch.ops.aten


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))
        self.register_buffer("scale", torch.rand(4) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.w * self.scale.unsqueeze(1)).t()
        return x @ w


def test_const_fold_fires_and_keeps_input_gradients() -> None:
    model, make = Scaled(), randn(4)
    before, after, stats = optimize(model, make, ["const_fold", "dce"])
    assert stats["const_fold"]["folded"] == 1
    assert call_targets(after) == [aten.matmul.default]
    assert [s.kind for s in after.state_inputs] == ["constant"]
    assert len(lower(after).graph.node) < len(lower(before).graph.node)
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make, params=False)


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(100))
        self.b = nn.Parameter(torch.randn(100))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ torch.outer(self.a, self.b)  # 10,000 elements from 200


def test_const_fold_holds_back_when_the_result_outgrows_limit_and_inputs() -> None:
    model, make = Outer(), randn(100)
    _, after, stats = optimize(model, make, [FoldSmall()])
    assert stats["const_fold"] == {"miss:too_large": 1}
    assert_outputs_match(model, after, make)
    _, _, stats = optimize(model, make, ["const_fold"])  # default limit 4096 < 10,000
    assert stats["const_fold"] == {"miss:too_large": 1}


def FoldSmall():  # noqa: N802 - reads like the pass
    from fxonnx.passes.const_fold import FoldConstants

    return FoldConstants(limit=16)


class Sized(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.w.new_zeros(self.w.shape[0]) + torch.rand_like(self.w)


def test_const_fold_never_folds_random_ops() -> None:
    make = randn(3)
    _, after, stats = optimize(Sized(), make, ["const_fold"], verify_each=False)
    assert stats["const_fold"].get("miss:nondeterministic") == 1
    assert aten.rand_like.default in call_targets(after)


class NoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3))

    def forward(self) -> torch.Tensor:
        return (self.w * 2).exp()


def test_const_fold_on_a_model_without_inputs() -> None:
    from fxonnx.capture import capture
    from fxonnx.passes import run_passes

    model = NoInputs()
    captured = capture(model, ())
    after, stats = run_passes(captured, ["const_fold", "dce"])
    assert stats[0]["stats"] == {"folded": 1}
    assert [s.kind for s in after.inputs] == ["constant"]
    assert torch.equal(after.run_torch()[0], model())
    assert len(lower(after).graph.node) == 1  # the output Identity of an initializer
