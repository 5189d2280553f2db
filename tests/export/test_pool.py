"""Pooling edge cases: unbatched (C, *spatial) inputs and adaptive pools with uneven windows,
each against eager."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import fxonnx
from fxonnx._errors import ExportError
from fxonnx.capture import capture
from fxonnx.export import lower

UNBATCHED: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "avg_pool1d": (lambda: nn.AvgPool1d(3, 2, 1, ceil_mode=True), (3, 10)),
    "avg_pool2d": (lambda: nn.AvgPool2d(2), (3, 8, 8)),
    "avg_pool2d_divisor": (lambda: nn.AvgPool2d(3, 2, 1, divisor_override=4), (3, 7, 8)),
    "avg_pool3d": (lambda: nn.AvgPool3d(2), (2, 4, 4, 6)),
    "max_pool1d": (lambda: nn.MaxPool1d(2), (3, 9)),
    "max_pool2d": (lambda: nn.MaxPool2d(3, 2, 1), (3, 8, 8)),
    "max_pool2d_indices": (lambda: nn.MaxPool2d(2, return_indices=True), (3, 6, 8)),
    "max_pool3d": (lambda: nn.MaxPool3d(2), (2, 4, 4, 6)),
    "lp_pool1d": (lambda: nn.LPPool1d(2, 3), (3, 9)),
    "lp_pool2d": (lambda: nn.LPPool2d(2, 2), (3, 8, 8)),
    "adaptive_avg_pool2d": (lambda: nn.AdaptiveAvgPool2d((2, 4)), (3, 6, 8)),
    "adaptive_avg_pool2d_global": (lambda: nn.AdaptiveAvgPool2d(1), (3, 6, 8)),
    "adaptive_avg_pool2d_uneven": (lambda: nn.AdaptiveAvgPool2d(4), (3, 6, 7)),
    "adaptive_max_pool1d": (lambda: nn.AdaptiveMaxPool1d(5), (3, 10)),
    "adaptive_max_pool2d_indices": (
        lambda: nn.AdaptiveMaxPool2d(2, return_indices=True),
        (3, 6, 8),
    ),
}


@pytest.mark.parametrize("name", list(UNBATCHED))
def test_unbatched_pool_matches_eager(name: str, onnx_matches: Callable) -> None:
    factory, shape = UNBATCHED[name]
    layer = factory()

    def make_inputs(_: int) -> tuple:
        return (torch.randn(*shape, generator=torch.Generator().manual_seed(1)),)

    onnx_matches(layer, make_inputs, dynamic=False)


UNEVEN: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "avg1d": (lambda: nn.AdaptiveAvgPool1d(4), (4, 10)),
    "avg1d_upsample": (lambda: nn.AdaptiveAvgPool1d(7), (4, 5)),
    "avg2d": (lambda: nn.AdaptiveAvgPool2d(4), (4, 6, 6)),
    "avg2d_mixed": (lambda: nn.AdaptiveAvgPool2d((3, 2)), (4, 7, 6)),
    "avg2d_none": (lambda: nn.AdaptiveAvgPool2d((None, 3)), (4, 5, 7)),
    "avg3d": (lambda: nn.AdaptiveAvgPool3d((2, 3, 4)), (2, 5, 7, 6)),
    "max1d": (lambda: nn.AdaptiveMaxPool1d(4), (4, 10)),
    "max2d": (lambda: nn.AdaptiveMaxPool2d((3, 5)), (4, 7, 9)),
    "max3d": (lambda: nn.AdaptiveMaxPool3d(3), (2, 5, 4, 7)),
}


@pytest.mark.parametrize("name", list(UNEVEN))
def test_adaptive_pool_uneven_windows_match_eager(name: str, onnx_matches: Callable) -> None:
    factory, shape = UNEVEN[name]
    layer = factory()

    def make_inputs(b: int) -> tuple:
        return (torch.randn(b, *shape, generator=torch.Generator().manual_seed(b)),)

    onnx_matches(layer, make_inputs)


def test_adaptive_max_pool_uneven_indices_are_refused() -> None:
    captured = capture(
        nn.AdaptiveMaxPool2d(4, return_indices=True).eval(), (torch.randn(2, 3, 6, 7),)
    )
    with pytest.raises(ExportError, match="return_indices has uneven windows"):
        lower(captured)


class _PoolValues(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 2, return_indices=True)[0]


class _PoolBoth(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.max_pool2d(x, 2, return_indices=True)


@pytest.mark.parametrize(("model", "outputs"), [(_PoolValues(), 1), (_PoolBoth(), 2)])
def test_max_pool_writes_indices_only_when_read(model: nn.Module, outputs: int) -> None:
    """onnxruntime's MaxPool with an Indices output skips its fast kernel: unread indices
    (aot_autograd's inference graphs) are not asked for."""
    x = torch.randn(2, 3, 8, 8)
    cm = fxonnx.compile(model, (x,))
    (pool,) = [n for n in cm.onnx_model.graph.node if n.op_type == "MaxPool"]
    assert len([o for o in pool.output if o]) == outputs


INT64_POOLS = {
    "1d": (lambda: nn.MaxPool1d(3, 2, 1, return_indices=True), (2, 3, 9)),
    "2d_dilated_ceil": (
        lambda: nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True, return_indices=True),
        (2, 3, 8, 9),
    ),
    "2d_values": (lambda: nn.MaxPool2d(2), (2, 3, 6, 8)),
    "3d": (lambda: nn.MaxPool3d(2, 1, 1, return_indices=True), (1, 2, 4, 5, 3)),
    "unbatched": (lambda: nn.MaxPool2d(3, 1, 1, return_indices=True), (3, 6, 7)),
    "one_window": (lambda: nn.MaxPool2d(2, 2, return_indices=True), (2, 3, 3, 2)),
}


@pytest.mark.parametrize("name", list(INT64_POOLS))
def test_int64_max_pool_is_exact_past_two_to_the_53(name: str) -> None:
    """No float holds these values (multiples of 2**60, many ties): values and the first
    maximum's index must equal eager's, at the example batch and another."""
    import fxonnx

    factory, shape = INT64_POOLS[name]
    layer = factory()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-3, 4, shape, generator=g) * 2**60 + torch.randint(-1, 2, shape, generator=g)
    cm = fxonnx.compile(layer, (x,), provider="cpu")  # verified (integers must be equal)
    assert "MaxPool" not in {n.op_type for n in cm.onnx_model.graph.node}
    x5 = torch.randint(-3, 4, (5, *shape[1:]), generator=g) * 2**60
    for inp in (x, x5) if name != "unbatched" else (x,):
        want, got = layer(inp), cm(inp)
        for w, o in zip(
            *((t,) if isinstance(t, torch.Tensor) else t for t in (want, got)), strict=True
        ):
            assert w.dtype == o.dtype == torch.int64 and torch.equal(w, o)
