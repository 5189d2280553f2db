"""Pooling: max, average, adaptive (where the output divides the input evenly)."""

from __future__ import annotations

from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten


def _n(value: Any, n: int) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * n if len(values) == 1 else values


def _pool_attrs(ctx: LowerCtx, n: int, kernel: Any, stride: Any, padding: Any, ceil: bool) -> dict:
    kernel = _n(kernel, n)
    stride = _n(stride, n) if stride not in (None, []) else kernel
    pads = _n(padding, n)
    return {"kernel_shape": kernel, "strides": stride, "pads": pads + pads, "ceil_mode": int(ceil)}


@lowers(aten.max_pool1d.default, aten.max_pool2d.default, aten.max_pool3d.default)
def max_pool(ctx: LowerCtx) -> Value:
    """max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
    int[2] dilation=1, bool ceil_mode=False) -> Tensor"""
    n = int(str(ctx.node.target).split("max_pool")[1][0])
    attrs = _pool_attrs(ctx, n, ctx.arg(1), ctx.arg(2), ctx.arg(3), bool(ctx.arg(5)))
    attrs["dilations"] = _n(ctx.arg(4), n)
    return ctx.emit("MaxPool", ctx.input(0), **attrs)


@lowers(aten.max_pool2d_with_indices.default)
def max_pool_with_indices(ctx: LowerCtx) -> list[Value]:
    """max_pool2d_with_indices(...) -> (Tensor, Tensor); ONNX indices are flattened over the whole
    tensor while torch's are per plane, so only the values are exported."""
    attrs = _pool_attrs(ctx, 2, ctx.arg(1), ctx.arg(2), ctx.arg(3), bool(ctx.arg(5)))
    attrs["dilations"] = _n(ctx.arg(4), 2)
    return [ctx.emit("MaxPool", ctx.input(0), **attrs), _no_indices(ctx)]


def _no_indices(ctx: LowerCtx) -> Value:
    users = [u for u in ctx.node.users if u.args[1] != 0]
    if users:
        raise ExportError(f"{ctx.node.name}: max-pool indices are not supported")
    return ctx.const(torch.zeros(0, dtype=torch.int64))


@lowers(aten.avg_pool1d.default, aten.avg_pool2d.default, aten.avg_pool3d.default)
def avg_pool(ctx: LowerCtx) -> Value:
    """avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
    bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None) -> Tensor"""
    n = int(str(ctx.node.target).split("avg_pool")[1][0])
    attrs = _pool_attrs(ctx, n, ctx.arg(1), ctx.arg(2), ctx.arg(3), bool(ctx.arg(4)))
    count_include_pad = ctx.arg(5) if ctx.arg(5) is not None else True
    divisor = ctx.arg(6) if n > 1 else None
    y = ctx.emit(
        "AveragePool", ctx.input(0), count_include_pad=int(bool(count_include_pad)), **attrs
    )
    if divisor is not None:
        if any(attrs["pads"]) or attrs["ceil_mode"]:
            raise ExportError(
                f"{ctx.node.name}: avg_pool with divisor_override and padding/ceil_mode"
            )
        window = 1
        for k in attrs["kernel_shape"]:
            window *= k
        y = ctx.emit("Mul", y, ctx.const(window / divisor, ctx.out_dtype))
    return y


def _adaptive(ctx: LowerCtx, onnx_global: str, onnx_pool: str) -> Value:
    x = ctx.arg(0)
    out_size = list(ctx.arg(1))
    spatial = ctx.static_shape(x)[-len(out_size) :]
    if all(o == 1 for o in out_size):
        return ctx.emit(onnx_global, ctx.input(0))
    if any(s is None or s % o for s, o in zip(spatial, out_size, strict=True)):
        raise ExportError(
            f"{ctx.node.name}: adaptive pooling from {spatial} to {out_size} has uneven windows",
            hint="choose an output size that divides the input size",
        )
    kernel = [s // o for s, o in zip(spatial, out_size, strict=True)]
    pads = [0] * (2 * len(kernel))
    return ctx.emit(onnx_pool, ctx.input(0), kernel_shape=kernel, strides=kernel, pads=pads)


@lowers(
    aten.adaptive_avg_pool1d.default,
    aten.adaptive_avg_pool2d.default,
    aten.adaptive_avg_pool3d.default,
    aten._adaptive_avg_pool2d.default,
)
def adaptive_avg_pool(ctx: LowerCtx) -> Value:
    """adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor"""
    return _adaptive(ctx, "GlobalAveragePool", "AveragePool")


@lowers(aten.adaptive_max_pool1d.default, aten.adaptive_max_pool2d.default)
def adaptive_max_pool(ctx: LowerCtx) -> list[Value]:
    """adaptive_max_pool2d(Tensor self, int[2] output_size) -> (Tensor, Tensor)"""
    return [_adaptive(ctx, "GlobalMaxPool", "MaxPool"), _no_indices(ctx)]
