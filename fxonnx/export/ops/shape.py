"""Views, reshapes, joins and splits, positional indexing (factories: factory.py, SymInt
arithmetic: symint.py)."""

from __future__ import annotations

import operator
from typing import Any

import torch

from ..._errors import DynamicDimError, ExportError
from ...capture import same_dim, static_dim
from .._ctx import LowerCtx, Value
from .._registry import lowers
from ._common import axes, promoted

aten = torch.ops.aten


@lowers(
    aten.clone.default,
    aten.contiguous.default,
    aten.alias.default,
    aten.detach.default,
    aten.lift_fresh_copy.default,
    aten.lift_fresh.default,
)
def identity(ctx: LowerCtx) -> Value:
    """clone/contiguous/alias/detach(Tensor self) -> Tensor: the same values."""
    return ctx.input(0)


@lowers(
    aten.dropout.default,
    aten.feature_dropout.default,
    aten.alpha_dropout.default,
    aten.feature_alpha_dropout.default,
)
def dropout(ctx: LowerCtx) -> Value:
    """dropout(Tensor input, float p, bool train) -> Tensor (and feature_, alpha_,
    feature_alpha_dropout): identity in eval mode."""
    if ctx.arg(2):
        raise ExportError(
            f"{ctx.node.name}: dropout in training mode cannot be exported for inference",
            hint="call model.eval() first (fxonnx.compile does this unless told otherwise)",
        )
    return ctx.input(0)


# -- reshapes ------------------------------------------------------------------------------
def reshape_to(ctx: LowerCtx, x: Value, shape: list[Any]) -> Value:
    """Reshape where ``shape`` holds ints, SymInt nodes and -1 (never ONNX's 0 = copy)."""
    allowzero = 1 if any(isinstance(s, int) and s == 0 for s in shape) else None
    return ctx.emit("Reshape", x, ctx.int_list(shape), allowzero=allowzero)


@lowers(aten.view.default, aten.reshape.default, aten._unsafe_view.default)
def view(ctx: LowerCtx) -> Value:
    """view(Tensor self, SymInt[] size) -> Tensor"""
    shape = _constant_target(ctx, ctx.arg(0))
    if shape is not None:
        return ctx.emit("Reshape", ctx.input(0), ctx.const(shape, torch.int64))
    return reshape_to(ctx, ctx.input(0), list(ctx.arg(1)))


def _constant_target(ctx: LowerCtx, x: Any) -> list[int] | None:
    """The output shape as constants when its dynamic dims need no arithmetic at run time:
    one dynamic dim is -1 (what remains); with several, each is the input's dim at the same
    position (ONNX's 0: copy) but at most one (-1). ``(batch, seq, 64) -> (batch, seq, 4,
    16)`` becomes ``[0, 0, 4, 16]``, and onnxruntime needs no Shape/Gather/Concat chain for
    it. None when that does not hold."""
    before, after = ctx.val(x).shape, ctx.val().shape
    if any(static_dim(d) == 0 for d in after):  # 0 would be read as "copy" (allowzero)
        return None
    sizes = [static_dim(d) for d in after]
    if sizes.count(None) == 1:  # -1 does not depend on the input's layout, so onnxruntime
        return [-1 if d is None else d for d in sizes]  # can merge it with a Reshape before
    shape: list[int] = []
    for i, d in enumerate(after):
        size = static_dim(d)
        if size is not None:
            shape.append(size)
        elif i < len(before) and same_dim(before[i], d):
            shape.append(0)
        elif -1 in shape:
            return None
        else:
            shape.append(-1)
    return shape


def _dims_from(ctx: LowerCtx, x_node: Any, start: int, end: int | None = None) -> Value:
    """Dims [start:end] of ``x`` as an int64 tensor: constants when static, else Shape."""
    dims = ctx.static_shape(x_node)[start:end]
    if all(d is not None for d in dims):
        return ctx.const(list(dims), torch.int64)
    return ctx.shape_of(x_node, start=start, end=end)


