"""Broadcasting and repetition: expand_as, broadcast_tensors, repeat_interleave (repeat and
expand: shape.py)."""

from __future__ import annotations

from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten
_I64 = torch.int64


@lowers(aten.expand_as.default)
def expand_as(ctx: LowerCtx) -> Value:
    """expand_as(Tensor(a) self, Tensor other) -> Tensor(a): Expand to other's runtime shape."""
    return ctx.emit("Expand", ctx.input(0), ctx.shape_of(ctx.arg(1)))


@lowers(aten.broadcast_tensors.default)
def broadcast_tensors(ctx: LowerCtx) -> list[Value]:
    """broadcast_tensors(Tensor[] tensors) -> Tensor[]: each tensor expanded to the common
    shape: a constant when every shape is static, else Expanded by every other tensor's
    runtime shape in turn (ONNX Expand broadcasts both ways, so that is the common shape)."""
    tensors = list(ctx.arg(0))
    shapes = [ctx.static_shape(t) for t in tensors]
    if all(None not in s for s in shapes):
        common = tuple(torch.broadcast_shapes(*shapes))
        return [
            ctx.value(t)
            if s == common
            else ctx.emit("Expand", ctx.value(t), ctx.const(list(common), _I64))
            for t, s in zip(tensors, shapes, strict=True)
        ]
    results = []
    for i, t in enumerate(tensors):
        value = ctx.value(t)
        for j, other in enumerate(tensors):
            if j != i:
                value = ctx.emit("Expand", value, ctx.shape_of(other))
        results.append(value)
    return results


def _repeat_each(ctx: LowerCtx, value: Value, rank: int, dim: int, count: Value) -> Value:
    """Every slice along ``dim`` repeated ``count`` times in place (``count``: a [1] int64
    value): Unsqueeze after ``dim``, Expand there, then merge the two dims."""
    one = ctx.const([1], _I64)
    reps = ctx.emit("Concat", *([one] * (dim + 1) + [count] + [one] * (rank - dim - 1)), axis=0)
    wide = ctx.emit("Expand", ctx.emit("Unsqueeze", value, ctx.const([dim + 1], _I64)), reps)
    shape = ctx.emit("Shape", value)
    merged = ctx.emit("Mul", ctx.emit("Gather", shape, ctx.const([dim], _I64)), count)
    head = ctx.emit("Slice", shape, ctx.const([0], _I64), ctx.const([dim], _I64))
    tail = ctx.emit("Slice", shape, ctx.const([dim + 1], _I64), ctx.const([rank], _I64))
    new_shape = ctx.emit("Concat", head, merged, tail, axis=0)
    return ctx.emit("Reshape", wide, new_shape, allowzero=1)


def _flat_or(ctx: LowerCtx, x: Any, dim: Any) -> tuple[Value, int, int]:
    """(value, rank, dim): dim None (or a 0-d input) flattens the input first."""
    value, rank = ctx.value(x), ctx.rank(x)
    if dim is None or rank == 0:
        return ctx.emit("Reshape", value, ctx.const([-1], _I64)), 1, 0
    return value, rank, dim % rank


@lowers(aten.repeat_interleave.self_int)
def repeat_interleave_int(ctx: LowerCtx) -> Value:
    """repeat_interleave.self_int(Tensor self, SymInt repeats, int? dim=None, *,
    SymInt? output_size=None) -> Tensor: dim None repeats the flattened tensor."""
    value, rank, dim = _flat_or(ctx, ctx.arg(0), ctx.arg(2))
    return _repeat_each(ctx, value, rank, dim, ctx.int_list([ctx.arg(1)]))


@lowers(aten.repeat_interleave.self_Tensor)
def repeat_interleave_tensor(ctx: LowerCtx) -> Value:
    """repeat_interleave.self_Tensor(Tensor self, Tensor repeats, int? dim=None, *,
    SymInt? output_size=None) -> Tensor. One repeat count broadcasts; otherwise output
    position j takes slice #{k : cumsum(repeats)[k] <= j} (capture needs ``output_size``)."""
    value, rank, dim = _flat_or(ctx, ctx.arg(0), ctx.arg(2))
    repeats = ctx.arg(1)
    reps = ctx.cast(ctx.value(repeats), _I64, ctx.dtype(repeats))
    if ctx.rank(repeats) == 0 or ctx.static_shape(repeats) == (1,):
        return _repeat_each(ctx, value, rank, dim, ctx.emit("Reshape", reps, ctx.const([1], _I64)))
    return ctx.emit("Gather", value, _source_index(ctx, reps, dim), axis=dim)


def _source_index(ctx: LowerCtx, reps: Value, dim: int) -> Value:
    """For each output position j (the op's output size along ``dim``) the index of the
    repeated slice: #{k : cumsum(repeats)[k] <= j}."""
    size = ctx.kwarg("output_size")
    if size is None:
        size = ctx.static_shape(ctx.node)[dim]
    if size is None:
        raise ExportError(
            f"{ctx.node.name}: repeat_interleave with a tensor of repeats needs its output size",
            hint="pass output_size=... to repeat_interleave",
        )
    ends = ctx.emit("CumSum", reps, ctx.const(0, _I64))
    positions = ctx.emit("Range", ctx.const(0, _I64), ctx.int_scalar(size), ctx.const(1, _I64))
    covered = ctx.emit(
        "LessOrEqual",
        ctx.emit("Unsqueeze", ends, ctx.const([0], _I64)),
        ctx.emit("Unsqueeze", positions, ctx.const([1], _I64)),
    )
    return ctx.emit("ReduceSum", ctx.cast(covered, _I64), ctx.const([1], _I64), keepdims=0)


@lowers(aten.repeat_interleave.Tensor)
def repeat_interleave_indices(ctx: LowerCtx) -> Value:
    """repeat_interleave.Tensor(Tensor repeats, *, SymInt? output_size=None) -> Tensor: each
    index k repeated repeats[k] times (capture needs ``output_size``)."""
    repeats = ctx.arg(0)
    reps = ctx.cast(ctx.value(repeats), _I64, ctx.dtype(repeats))
    if ctx.rank(repeats) == 0:
        reps = ctx.emit("Reshape", reps, ctx.const([1], _I64))
    return _source_index(ctx, reps, 0)
