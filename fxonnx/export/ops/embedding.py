"""Embedding lookups: ``embedding`` (one Gather) and ``embedding_bag`` (Gather, then a segment
reduction over the bags with ScatterND)."""

from __future__ import annotations

import operator

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten

_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


@lowers(aten.embedding.default)
def embedding(ctx: LowerCtx) -> Value:
    """embedding(Tensor weight, Tensor indices, SymInt padding_idx=-1, bool scale_grad_by_freq=False,
    bool sparse=False) -> Tensor: weight[indices]. padding_idx only shapes the gradient."""
    return ctx.emit("Gather", ctx.input(0), ctx.input(1), axis=0)


@lowers(aten.embedding_renorm.default)
def embedding_renorm(ctx: LowerCtx) -> Value:
    """embedding_renorm(Tensor self, Tensor indices, float max_norm, float norm_type) -> Tensor:
    rows whose ``norm_type`` norm exceeds ``max_norm`` scaled by max_norm / (norm + 1e-7), as
    ``nn.Embedding(max_norm=...)`` does before its lookup. Eager does it in place on the weight;
    the graph scales every row on each call, which gives the rows this call looks up the values
    eager uses (renormalising is idempotent), without state."""
    weight, max_norm, p = ctx.input(0), float(ctx.arg(2)), float(ctx.arg(3))
    dtype = ctx.out_dtype
    axis = ctx.const([1], torch.int64)
    powered = ctx.emit("Pow", ctx.emit("Abs", weight), ctx.const(p, dtype))
    norm = ctx.emit(
        "Pow", ctx.emit("ReduceSum", powered, axis, keepdims=1), ctx.const(1 / p, dtype)
    )
    scale = ctx.emit(
        "Div", ctx.const(max_norm, dtype), ctx.emit("Add", norm, ctx.const(1e-7, dtype))
    )
    over = ctx.emit("Greater", norm, ctx.const(max_norm, dtype))
    factor = ctx.emit("Where", over, scale, ctx.const(1.0, dtype))
    return ctx.emit("Mul", weight, factor)


@lowers(aten.embedding_bag.padding_idx, aten.embedding_bag.default)
def embedding_bag(ctx: LowerCtx) -> list[Value | None]:
    """embedding_bag.padding_idx(Tensor weight, Tensor indices, Tensor offsets,
    bool scale_grad_by_freq, int mode, bool sparse, Tensor? per_sample_weights,
    bool include_last_offset, int? padding_idx) -> (Tensor, Tensor, Tensor, Tensor)

    Only the first result (the bags) is lowered. Index j falls in bag b(j) = #{offsets <= j} - 1;
    rows are gathered, weighted, and reduced into their bag with ScatterND(reduction=add|max).
    Indices equal to padding_idx are left out (of the count too); empty bags are zero."""
    weight, indices, offsets = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    mode, psw, last, pad = ctx.arg(4), ctx.arg(6), ctx.arg(7), ctx.arg(8)
    name = ctx.node.name
    for user in ctx.node.users:
        if user.target is not operator.getitem or user.args[1] != 0:
            raise ExportError(
                f"{name}: only the first result of embedding_bag (the bags) can be exported; "
                "offset2bag, bag_size and max_indices are training bookkeeping"
            )
    if ctx.rank(indices) != 1:
        raise ExportError(
            f"{name}: embedding_bag on {ctx.rank(indices)}-D indices; only 1-D indices with "
            "offsets have a defined meaning",
            hint="call nn.EmbeddingBag / F.embedding_bag, which flatten 2-D input first",
        )
    dtype = ctx.dtype(weight)
    i64 = torch.int64
    idx = ctx.input_as(indices, i64)
    off = ctx.input_as(offsets, i64)
    if last:  # the final offset only closes the last bag
        off = ctx.emit("Slice", off, ctx.const([0], i64), ctx.const([-1], i64))
    # bag of each index: compare positions [n, 1] with offsets [1, B], count the hits
    positions = ctx.emit(
        "Range", ctx.const(0, i64), ctx.emit("Squeeze", ctx.emit("Shape", idx)), ctx.const(1, i64)
    )
    hits = ctx.emit(
        "GreaterOrEqual",
        ctx.emit("Unsqueeze", positions, ctx.const([1], i64)),
        ctx.emit("Unsqueeze", off, ctx.const([0], i64)),
    )
    bag = ctx.emit("ReduceSum", ctx.cast(hits, i64), ctx.const([1], i64), keepdims=1)
    bag = ctx.emit("Sub", bag, ctx.const(1, i64))  # [n, 1], ScatterND's index layout
    rows = ctx.emit("Gather", ctx.value(weight), idx, axis=0)  # [n, D]
    if pad is not None and pad < 0:  # ATen wraps a negative padding_idx (F.embedding_bag passes it)
        rows_total = ctx.static_shape(weight)[0]
        if rows_total is None:
            raise ExportError(f"{name}: negative padding_idx={pad} needs a static weight size")
        pad += rows_total
    keep = None  # [n, 1] float: 0 for padding indices
    if pad is not None and pad >= 0:
        is_pad = ctx.emit("Equal", idx, ctx.const(pad, i64))
        keep = ctx.emit("Unsqueeze", ctx.cast(ctx.emit("Not", is_pad), dtype), ctx.const([1], i64))
    bags = ctx.emit("Shape", off)
    out_shape = ctx.emit("Concat", bags, ctx.emit("Shape", ctx.value(weight), start=1), axis=0)
    kind = _BAG_MODES[mode]  # torch allows per_sample_weights with "sum" only
    if psw is not None:
        weights = ctx.emit("Unsqueeze", ctx.input_as(psw, dtype), ctx.const([1], i64))
        rows = ctx.emit("Mul", rows, weights)
    if kind != "max" and keep is not None:
        rows = ctx.emit("Mul", rows, keep)
    if kind == "sum":
        return [_scatter(ctx, out_shape, bag, rows, "add", 0.0), None, None, None]
    # rows per bag, padding left out: [B, 1]
    ones = ctx.emit("Expand", ctx.const([[1.0]], dtype), ctx.emit("Shape", bag))
    count_shape = ctx.emit("Concat", bags, ctx.const([1], i64), axis=0)
    count = _scatter(ctx, count_shape, bag, ones if keep is None else keep, "add", 0.0)
    if kind == "mean":
        total = _scatter(ctx, out_shape, bag, rows, "add", 0.0)
        out = ctx.emit("Div", total, ctx.emit("Max", count, ctx.const(1.0, dtype)))
    else:
        if keep is not None:
            low = ctx.const(-float("inf"), dtype)
            rows = ctx.emit("Where", ctx.emit("Equal", keep, ctx.const(0.0, dtype)), low, rows)
        top = _scatter(ctx, out_shape, bag, rows, "max", -float("inf"))
        empty = ctx.emit("Equal", count, ctx.const(0.0, dtype))
        out = ctx.emit("Where", empty, ctx.const(0.0, dtype), top)
    return [out, None, None, None]


def _scatter(ctx: LowerCtx, shape: Value, bag: Value, rows: Value, how: str, fill: float) -> Value:
    """``fill`` of ``shape``, with ``rows`` reduced into it at the ``bag`` indices."""
    init = ctx.emit("Expand", ctx.const(fill, ctx.dtype(ctx.arg(0))), shape)
    return ctx.emit("ScatterND", init, bag, rows, reduction=how)
