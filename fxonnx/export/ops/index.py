"""Indexing by tensors: advanced indexing, gathers, scatters, item assignment, masks, Trilu.

Item assignment reaches here functionalized: ``x[:, 0] = y`` is ``select_scatter``,
``x[:, 1:3] = y`` is ``slice_scatter``, ``x[idx] += 1`` is ``index`` then ``index_put``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten
_I64 = torch.int64


def _dim_size(ctx: LowerCtx, x: Any, dim: int) -> Value:
    """Size of ``x`` along ``dim`` as an int64 [1] value (a constant unless dynamic)."""
    size = ctx.static_shape(x)[dim]
    return ctx.const([size], _I64) if size is not None else ctx.shape_of(x, dim, dim + 1)


def _wrapped(ctx: LowerCtx, index: Any, x: Any, dim: int) -> Value:
    """``index`` as int64 with negative entries wrapped (Python's modulo by the dim size)."""
    return ctx.emit("Mod", ctx.input_as(index, _I64), _dim_size(ctx, x, dim))


def _refuse_masks(ctx: LowerCtx, indices: list[Any]) -> None:
    if any(ctx.dtype(i) in (torch.bool, torch.uint8) for i in indices):
        raise ExportError(
            f"{ctx.node.name}: indexing with a boolean mask has a data-dependent output shape",
            hint="use torch.where(mask, x, other) or x.masked_fill(mask, value) instead",
        )


def _transpose(ctx: LowerCtx, value: Value, perm: list[int]) -> Value:
    return value if perm == sorted(perm) else ctx.emit("Transpose", value, perm=perm)


class _Advanced:
    """torch's advanced indexing as ONNX GatherND/ScatterND on ``x`` transposed to put the
    indexed dims first, with the broadcast indices stacked on a last axis. GatherND yields
    (block, rest...); torch puts the block where the first index sat when the indexed dims are
    adjacent (``to_torch`` moves it there), else in front."""

    def __init__(self, ctx: LowerCtx, x: Any, indices: list[Any]) -> None:
        rank = ctx.rank(x)
        dims = [d for d, i in enumerate(indices) if i is not None]
        rest = [d for d in range(rank) if d not in dims]
        _refuse_masks(ctx, [indices[d] for d in dims])
        adjacent = dims == list(range(dims[0], dims[-1] + 1))
        nb = sum(d < dims[0] for d in rest) if adjacent else 0
        b = max(ctx.rank(indices[d]) for d in dims)
        self.perm = dims + rest
        self.inverse = [self.perm.index(d) for d in range(rank)]
        tail = list(range(b + nb, b + len(rest)))
        self.to_torch = list(range(b, b + nb)) + list(range(b)) + tail
        self.from_torch = list(range(nb, nb + b)) + list(range(nb)) + tail
        self.n_indexed = len(dims)
        wrapped = [_wrapped(ctx, indices[d], x, d) for d in dims]
        common = wrapped[0]
        for w in wrapped[1:]:
            common = ctx.emit("Add", common, w)  # its shape is the broadcast shape
        shape, last = ctx.emit("Shape", common), ctx.const([-1], _I64)
        parts = [ctx.emit("Unsqueeze", ctx.emit("Expand", w, shape), last) for w in wrapped]
        self.stacked = parts[0] if len(parts) == 1 else ctx.emit("Concat", *parts, axis=-1)


@lowers(aten.index.Tensor)
def index(ctx: LowerCtx) -> Value:
    """index.Tensor(Tensor self, Tensor?[] indices) -> Tensor"""
    x, indices = ctx.arg(0), list(ctx.arg(1))
    live = [d for d, i in enumerate(indices) if i is not None]
    if len(live) == 1 and ctx.dtype(indices[live[0]]) not in (torch.bool, torch.uint8):
        d = live[0]
        return ctx.emit("Gather", ctx.value(x), ctx.input_as(indices[d], _I64), axis=d)
    adv = _Advanced(ctx, x, indices)
    gathered = ctx.emit("GatherND", _transpose(ctx, ctx.value(x), adv.perm), adv.stacked)
    return _transpose(ctx, gathered, adv.to_torch)


def _mask_put(ctx: LowerCtx, x: Any, mask: Any, values: Any, accumulate: bool) -> Value:
    """``x[mask] = v`` keeps x's shape: a Where when ``v`` broadcasts over the masked rows."""
    dtype = ctx.out_dtype
    rank, mask_rank = ctx.rank(x), ctx.rank(mask)
    v_shape = ctx.static_shape(values) if isinstance(values, fx.Node) else ()
    rest = ctx.static_shape(x)[mask_rank:]
    if len(v_shape) > len(rest) + 1 or (len(v_shape) == len(rest) + 1 and v_shape[0] != 1):
        raise ExportError(
            f"{ctx.node.name}: x[mask] = values with one value per masked element is "
            "data-dependent",
            hint="use torch.where(mask, values_full, x) with values shaped like x",
        )
    cond = ctx.input_as(mask, torch.bool)
    if rank > mask_rank:
        cond = ctx.emit("Unsqueeze", cond, ctx.const(list(range(mask_rank, rank)), _I64))
    v = ctx.input_as(values, dtype)
    if len(v_shape) == len(rest) + 1:
        v = ctx.emit("Squeeze", v, ctx.const([0], _I64))
    base = ctx.input_as(x, dtype)
    if accumulate:
        return ctx.emit("Add", base, ctx.emit("Where", cond, v, ctx.const(0, dtype)))
    return ctx.emit("Where", cond, v, base)


@lowers(aten.index_put.default, aten._unsafe_index_put.default)
def index_put(ctx: LowerCtx) -> Value:
    """index_put(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False)"""
    x, indices, values, accumulate = ctx.arg(0), list(ctx.arg(1)), ctx.arg(2), bool(ctx.arg(3))
    live = [i for i in indices if i is not None]
    if (
        len(live) == 1
        and indices[0] is not None
        and ctx.dtype(live[0]) in (torch.bool, torch.uint8)
    ):
        return _mask_put(ctx, x, live[0], values, accumulate)
    adv = _Advanced(ctx, x, indices)
    data = _transpose(ctx, ctx.value(x), adv.perm)
    # values broadcast to torch's x[indices] shape: GatherND's (block, rest...) in torch's order
    block = ctx.emit("Shape", adv.stacked, end=-1)
    nd_shape = ctx.emit("Concat", block, ctx.emit("Shape", data, start=adv.n_indexed), axis=0)
    if adv.to_torch != sorted(adv.to_torch):
        nd_shape = ctx.emit("Gather", nd_shape, ctx.const(adv.to_torch, _I64))
    updates = ctx.emit("Expand", ctx.input_as(values, ctx.out_dtype), nd_shape)
    updates = _transpose(ctx, updates, adv.from_torch)
    out = ctx.emit("ScatterND", data, adv.stacked, updates, reduction="add" if accumulate else None)
    return _transpose(ctx, out, adv.inverse)


@lowers(aten.index_select.default)
def index_select(ctx: LowerCtx) -> Value:
    """index_select(Tensor self, int dim, Tensor index) -> Tensor"""
    x = ctx.arg(0)
    dim = ctx.arg(1) % max(ctx.rank(x), 1)
    idx = ctx.input_as(ctx.arg(2), _I64)
    if ctx.rank(ctx.arg(2)) == 0:
        idx = ctx.emit("Reshape", idx, ctx.const([1], _I64))
    return ctx.emit("Gather", ctx.value(x), idx, axis=dim)


def _fit_to(ctx: LowerCtx, data: Any, like: Any, skip: int | None) -> Value:
    """``data`` sliced to ``like``'s static sizes (torch lets gather/scatter indices be smaller
    than the data in every dim but the gathered one)."""
    shape, want = ctx.static_shape(data), ctx.static_shape(like)
    dims = [
        d
        for d, (s, w) in enumerate(zip(shape, want, strict=True))
        if d != skip and s is not None and w is not None and w < s
    ]
    value = ctx.value(data)
    if not dims:
        return value
    zeros = ctx.const([0] * len(dims), _I64)
    ends = ctx.const([want[d] for d in dims], _I64)
    return ctx.emit("Slice", value, zeros, ends, ctx.const(dims, _I64))


@lowers(aten.gather.default)
def gather(ctx: LowerCtx) -> Value:
    """gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor"""
    x, index_ = ctx.arg(0), ctx.arg(2)
    dim = ctx.arg(1) % max(ctx.rank(x), 1)
    data = _fit_to(ctx, x, index_, dim)
    return ctx.emit("GatherElements", data, ctx.input_as(index_, _I64), axis=dim)


@lowers(aten.take_along_dim.default)
def take_along_dim(ctx: LowerCtx) -> Value:
    """take_along_dim(Tensor self, Tensor indices, int? dim=None) -> Tensor: indices broadcast
    against self in every dim but ``dim``; dim None indexes the flattened tensor."""
    x, idx, dim = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    if dim is None:
        flat = ctx.emit("Reshape", ctx.value(x), ctx.const([-1], _I64))
        return ctx.emit(
            "Gather", flat, ctx.emit("Reshape", ctx.input_as(idx, _I64), ctx.const([-1], _I64))
        )
    dim %= ctx.rank(x)
    indices = ctx.input_as(idx, _I64)
    x_shape, i_shape = list(ctx.static_shape(x)), list(ctx.static_shape(idx))
    x_shape[dim] = i_shape[dim] = 0
    if x_shape != i_shape:  # broadcast both in every dim but ``dim``, where dims of 1 give way
        one, axis = ctx.const([1], _I64), ctx.const([dim], _I64)
        sizes = [ctx.emit("ScatterElements", ctx.shape_of(t), axis, one) for t in (x, idx)]
        both = ctx.emit("Max", *sizes)
        own = [ctx.emit("ScatterElements", both, axis, _dim_size(ctx, t, dim)) for t in (x, idx)]
        return ctx.emit(
            "GatherElements",
            ctx.emit("Expand", ctx.value(x), own[0]),
            ctx.emit("Expand", indices, own[1]),
            axis=dim,
        )
    return ctx.emit("GatherElements", ctx.value(x), indices, axis=dim)


_SCATTER_REDUCE = {"sum": "add", "add": "add", "prod": "mul", "multiply": "mul"}
_SCATTER_REDUCE |= {"amax": "max", "amin": "min"}


@lowers(
    aten.scatter.src,
    aten.scatter.value,
    aten.scatter.reduce,
    aten.scatter.value_reduce,
    aten.scatter_add.default,
    aten.scatter_reduce.two,
)
def scatter(ctx: LowerCtx) -> Value:
    """scatter(Tensor self, int dim, Tensor index, Tensor src|Scalar value, *, str? reduce)
    scatter_reduce.two(..., str reduce, *, bool include_self=True); scatter_add(...)"""
    x, index_, src = ctx.arg(0), ctx.arg(2), ctx.arg(3)
    dim = ctx.arg(1) % max(ctx.rank(x), 1)
    target = ctx.node.target
    reduce = "sum" if target == aten.scatter_add.default else ctx.kwarg("reduce")
    if target == aten.scatter_reduce.two and not ctx.kwarg("include_self", True):
        raise ExportError(f"{ctx.node.name}: scatter_reduce with include_self=False")
    if reduce is not None and reduce not in _SCATTER_REDUCE:
        raise ExportError(f"{ctx.node.name}: scatter reduction {reduce!r} has no ONNX form")
    idx = ctx.input_as(index_, _I64)
    if isinstance(src, fx.Node):
        updates = ctx.cast(_fit_to(ctx, src, index_, None), ctx.out_dtype, ctx.dtype(src))
    else:
        updates = ctx.emit("Expand", ctx.const(src, ctx.out_dtype), ctx.shape_of(index_))
    reduction = _SCATTER_REDUCE.get(reduce)
    if ctx.out_dtype == torch.bool and reduction is not None:
        # onnxruntime reduces no bools (it fails at run time): on 0 and 1 in uint8, or and and
        # are max and min (add would wrap past 255 Trues)
        reduction = {"add": "max", "mul": "min"}.get(reduction, reduction)
        u8 = [ctx.cast(v, torch.uint8, torch.bool) for v in (ctx.value(x), updates)]
        wide = ctx.emit("ScatterElements", u8[0], idx, u8[1], axis=dim, reduction=reduction)
        return ctx.cast(wide, torch.bool, torch.uint8)
    return ctx.emit("ScatterElements", ctx.value(x), idx, updates, axis=dim, reduction=reduction)


def _scatter_positions(
    ctx: LowerCtx, x: Any, src: Value, src_rank: int, dim: int, pos: Value
) -> Value:
    """x with src written at positions ``pos`` (1-D int64) along ``dim``: ScatterElements with
    the positions broadcast over src's shape."""
    shape = [1] * src_rank
    shape[dim] = -1
    idx = ctx.emit("Reshape", pos, ctx.const(shape, _I64))
    idx = ctx.emit("Expand", idx, ctx.emit("Shape", src))
    return ctx.emit("ScatterElements", ctx.input_as(x, ctx.out_dtype), idx, src, axis=dim)


@lowers(aten.select_scatter.default)
def select_scatter(ctx: LowerCtx) -> Value:
    """select_scatter(Tensor self, Tensor src, int dim, SymInt index) -> Tensor"""
    x, src = ctx.arg(0), ctx.arg(1)
    rank = ctx.rank(x)
    dim = ctx.arg(2) % rank
    pos = ctx.emit("Mod", ctx.int_list([ctx.arg(3)]), _dim_size(ctx, x, dim))
    value = ctx.emit("Unsqueeze", ctx.input_as(src, ctx.out_dtype), ctx.const([dim], _I64))
    return _scatter_positions(ctx, x, value, rank, dim, pos)


@lowers(aten.slice_scatter.default)
def slice_scatter(ctx: LowerCtx) -> Value:
    """slice_scatter(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None,
    SymInt step=1) -> Tensor. Positions start + step * arange(len(src along dim))."""
    x, src = ctx.arg(0), ctx.arg(1)
    rank = ctx.rank(x)
    dim, start, end, step = ctx.arg(2) % rank, ctx.arg(3), ctx.arg(4), ctx.arg(5)
    size = ctx.static_shape(x)[dim]
    if size is not None and all(isinstance(v, (int, type(None))) for v in (start, end)):
        first = slice(start, end, step).indices(size)[0]
        begin = ctx.const([first], _I64)
    else:
        raw = ctx.int_list([0 if start is None else start])
        # negatives count from the end; clamp as torch does
        negative = ctx.emit("Less", raw, ctx.const([0], _I64))
        begin = ctx.emit("Where", negative, ctx.emit("Add", raw, _dim_size(ctx, x, dim)), raw)
    n = ctx.static_shape(src)[dim]
    if n is not None:
        offsets = ctx.const([i * step for i in range(n)], _I64)
    else:
        count = ctx.emit("Squeeze", ctx.shape_of(src, dim, dim + 1), ctx.const([0], _I64))
        steps = ctx.emit("Range", ctx.const(0, _I64), count, ctx.const(1, _I64))
        offsets = ctx.emit("Mul", steps, ctx.const(step, _I64))
    pos = ctx.emit("Add", offsets, begin)
    value = ctx.input_as(src, ctx.out_dtype)
    return _scatter_positions(ctx, x, value, rank, dim, pos)


@lowers(aten.masked_fill.Scalar, aten.masked_fill.Tensor)
def masked_fill(ctx: LowerCtx) -> Value:
    """masked_fill(Tensor self, Tensor mask, Scalar|Tensor value) -> Tensor"""
    dtype = ctx.out_dtype
    cond = ctx.input_as(ctx.arg(1), torch.bool)
    return ctx.emit("Where", cond, ctx.input_as(ctx.arg(2), dtype), ctx.input_as(ctx.arg(0), dtype))


@lowers(aten.tril.default, aten.triu.default)
def trilu(ctx: LowerCtx) -> Value:
    """tril/triu(Tensor self, int diagonal=0) -> Tensor"""
    upper = int(ctx.node.target == aten.triu.default)
    return ctx.emit("Trilu", ctx.input(0), ctx.const(int(ctx.arg(1)), _I64), upper=upper)