@lowers(aten.flatten.using_ints)
def flatten(ctx: LowerCtx) -> Value:
    """flatten(Tensor(a) self, int start_dim=0, int end_dim=-1) -> Tensor(a)"""
    x = ctx.arg(0)
    rank = ctx.rank(x)
    if rank == 0:
        return reshape_to(ctx, ctx.value(x), [1])
    start, end = (d % rank for d in (ctx.arg(1), ctx.arg(2)))
    if start == end:
        return ctx.value(x)
    if end == rank - 1 and start == 1:
        return ctx.emit("Flatten", ctx.value(x), axis=1)
    shape = _constant_target(ctx, x)
    if shape is not None:
        return ctx.emit("Reshape", ctx.value(x), ctx.const(shape, torch.int64))
    parts = []
    if start:
        parts.append(_dims_from(ctx, x, 0, start))
    parts.append(ctx.const([-1], torch.int64))
    if end + 1 < rank:
        parts.append(_dims_from(ctx, x, end + 1))
    shape = parts[0] if len(parts) == 1 else ctx.emit("Concat", *parts, axis=0)
    return ctx.emit("Reshape", ctx.value(x), shape)


@lowers(aten.unflatten.int)
def unflatten(ctx: LowerCtx) -> Value:
    """unflatten(Tensor(a) self, int dim, SymInt[] sizes) -> Tensor(a)"""
    x = ctx.arg(0)
    rank = ctx.rank(x)
    dim = ctx.arg(1) % rank
    shape = _constant_target(ctx, x)
    if shape is not None:
        return ctx.emit("Reshape", ctx.value(x), ctx.const(shape, torch.int64))
    parts = []
    if dim:
        parts.append(_dims_from(ctx, x, 0, dim))
    parts.append(ctx.int_list(list(ctx.arg(2))))
    if dim + 1 < rank:
        parts.append(_dims_from(ctx, x, dim + 1))
    shape = parts[0] if len(parts) == 1 else ctx.emit("Concat", *parts, axis=0)
    return ctx.emit("Reshape", ctx.value(x), shape)


@lowers(aten.permute.default)
def permute(ctx: LowerCtx) -> Value:
    """permute(Tensor(a) self, int[] dims) -> Tensor(a)"""
    rank = ctx.rank(ctx.arg(0))
    return ctx.emit("Transpose", ctx.input(0), perm=axes(list(ctx.arg(1)), rank))


@lowers(aten.transpose.int)
def transpose(ctx: LowerCtx) -> Value:
    """transpose(Tensor(a) self, int dim0, int dim1) -> Tensor(a)"""
    rank = ctx.rank(ctx.arg(0))
    if rank < 2:
        return ctx.input(0)
    d0, d1 = ctx.arg(1) % rank, ctx.arg(2) % rank
    perm = list(range(rank))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return ctx.emit("Transpose", ctx.input(0), perm=perm)


@lowers(aten.t.default, aten.numpy_T.default)
def t(ctx: LowerCtx) -> Value:
    """t(Tensor(a) self) -> Tensor(a): 2-D transpose, identity below 2-D."""
    rank = ctx.rank(ctx.arg(0))
    if rank < 2:
        return ctx.input(0)
    return ctx.emit("Transpose", ctx.input(0), perm=list(reversed(range(rank))))


@lowers(aten.unsqueeze.default)
def unsqueeze(ctx: LowerCtx) -> Value:
    """unsqueeze(Tensor(a) self, int dim) -> Tensor(a)"""
    rank = ctx.rank(ctx.arg(0)) + 1
    return ctx.emit("Unsqueeze", ctx.input(0), ctx.const([ctx.arg(1) % rank], torch.int64))


