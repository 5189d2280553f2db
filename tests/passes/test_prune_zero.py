"""prune_zero: channels whose weights and bias are exactly zero are removed, bit for bit."""

from __future__ import annotations

import onnxruntime as ort
import torch
from pass_helpers import assert_grads_match, assert_outputs_match, optimize, randn
from torch import nn

from fxonnx.export import lower


def _zero_channels(layer: nn.Module, channels: list[int]) -> None:
    with torch.no_grad():
        layer.weight[channels] = 0
        if layer.bias is not None:
            layer.bias[channels] = 0


class ConvNet(nn.Module):
    def __init__(self, act: nn.Module | None = None) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.act = act or nn.ReLU()
        self.b = nn.Conv2d(8, 4, 3)
        _zero_channels(self.a, [1, 5, 6])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.act(self.a(x)))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 10)
        self.b = nn.Linear(10, 3)
        _zero_channels(self.a, [0, 9])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.nn.functional.gelu(self.a(x)))


def _bitwise_equal(before, after, make) -> None:
    """onnxruntime gives the same bits with and without the zero channels (torch's own GEMM may
    not: its blocking depends on the inner size, so the sums are ordered differently)."""
    sessions = [_session(lower(c)) for c in (before, after)]
    for batch in (2, 5):
        x = make(batch)[0].numpy()
        want, got = (s.run(None, {"x": x})[0] for s in sessions)
        assert (want == got).all()


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_prune_zero_fires_on_conv_and_linear_chains_losslessly() -> None:
    for model, make, removed, size in (
        (ConvNet(), randn(3, 6, 6), 3, (5, 3, 3, 3)),
        (MLP(), randn(6), 2, (8, 6)),
    ):
        model.eval()
        before, after, stats = optimize(model, make, ["prune_zero", "const_fold", "dce"])
        assert stats["prune_zero"] == {"layers": 1, "channels_removed": removed}
        _bitwise_equal(before, after, make)
        assert_outputs_match(model, after, make)
        shapes = sorted(tuple(t.shape) for t in after.state.values())
        assert size in shapes
        n0 = sum(t.numel() for t in before.state.values())
        assert sum(t.numel() for t in after.state.values()) < n0
        assert len(lower(after).graph.initializer) == 4
        assert_grads_match(model, after, make, params=False)


class Sigmoid(ConvNet):
    def __init__(self) -> None:
        super().__init__(nn.Sigmoid())


class WithBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 2, 1)
        _zero_channels(self.a, [2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.bn(self.a(x)).relu())


class ToFlatten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        _zero_channels(self.a, [0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x).relu().flatten(1)


def test_prune_zero_holds_back() -> None:
    for model, reason in (
        (Sigmoid(), "act_nonzero_at_zero"),
        (ConvNet(nn.Hardtanh(0.5, 2.0)), "act_nonzero_at_zero"),
        (WithBN(), "norm_between"),
        (ToFlatten(), "consumer_not_simple"),
    ):
        make = randn(3, 6, 6)
        _, after, stats = optimize(model.eval(), make, ["prune_zero"])
        assert stats["prune_zero"] == {f"miss:{reason}": 1}, reason
        assert_outputs_match(model, after, make)


class AllZero(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(3, 2)
        _zero_channels(self.a, [0, 1, 2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x).relu())


def test_prune_zero_keeps_one_channel_of_an_all_zero_layer() -> None:
    model, make = AllZero().eval(), randn(4)
    before, after, stats = optimize(model, make, ["prune_zero", "const_fold", "dce"])
    assert stats["prune_zero"] == {"layers": 1, "channels_removed": 2, "miss:all_zero": 1}
    _bitwise_equal(before, after, make)
    assert (1, 4) in {tuple(t.shape) for t in after.state.values()}


def test_the_density_memo_answers_only_for_the_same_tensor_and_version() -> None:
    from fxonnx.passes._infra import PassContext
    from fxonnx.passes.prune_zero import _dense

    w = torch.randn(4, 3)
    ctx = PassContext(captured=None)  # type: ignore[arg-type] - _dense only reads the memo
    assert _dense(ctx, w)
    assert len(ctx.memo) == 1
    assert _dense(ctx, w)  # a hit: the same tensor at the same version
    with torch.no_grad():
        w[2] = 0  # in place: a new version, so the memo must not answer
    assert not _dense(ctx, w)
    other = torch.zeros(4, 3)
    assert not _dense(ctx, other)
