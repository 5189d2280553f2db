"""Factories (zeros, ones, full, arange, *_like, fill) and copy; sizes may hold batch
expressions (SymInt nodes), which become runtime shape tensors."""

from __future__ import annotations

from typing import Any

import onnx
import torch
from torch import fx

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._dtypes import onnx_dtype
from .._registry import lowers

aten = torch.ops.aten


def _filled(ctx: LowerCtx, shape: Value, value: Any, dtype: torch.dtype) -> Value:
    fill = onnx.helper.make_tensor("value", onnx_dtype(dtype), [1], [value])
    if dtype == torch.bool:
        fill = onnx.helper.make_tensor("value", onnx_dtype(dtype), [1], [bool(value)])
    return ctx.emit("ConstantOfShape", shape, value=fill)


def _static(items: Any) -> bool:
    return all(isinstance(i, int) for i in items)


@lowers(
    aten.zeros.default,
    aten.ones.default,
    aten.empty.memory_format,
    aten.full.default,
    aten.new_zeros.default,
    aten.new_ones.default,
    aten.new_empty.default,
    aten.new_full.default,
)
def full(ctx: LowerCtx) -> Value:
    """zeros/ones/empty/full(SymInt[] size, [Scalar fill_value], *, ScalarType? dtype, ...);
    new_* take the size after ``self``. Empty tensors are zero-filled."""
    target = ctx.node.target
    is_new = target.overloadpacket in (aten.new_zeros, aten.new_ones, aten.new_empty, aten.new_full)
    size = list(ctx.arg(1 if is_new else 0))
    packet = target.overloadpacket
    if packet in (aten.full, aten.new_full):
        value = ctx.arg(2 if is_new else 1)
    else:
        value = 1 if packet in (aten.ones, aten.new_ones) else 0
    dtype = ctx.out_dtype
    if _static(size) and isinstance(value, (int, float, bool)):
        return ctx.const(torch.full(size, value, dtype=dtype))
    if isinstance(value, fx.Node):
        return ctx.emit("Expand", ctx.input_as(value, dtype), ctx.int_list(size))
    return _filled(ctx, ctx.int_list(size), value, dtype)


@lowers(
    aten.zeros_like.default,
    aten.ones_like.default,
    aten.empty_like.default,
    aten.full_like.default,
    aten.fill.Scalar,
)
def full_like(ctx: LowerCtx) -> Value:
    """zeros_like/ones_like/empty_like/full_like(Tensor self, ...); fill(self, value)."""
    packet = ctx.node.target.overloadpacket
    value = {aten.zeros_like: 0, aten.ones_like: 1, aten.empty_like: 0}.get(packet)
    if value is None:
        value = ctx.arg(1)
    x = ctx.arg(0)
    dtype = ctx.out_dtype
    shape = ctx.static_shape(x)
    if all(d is not None for d in shape) and isinstance(value, (int, float, bool)):
        return ctx.const(torch.full(tuple(shape), value, dtype=dtype))
    return _filled(ctx, ctx.shape_of(x), value, dtype)


@lowers(aten.fill.Tensor)
def fill_tensor(ctx: LowerCtx) -> Value:
    """fill.Tensor(Tensor self, Tensor value) -> Tensor: a 0-d ``value`` in self's shape."""
    value = ctx.input_as(ctx.arg(1), ctx.out_dtype)
    return ctx.emit("Expand", value, ctx.shape_of(ctx.arg(0)))


@lowers(aten.scalar_tensor.default)
def scalar_tensor(ctx: LowerCtx) -> Value:
    """scalar_tensor(Scalar s, *, ScalarType? dtype=None, ...) -> Tensor"""
    return ctx.const(ctx.arg(0), ctx.out_dtype)


