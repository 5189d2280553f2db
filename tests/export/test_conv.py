"""Convolutions on unbatched (C, *spatial) inputs, against eager."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

UNBATCHED: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), (3, 9)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3, stride=2), (3, 8, 8)),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2), (2, 4, 5, 4)),
    "conv_transpose1d": (lambda: nn.ConvTranspose1d(3, 4, 3, stride=2), (3, 6)),
    "conv_transpose2d": (
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        (4, 5, 6),
    ),
    "conv_transpose3d": (lambda: nn.ConvTranspose3d(2, 3, 2, stride=2), (2, 3, 4, 3)),
}


@pytest.mark.parametrize("name", list(UNBATCHED))
def test_unbatched_conv_matches_eager(name: str, onnx_matches: Callable) -> None:
    factory, shape = UNBATCHED[name]
    torch.manual_seed(0)
    layer = factory()

    def make_inputs(_: int) -> tuple:
        return (torch.randn(*shape, generator=torch.Generator().manual_seed(1)),)

    onnx_matches(layer, make_inputs, dynamic=False)


# torch allows output_padding up to max(stride, dilation) - 1; onnxruntime refuses it past stride
WIDE_OUTPUT_PADDING = {
    "2d_groups": (
        F.conv_transpose2d,
        (2, 2, 4, 4),
        (2, 2, 4, 5),
        dict(stride=(3, 2), padding=(1, 2), output_padding=(2, 3), groups=2, dilation=(4, 4)),
    ),
    "3d": (
        F.conv_transpose3d,
        (2, 2, 4, 4, 4),
        (2, 2, 4, 5, 6),
        dict(stride=(3, 2, 1), padding=(1, 2, 3), output_padding=(2, 3, 1), dilation=4),
    ),
    "1d_past_padding": (
        F.conv_transpose1d,
        (2, 3, 7),
        (3, 4, 3),
        dict(output_padding=1, dilation=2),
    ),
    "1d_within_padding": (
        F.conv_transpose1d,
        (2, 3, 7),
        (3, 4, 3),
        dict(padding=3, output_padding=2, dilation=3),
    ),
}


@pytest.mark.parametrize("name", list(WIDE_OUTPUT_PADDING))
def test_conv_transpose_output_padding_past_stride(name: str, onnx_matches: Callable) -> None:
    fn, xs, ws, kw = WIDE_OUTPUT_PADDING[name]
    g = torch.Generator().manual_seed(0)
    w = torch.randn(*ws, generator=g)
    b = torch.randn(ws[1] * kw.get("groups", 1), generator=g)

    class Layer(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return fn(x, w, b, **kw)

    onnx_matches(Layer(), lambda n: (torch.randn(n, *xs[1:], generator=g),))


def test_conv_transpose_output_padding_past_stride_and_dilation_is_refused() -> None:
    """torch refuses it when it runs; tracing on fake tensors does not check, lowering does."""
    import fxonnx
    from fxonnx._errors import ExportError

    w = torch.randn(3, 4, 3)

    class Layer(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.conv_transpose1d(x, w, stride=2, output_padding=2)

    with pytest.raises(RuntimeError, match="output padding must be smaller"):
        Layer()(torch.randn(1, 3, 5))
    with pytest.raises(ExportError, match=r"output_padding \[2\] must be smaller than either"):
        fxonnx.export(Layer(), (torch.randn(1, 3, 5),))