@lowers(aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)
def squeeze(ctx: LowerCtx) -> Value:
    """squeeze(Tensor(a) self, int[]? dim) -> Tensor(a): only dims of size 1 go; torch leaves
    others alone. A dynamic dim among the candidates is refused: eager drops it exactly when its
    runtime size is 1, which changes the output's rank, and an ONNX graph has one rank."""
    shape = ctx.static_shape(ctx.arg(0))
    dims = ctx.arg(1) if ctx.node.target != aten.squeeze.default else None
    chosen = axes(dims, len(shape)) if dims is not None else range(len(shape))
    dynamic = [d for d in chosen if shape[d] is None]
    if dynamic:
        raise DynamicDimError(
            f"{ctx.node.name}: squeeze over dim(s) {dynamic}, whose size is dynamic: eager drops "
            "such a dim only when it is 1 at run time, so the output's rank would depend on it",
            hint="squeeze only static dims (x.squeeze(2)), or make that dim static (dynamic_dims)",
        )
    ones = [d for d in chosen if shape and shape[d] == 1]
    if not ones:
        return ctx.input(0)
    return ctx.emit("Squeeze", ctx.input(0), ctx.const(ones, torch.int64))


@lowers(aten.expand.default, aten.broadcast_to.default)
def expand(ctx: LowerCtx) -> Value:
    """expand(Tensor(a) self, SymInt[] size, *, bool implicit=False) -> Tensor(a);
    broadcast_to(Tensor(a) self, SymInt[] size) -> Tensor(a). -1 keeps a dim, which ONNX's
    broadcasting Expand writes as 1."""
    sizes = [1 if isinstance(s, int) and s == -1 else s for s in ctx.arg(1)]
    # a dim the input already has at that size broadcasts from 1 as well: (batch, 1, seq) to
    # (batch, 4, seq) expands by the constant [1, 4, 1], with no shape arithmetic at run time
    before, after = ctx.val(ctx.arg(0)).shape, ctx.val().shape
    offset = len(after) - len(before)
    for i, d in enumerate(after):
        if i >= offset and static_dim(d) is None and same_dim(before[i - offset], d):
            sizes[i] = 1
    return ctx.emit("Expand", ctx.input(0), ctx.int_list(sizes))


@lowers(aten.repeat.default)
def repeat(ctx: LowerCtx) -> Value:
    """repeat(Tensor self, SymInt[] repeats) -> Tensor"""
    reps = list(ctx.arg(1))
    x = ctx.input(0)
    extra = len(reps) - ctx.rank(ctx.arg(0))
    if extra > 0:
        x = ctx.emit("Unsqueeze", x, ctx.const(list(range(extra)), torch.int64))
    return ctx.emit("Tile", x, ctx.int_list(reps))


# -- joins and splits ----------------------------------------------------------------------
@lowers(aten.cat.default, aten.concat.default, aten.concatenate.default)
def cat(ctx: LowerCtx) -> Value:
    """cat(Tensor[] tensors, int dim=0) -> Tensor (legacy empty 1-D inputs are skipped)"""
    tensors = [t for t in ctx.arg(0) if not (ctx.rank(t) == 1 and ctx.static_shape(t)[0] == 0)]
    rank = ctx.rank(tensors[0])
    values = promoted(ctx, *tensors, dtype=ctx.out_dtype)
    if len(values) == 1:
        return values[0]
    return ctx.emit("Concat", *values, axis=ctx.arg(1) % rank)


@lowers(aten.stack.default)
def stack(ctx: LowerCtx) -> Value:
    """stack(Tensor[] tensors, int dim=0) -> Tensor"""
    tensors = list(ctx.arg(0))
    rank = ctx.rank(tensors[0]) + 1
    axis = ctx.const([ctx.arg(1) % rank], torch.int64)
    parts = [ctx.emit("Unsqueeze", v, axis) for v in promoted(ctx, *tensors, dtype=ctx.out_dtype)]
    return parts[0] if len(parts) == 1 else ctx.emit("Concat", *parts, axis=ctx.arg(1) % rank)


def _split(ctx: LowerCtx, sizes: list[int], dim: int) -> list[Value]:
    if len(sizes) == 1:
        return [ctx.input(0)]
    return ctx.emit(
        "Split", ctx.input(0), ctx.const(sizes, torch.int64), outputs=len(sizes), axis=dim
    )


def _static_dim(ctx: LowerCtx, x: Any, dim: int) -> int:
    size = ctx.static_shape(x)[dim]
    if size is None:
        raise ExportError(
            f"{ctx.node.name}: splitting the dynamic batch dim into pieces needs a static size",
            hint="export with dynamic=False, or split a dim of fixed size",
        )
    return size


