"""Convolutions: plain, grouped, dilated, transposed, 1-D to 3-D."""

from __future__ import annotations

from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers
from ._common import require_float

aten = torch.ops.aten


def _n(value: Any, n: int) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * n if len(values) == 1 else values


def emit_conv(
    ctx: LowerCtx,
    x: Value,
    w: Any,
    b: Any,
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    transposed: bool = False,
    output_padding: Any = 0,
) -> Value:
    """Conv / ConvTranspose with torch's symmetric integer padding or 'same'/'valid'; integer
    convolutions are refused (ONNX Conv takes floats)."""
    require_float(ctx, "ConvTranspose" if transposed else "Conv", ctx.dtype(w))
    n = ctx.rank(w) - 2
    attrs: dict[str, Any] = {
        "strides": _n(stride, n),
        "dilations": _n(dilation, n),
        "group": int(groups),
    }
    if isinstance(padding, str):
        if padding == "valid":
            attrs["pads"] = [0] * (2 * n)
        elif padding == "same":  # torch puts the odd pad at the end, like SAME_UPPER
            kernel = ctx.static_shape(w)[2:]
            total = [d * (k - 1) for d, k in zip(attrs["dilations"], kernel, strict=True)]
            attrs["pads"] = [t // 2 for t in total] + [t - t // 2 for t in total]
        else:
            raise ExportError(f"{ctx.node.name}: unknown padding mode {padding!r}")
    else:
        pads = _n(padding, n)
        attrs["pads"] = pads + pads
    bias = None if b is None else ctx.value(b)
    if transposed:
        attrs["output_padding"] = _n(output_padding, n)
        limits = [max(s, d) for s, d in zip(attrs["strides"], attrs["dilations"], strict=True)]
        if any(o >= m for o, m in zip(attrs["output_padding"], limits, strict=True)):
            raise ExportError(  # what torch raises when it runs (fake tensors do not check)
                f"{ctx.node.name}: output_padding {attrs['output_padding']} must be smaller than "
                f"either stride {attrs['strides']} or dilation {attrs['dilations']}, per dim"
            )
        if any(o >= s for o, s in zip(attrs["output_padding"], attrs["strides"], strict=True)):
            return _wide_output_padding(ctx, x, ctx.value(w), bias, attrs)
        return ctx.emit("ConvTranspose", x, ctx.value(w), bias, **attrs)
    return ctx.emit("Conv", x, ctx.value(w), bias, **attrs)


def _wide_output_padding(
    ctx: LowerCtx, x: Value, w: Value, bias: Value | None, attrs: dict[str, Any]
) -> Value:
    """ConvTranspose whose output_padding is not below its stride (torch allows it up to the
    dilation; onnxruntime refuses it): the full transposed convolution (no pads), zeros past
    its end where output_padding exceeds the padding, then torch's window [p, p + size) of it,
    then the bias."""
    pads, extra = attrs["pads"][: len(attrs["strides"])], attrs["output_padding"]
    n = len(pads)
    full = ctx.emit(
        "ConvTranspose",
        x,
        w,
        strides=attrs["strides"],
        dilations=attrs["dilations"],
        group=attrs["group"],
        pads=[0] * (2 * n),
    )
    grow = [max(0, o - p) for o, p in zip(extra, pads, strict=True)]
    if any(grow):
        full = ctx.emit("Pad", full, ctx.const([0] * (n + 2) + [0, 0] + grow, torch.int64))
    ends = [-(p - o) if o < p else 2**62 for o, p in zip(extra, pads, strict=True)]
    axes = list(range(2, 2 + n))
    y = ctx.emit(
        "Slice",
        full,
        ctx.const(pads, torch.int64),
        ctx.const(ends, torch.int64),
        ctx.const(axes, torch.int64),
    )
    if bias is None:
        return y
    per_channel = ctx.const(list(range(1, n + 1)), torch.int64)  # (C,) -> (C, 1, ..., 1)
    return ctx.emit("Add", y, ctx.emit("Unsqueeze", bias, per_channel))


def _batched(ctx: LowerCtx) -> tuple[Value, bool]:
    """Input 0 with a leading batch dim of 1 when it is unbatched (one dim below the weight)."""
    x = ctx.input(0)
    if ctx.rank(ctx.arg(0)) != ctx.rank(ctx.arg(1)) - 1:
        return x, False
    return ctx.emit("Unsqueeze", x, ctx.const([0], torch.int64)), True


def _unbatched(ctx: LowerCtx, y: Value, unbatched: bool) -> Value:
    return ctx.emit("Squeeze", y, ctx.const([0], torch.int64)) if unbatched else y


@lowers(
    aten.conv1d.default,
    aten.conv2d.default,
    aten.conv3d.default,
    aten.conv1d.padding,
    aten.conv2d.padding,
    aten.conv3d.padding,
)
def conv(ctx: LowerCtx) -> Value:
    """conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1,
    SymInt[2] padding=0, SymInt[2] dilation=1, SymInt groups=1) -> Tensor"""
    x, unbatched = _batched(ctx)
    y = emit_conv(
        ctx,
        x,
        ctx.arg(1),
        ctx.arg(2),
        stride=ctx.arg(3),
        padding=ctx.arg(4),
        dilation=ctx.arg(5),
        groups=ctx.arg(6),
    )
    return _unbatched(ctx, y, unbatched)


@lowers(aten.conv_transpose1d.default, aten.conv_transpose2d.input, aten.conv_transpose3d.input)
def conv_transpose(ctx: LowerCtx) -> Value:
    """conv_transpose2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1,
    SymInt[2] padding=0, SymInt[2] output_padding=0, SymInt groups=1, SymInt[2] dilation=1)"""
    x, unbatched = _batched(ctx)
    y = emit_conv(
        ctx,
        x,
        ctx.arg(1),
        ctx.arg(2),
        stride=ctx.arg(3),
        padding=ctx.arg(4),
        output_padding=ctx.arg(5),
        groups=ctx.arg(6),
        dilation=ctx.arg(7),
        transposed=True,
    )
    return _unbatched(ctx, y, unbatched)


@lowers(aten.convolution.default, aten._convolution.default)
def convolution(ctx: LowerCtx) -> Value:
    """convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding,
    SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups) -> Tensor"""
    return emit_conv(
        ctx,
        ctx.input(0),
        ctx.arg(1),
        ctx.arg(2),
        stride=ctx.arg(3),
        padding=ctx.arg(4),
        dilation=ctx.arg(5),
        transposed=bool(ctx.arg(6)),
        output_padding=ctx.arg(7),
        groups=ctx.arg(8),
    )
