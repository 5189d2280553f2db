"""Data movement without arithmetic: flip, roll, diagonals, channel shuffle, sorting."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers
from ._common import axes

aten = torch.ops.aten
_I64 = torch.int64
_END = 2**63 - 1


@lowers(aten.flip.default)
def flip(ctx: LowerCtx) -> Value:
    """flip(Tensor self, int[] dims) -> Tensor: a Slice with step -1 on each dim"""
    x = ctx.arg(0)
    dims = axes(list(ctx.arg(1)), ctx.rank(x)) if ctx.arg(1) else []
    if not dims:
        return ctx.value(x)
    n = len(dims)
    return ctx.emit(
        "Slice",
        ctx.value(x),
        ctx.const([-1] * n, _I64),
        ctx.const([-_END - 1] * n, _I64),
        ctx.const(dims, _I64),
        ctx.const([-1] * n, _I64),
    )


def _roll(ctx: LowerCtx, value: Value, size: int | Value, shift: int, dim: int) -> Value:
    """out[i] = in[(i - shift) mod n] along ``dim``: the last (shift mod n) items, then the rest.
    ``size`` is n, or an int64 [1] value of it when it is only known at run time."""
    if isinstance(size, int):
        if size == 0 or shift % size == 0:
            return value
        cut = ctx.const([size - shift % size], _I64)
    else:
        cut = ctx.emit("Sub", size, ctx.emit("Mod", ctx.const([shift], _I64), size))
    axis = ctx.const([dim], _I64)
    tail = ctx.emit("Slice", value, cut, ctx.const([_END], _I64), axis)
    head = ctx.emit("Slice", value, ctx.const([0], _I64), cut, axis)
    return ctx.emit("Concat", tail, head, axis=dim)


@lowers(aten.roll.default)
def roll(ctx: LowerCtx) -> Value:
    """roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor; no dims rolls the
    flattened tensor"""
    x, shifts, dims = ctx.arg(0), list(ctx.arg(1)), list(ctx.arg(2) or [])
    if not all(isinstance(s, int) for s in shifts):
        raise ExportError(f"{ctx.node.name}: roll by a batch-dependent shift")
    shape = ctx.static_shape(x)
    if not dims:
        flat = ctx.emit("Reshape", ctx.value(x), ctx.const([-1], _I64))
        numel: int | Value = (
            math.prod(shape)  # type: ignore[arg-type]
            if None not in shape
            else ctx.emit("ReduceProd", ctx.shape_of(x), keepdims=1)
        )
        return ctx.emit("Reshape", _roll(ctx, flat, numel, shifts[0], 0), ctx.shape_of(x))
    value = ctx.value(x)
    for shift, dim in zip(shifts, dims, strict=True):
        dim %= ctx.rank(x)
        size = shape[dim] if shape[dim] is not None else ctx.shape_of(x, dim, dim + 1)
        value = _roll(ctx, value, size, shift, dim)
    return value


def _diagonal(ctx: LowerCtx, x: Any, offset: int, d1: int, d2: int) -> Value:
    """dim1 and dim2 go last and are flattened; the diagonal is a Gather of constant
    positions, appended as the last dim."""
    rank, shape = ctx.rank(x), ctx.static_shape(x)
    n1, n2 = shape[d1], shape[d2]
    if n1 is None or n2 is None:
        raise ExportError(f"{ctx.node.name}: diagonal over the dynamic batch dim")
    rows, cols = max(-offset, 0), max(offset, 0)
    length = max(0, min(n1 - rows, n2 - cols))
    keep = [d for d in range(rank) if d not in (d1, d2)]
    moved = ctx.emit("Transpose", ctx.value(x), perm=keep + [d1, d2])
    lead = [shape[d] for d in keep]
    if None in lead:
        lead_shape = ctx.emit("Shape", moved, end=len(keep))
        shape_value = ctx.emit("Concat", lead_shape, ctx.const([n1 * n2], _I64), axis=0)
    else:
        shape_value = ctx.const([*lead, n1 * n2], _I64)
    flat = ctx.emit("Reshape", moved, shape_value)
    positions = [(i + rows) * n2 + (i + cols) for i in range(length)]
    return ctx.emit("Gather", flat, ctx.const(positions, _I64), axis=len(keep))


@lowers(aten.diagonal.default)
def diagonal(ctx: LowerCtx) -> Value:
    """diagonal(Tensor(a) self, int offset=0, int dim1=0, int dim2=1) -> Tensor(a)"""
    rank = ctx.rank(ctx.arg(0))
    return _diagonal(ctx, ctx.arg(0), ctx.arg(1), ctx.arg(2) % rank, ctx.arg(3) % rank)


@lowers(aten.diag.default)
def diag(ctx: LowerCtx) -> Value:
    """diag(Tensor self, int diagonal=0) -> Tensor: a 1-D input becomes the k-th diagonal of a
    square matrix (a Where over a constant mask); a 2-D input gives its k-th diagonal"""
    x, k = ctx.arg(0), int(ctx.arg(1))
    if ctx.rank(x) == 2:
        return _diagonal(ctx, x, k, 0, 1)
    (m,) = ctx.static_shape(x)
    if m is None:
        raise ExportError(f"{ctx.node.name}: diag of a dynamic-length vector")
    n = m + abs(k)
    mask = ctx.const(torch.ones(n, n, dtype=torch.bool).triu(k).tril(k))
    padded = ctx.emit("Pad", ctx.value(x), ctx.const([0, abs(k)], _I64))
    # k >= 0 puts v[i] in row i; k < 0 puts v[j] in column j
    line = ctx.emit("Unsqueeze", padded, ctx.const([1 if k >= 0 else 0], _I64))
    return ctx.emit("Where", mask, line, ctx.const(0, ctx.out_dtype))


@lowers(aten.channel_shuffle.default, aten.native_channel_shuffle.default)
def channel_shuffle(ctx: LowerCtx) -> Value:
    """channel_shuffle(Tensor self, SymInt groups) -> Tensor: (N, g, C/g, *) -> (N, C/g, g, *)"""
    x, groups = ctx.arg(0), int(ctx.arg(1))
    shape = ctx.static_shape(x)
    c, rest = shape[1], list(shape[2:])
    if c is None or None in rest:
        raise ExportError(f"{ctx.node.name}: channel shuffle needs static channels and sizes")
    split = ctx.emit("Reshape", ctx.value(x), ctx.const([-1, groups, c // groups, *rest], _I64))
    perm = [0, 2, 1, *range(3, 3 + len(rest))]
    moved = ctx.emit("Transpose", split, perm=perm)
    return ctx.emit("Reshape", moved, ctx.const([-1, c, *rest], _I64))


def _top(ctx: LowerCtx, k: Value, dim: int, largest: bool) -> list[Value]:
    x = ctx.arg(0)
    return ctx.emit("TopK", ctx.value(x), k, outputs=2, axis=dim, largest=int(largest), sorted=1)


@lowers(aten.topk.default)
def topk(ctx: LowerCtx) -> list[Value]:
    """topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True)"""
    dim = ctx.arg(2) % max(ctx.rank(ctx.arg(0)), 1)
    return _top(ctx, ctx.int_list([ctx.arg(1)]), dim, bool(ctx.arg(3, True)))


@lowers(aten.sort.default, aten.sort.stable, aten.argsort.default, aten.argsort.stable)
def sort(ctx: LowerCtx) -> Any:
    """sort(Tensor self, int dim=-1, bool descending=False) -> (values, indices);
    sort.stable(Tensor self, *, bool? stable, int dim=-1, bool descending=False); argsort: the
    indices. TopK over the whole dim; equal values come out in index order."""
    x = ctx.arg(0)
    dim = ctx.kwarg("dim", -1) % max(ctx.rank(x), 1)
    k = ctx.shape_of(x, dim, dim + 1)
    values, indices = _top(ctx, k, dim, bool(ctx.kwarg("descending", False)))
    return indices if ctx.node.target.overloadpacket == aten.argsort else [values, indices]
