"""Scaled dot-product attention: softmax(q k^T * scale + mask) v.

Below opset 23 it is MatMul/Softmax/MatMul; from opset 23 the standard ``Attention`` op for 4-D
inputs, which onnxruntime 1.31 runs as one CPU kernel (checked against eager in
tests/export/test_attention.py; about as fast as the MatMul/Softmax form there).
Either way a query row whose keys are all masked out gives zeros, as eager's kernels do, not NaN.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten
_I64 = torch.int64


@lowers(aten.scaled_dot_product_attention.default)
def scaled_dot_product_attention(ctx: LowerCtx) -> Value:
    """scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None,
    float dropout_p=0.0, bool is_causal=False, *, float? scale=None, bool enable_gqa=False)
    -> Tensor. q [..., L, E], k [..., S, E], v [..., S, Ev]; a bool mask keeps True entries, a
    float mask is added to the scores; is_causal keeps j <= i (top-left aligned)."""
    q, k, v, mask, dropout_p, is_causal = (ctx.arg(i) for i in range(6))
    scale, gqa = ctx.kwarg("scale"), ctx.kwarg("enable_gqa", False)
    if dropout_p:
        raise ExportError(
            f"{ctx.node.name}: attention with dropout_p={dropout_p} is random; ONNX export needs "
            "dropout_p=0",
            hint="call model.eval() (nn.MultiheadAttention passes dropout only in training), "
            "or pass dropout_p=0.0 outside training",
        )
    if is_causal and mask is not None:  # eager's math kernel refuses this too
        raise ExportError(f"{ctx.node.name}: attention with both attn_mask and is_causal=True")
    dtype = ctx.dtype(q)
    ranks = {ctx.rank(x) for x in (q, k, v)}
    embed = ctx.static_shape(q)[-1]
    if scale is None and embed is not None:
        scale = 1.0 / math.sqrt(embed)
    kv = [ctx.value(k), ctx.value(v)]
    if ctx.opset >= 23 and ranks == {4} and scale is not None:
        # Attention groups query heads over key/value heads (enable_gqa) itself
        out = _attention_op(ctx, kv, mask, bool(is_causal), float(scale))
    else:
        if gqa:
            kv = [_repeat_heads(ctx, t, x) for t, x in zip(kv, (k, v), strict=True)]
        query = ctx.emit("Mul", ctx.input(0), _scale(ctx, scale, dtype))
        perm = list(range(ctx.rank(k) - 2)) + [ctx.rank(k) - 1, ctx.rank(k) - 2]
        scores = ctx.emit("MatMul", query, ctx.emit("Transpose", kv[0], perm=perm))
        if mask is not None and ctx.dtype(mask) == torch.bool:
            scores = ctx.emit("Where", ctx.value(mask), scores, ctx.const(-math.inf, dtype))
        elif mask is not None:
            scores = ctx.emit("Add", scores, ctx.input_as(mask, dtype))
        elif is_causal:
            scores = ctx.emit("Add", scores, _causal(ctx, dtype))
        out = ctx.emit("MatMul", ctx.emit("Softmax", scores, axis=-1), kv[1])
    return out if mask is None else _zero_masked_rows(ctx, out, mask, dtype)


def _scale(ctx: LowerCtx, scale: float | None, dtype: torch.dtype) -> Value:
    """The score scale; None stands for 1/sqrt(E) of a dynamic E, read at run time."""
    if scale is not None:
        return ctx.const(scale, dtype)
    rank = ctx.rank(ctx.arg(0))
    size = ctx.cast(ctx.shape_of(ctx.arg(0), rank - 1, rank), dtype, torch.int64)
    return ctx.emit("Reciprocal", ctx.emit("Sqrt", size))


def _repeat_heads(ctx: LowerCtx, value: Value, x: Any) -> Value:
    """Grouped-query attention: each key/value head (dim -3) repeated Hq / Hkv times in place,
    as ``repeat_interleave``; the head counts are read at run time when they are dynamic."""
    q = ctx.arg(0)
    if ctx.val(q).shape[-3] == ctx.val(x).shape[-3]:
        return value
    rank, rank_q = ctx.rank(x), ctx.rank(q)
    q_heads, kv_heads = ctx.static_shape(q)[-3], ctx.static_shape(x)[-3]
    if q_heads is not None and kv_heads is not None:
        heads, group = ctx.const([q_heads], _I64), ctx.const([q_heads // kv_heads], _I64)
    else:
        heads = ctx.shape_of(q, rank_q - 3, rank_q - 2)
        group = ctx.emit("Div", heads, ctx.shape_of(x, rank - 3, rank - 2))
    grown = ctx.emit("Unsqueeze", value, ctx.const([rank - 2], _I64))  # [..., Hkv, 1, S, E]
    repeats = ctx.emit("Concat", group, ctx.const([1, 1], _I64), axis=0)
    grown = ctx.emit("Expand", grown, repeats)
    shape = ctx.emit(
        "Concat", ctx.shape_of(x, 0, rank - 3), heads, ctx.shape_of(x, rank - 2), axis=0
    )
    return ctx.emit("Reshape", grown, shape)


def _causal(ctx: LowerCtx, dtype: torch.dtype) -> Value:
    """[L, S] additive mask, -inf above the diagonal (j > i)."""
    q, k = ctx.arg(0), ctx.arg(1)
    length, source = ctx.static_shape(q)[-2], ctx.static_shape(k)[-2]
    if length is not None and source is not None:
        keep = torch.ones(length, source, dtype=torch.bool).tril()
        return ctx.const(torch.zeros(length, source, dtype=dtype).masked_fill(~keep, -math.inf))
    rq, rk = ctx.rank(q), ctx.rank(k)
    shape = ctx.emit(
        "Concat", ctx.shape_of(q, rq - 2, rq - 1), ctx.shape_of(k, rk - 2, rk - 1), axis=0
    )
    low = ctx.emit("Expand", ctx.const(-math.inf, dtype), shape)
    return ctx.emit("Trilu", low, ctx.const(1, _I64), upper=1)


def _attention_op(ctx: LowerCtx, kv: list[Value], mask: Any, causal: bool, scale: float) -> Value:
    """The opset-23 Attention op on [B, H, L, E] inputs. onnxruntime wants the mask's
    query-length dim in full, so a mask broadcast over the queries is expanded first."""
    attn_mask = None
    if mask is not None:
        attn_mask = ctx.value(mask)
        shape = ctx.static_shape(mask)
        length = ctx.static_shape(ctx.arg(0))[-2]
        if len(shape) < 2 or shape[-2] != length or length is None:
            rows = ctx.emit("Concat", ctx.shape_of(ctx.arg(0), 2, 3), ctx.const([1], _I64), axis=0)
            attn_mask = ctx.emit("Expand", attn_mask, rows)
    return ctx.emit(
        "Attention", ctx.input(0), kv[0], kv[1], attn_mask, is_causal=int(causal), scale=scale
    )


def _zero_masked_rows(ctx: LowerCtx, out: Value, mask: Any, dtype: torch.dtype) -> Value:
    """Zeros for query rows whose every key is masked out (their softmax is 0/0), as eager gives.
    Decided on the mask, which is usually far smaller than the scores."""
    last = ctx.const([-1], _I64)
    if ctx.dtype(mask) == torch.bool and ctx.opset >= 20:  # ReduceMax takes bool from 20
        anyone = ctx.emit("ReduceMax", ctx.value(mask), last, keepdims=1)
        return ctx.emit("Where", anyone, out, ctx.const(0.0, dtype))
    if ctx.dtype(mask) == torch.bool:
        anyone = ctx.emit("ReduceMax", ctx.cast(ctx.value(mask), torch.int32), last, keepdims=1)
        dead = ctx.emit("Equal", anyone, ctx.const(0, torch.int32))
    else:
        top = ctx.emit("ReduceMax", ctx.input_as(mask, dtype), last, keepdims=1)
        dead = ctx.emit("Equal", top, ctx.const(-math.inf, dtype))
    return ctx.emit("Where", dead, ctx.const(0.0, dtype), out)