@lowers(aten.split.Tensor, aten.split_with_sizes.default, aten.unsafe_split.Tensor)
def split(ctx: LowerCtx) -> list[Value]:
    """split(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]"""
    x = ctx.arg(0)
    dim = ctx.arg(2) % ctx.rank(x)
    size = ctx.arg(1)
    if isinstance(size, int):
        total = _static_dim(ctx, x, dim)
        sizes = [min(size, total - i) for i in range(0, total, size)] or [0]
    else:
        sizes = list(size)
    return _split(ctx, sizes, dim)


@lowers(aten.chunk.default)
def chunk(ctx: LowerCtx) -> list[Value]:
    """chunk(Tensor(a -> *) self, int chunks, int dim=0) -> Tensor(a)[]"""
    x = ctx.arg(0)
    dim = ctx.arg(2) % ctx.rank(x)
    total = _static_dim(ctx, x, dim)
    step = -(-total // ctx.arg(1))
    return _split(ctx, [min(step, total - i) for i in range(0, total, step)], dim)


@lowers(aten.unbind.int)
def unbind(ctx: LowerCtx) -> list[Value]:
    """unbind(Tensor(a -> *) self, int dim=0) -> Tensor(a)[]"""
    x = ctx.arg(0)
    dim = ctx.arg(1) % ctx.rank(x)
    n = _static_dim(ctx, x, dim)
    axis = ctx.const([dim], torch.int64)
    return [ctx.emit("Squeeze", part, axis) for part in _split(ctx, [1] * n, dim)]


@lowers(operator.getitem)
def getitem(ctx: LowerCtx) -> Any:
    """One result of a multi-output node."""
    values = ctx.env[ctx.arg(0)]
    return values[ctx.arg(1)]


# -- indexing by position ------------------------------------------------------------------
@lowers(aten.select.int)
def select(ctx: LowerCtx) -> Value:
    """select(Tensor(a) self, int dim, SymInt index) -> Tensor(a)"""
    rank = ctx.rank(ctx.arg(0))
    return ctx.emit("Gather", ctx.input(0), ctx.int_scalar(ctx.arg(2)), axis=ctx.arg(1) % rank)


@lowers(aten.slice.Tensor)
def slice_(ctx: LowerCtx) -> Value:
    """slice(Tensor(a) self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1)"""
    x = ctx.arg(0)
    rank = ctx.rank(x)
    dim = ctx.arg(1) % rank
    start = 0 if ctx.arg(2) is None else ctx.arg(2)
    end = ctx.arg(3)
    end = 9223372036854775807 if end is None else end
    step = ctx.arg(4)
    if start == 0 and step == 1 and _reaches_end(ctx, x, dim, end):
        return ctx.value(x)
    return ctx.emit(
        "Slice",
        ctx.value(x),
        ctx.int_list([start]),
        ctx.int_list([end]),
        ctx.const([dim], torch.int64),
        ctx.const([step], torch.int64),
    )


def _reaches_end(ctx: LowerCtx, x: Any, dim: int, end: Any) -> bool:
    """``end`` is at or past the end of ``x``'s dim for every size it can take: ``x[:, None]``
    (end = 2**63-1), ``x[:, :n]`` with ``n`` that dim's own size, or a static end past it."""
    size = ctx.val(x).shape[dim]
    if isinstance(end, int):
        static = static_dim(size)
        return end >= 2**62 or (static is not None and end >= static)
    return isinstance(ctx.val(end), torch.SymInt) and same_dim(ctx.val(end), size)


@lowers(aten.narrow.default)
def narrow(ctx: LowerCtx) -> Value:
    """narrow(Tensor(a) self, int dim, SymInt start, SymInt length) -> Tensor(a)"""
    dim = ctx.arg(1) % ctx.rank(ctx.arg(0))
    start = ctx.int_list([ctx.arg(2)])
    end = ctx.emit("Add", start, ctx.int_list([ctx.arg(3)]))
    return ctx.emit("Slice", ctx.input(0), start, end, ctx.const([dim], torch.int64))