@lowers(aten.arange.default, aten.arange.start, aten.arange.start_step)
def arange(ctx: LowerCtx) -> Value:
    """arange(Scalar start=0, Scalar end, Scalar step=1, *, ScalarType? dtype=None) -> Tensor"""
    target = ctx.node.target
    if target == aten.arange.default:
        start, end, step = 0, ctx.arg(0), 1
    else:
        start, end = ctx.arg(0), ctx.arg(1)
        step = ctx.arg(2) if target == aten.arange.start_step else 1
    dtype = ctx.out_dtype
    if all(isinstance(v, (int, float)) for v in (start, end, step)):
        return ctx.const(torch.arange(start, end, step, dtype=dtype))

    def scalar(v: Any) -> Value:
        if isinstance(v, fx.Node):
            return ctx.cast(ctx.int_scalar(v), dtype, torch.int64)
        return ctx.const(v, dtype)

    return ctx.emit("Range", scalar(start), scalar(end), scalar(step))


@lowers(
    aten.linspace.default,
    aten.linspace.Tensor_Tensor,
    aten.linspace.Tensor_Scalar,
    aten.linspace.Scalar_Tensor,
)
def linspace(ctx: LowerCtx) -> Value:
    """linspace(Scalar start, Scalar end, int steps, *, ScalarType? dtype=None) -> Tensor, and
    the overloads taking 0-d tensors: step = (end - start) / (steps - 1), out[i] = start +
    step * i in the first half and end - step * (steps - 1 - i) in the second, in the output
    dtype, as torch's kernel computes it (out[-1] == end). Numbers known while tracing give
    torch.linspace's own values; steps=0 is empty, steps=1 is [start]."""
    start, end, steps = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    dtype = ctx.out_dtype
    if all(isinstance(v, (int, float)) for v in (start, end, steps)):
        return ctx.const(torch.linspace(start, end, steps, dtype=dtype))
    if not isinstance(steps, int):
        raise ExportError(f"{ctx.node.name}: linspace with a steps count known only at run time")
    if not dtype.is_floating_point:
        # torch rounds each float step to the integer dtype in its vectorized kernel, whose
        # rounding of start + step * i depends on the CPU's vector width
        raise ExportError(
            f"{ctx.node.name}: linspace into {dtype} from tensor or symbolic bounds",
            hint="compute it in float (dtype=torch.float32) and cast, or pass Python numbers",
        )
    if steps == 0:
        return ctx.const(torch.zeros(0, dtype=dtype))
    lo = _scalar_as(ctx, start, dtype)
    if steps == 1:
        return ctx.emit("Reshape", lo, ctx.const([1], torch.int64))
    hi = _scalar_as(ctx, end, dtype)
    step = ctx.emit("Div", ctx.emit("Sub", hi, lo), ctx.const(steps - 1, dtype))
    i = torch.arange(steps)
    first = ctx.emit("Add", lo, ctx.emit("Mul", step, ctx.const(i.to(dtype))))
    second = ctx.emit("Sub", hi, ctx.emit("Mul", step, ctx.const((steps - 1 - i).to(dtype))))
    return ctx.emit("Where", ctx.const(i < steps / 2), first, second)


def _scalar_as(ctx: LowerCtx, v: Any, dtype: torch.dtype) -> Value:
    """A 0-d ``dtype`` value from a number, a 0-d tensor or a SymInt node."""
    if not isinstance(v, fx.Node):
        return ctx.const(v, dtype)
    val = ctx.val(v)
    if isinstance(val, torch.Tensor):
        if val.dim() != 0:
            raise ExportError(f"{ctx.node.name}: linspace bounds must be 0-d tensors")
        return ctx.cast(ctx.value(v), dtype, val.dtype)
    if isinstance(val, torch.SymInt):
        return ctx.cast(ctx.int_scalar(v), dtype, torch.int64)
    raise ExportError(f"{ctx.node.name}: linspace bound {v} ({type(val).__name__}) not supported")


@lowers(aten.copy.default)
def copy(ctx: LowerCtx) -> Value:
    """copy(Tensor self, Tensor src, bool non_blocking=False) -> Tensor: src's values in self's
    shape and dtype (the functional form of ``self.copy_(src)``)."""
    src = ctx.input_as(ctx.arg(1), ctx.out_dtype)
    if ctx.static_shape(ctx.arg(0)) == ctx.static_shape(ctx.arg(1)) and None not in (
        ctx.static_shape(ctx.arg(0))
    ):
        return src
    return ctx.emit("Expand", src, ctx.shape_of(ctx.arg(0)))
