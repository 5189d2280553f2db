"""Reductions and softmax."""

from __future__ import annotations

import torch

from .._ctx import LowerCtx, Value
from .._registry import lowers
from ._common import axes

aten = torch.ops.aten


def _reduce(
    ctx: LowerCtx, op: str, dims: object, keepdim: bool, dtype: torch.dtype | None = None
) -> Value:
    x = ctx.arg(0)
    value = ctx.input_as(x, dtype or ctx.out_dtype)
    rank = ctx.rank(x)
    if rank == 0:
        return value
    return ctx.emit(
        op, value, ctx.const(axes(dims, rank), torch.int64), keepdims=int(bool(keepdim))
    )


@lowers(aten.mean.dim, aten.mean.default)
def mean(ctx: LowerCtx) -> Value:
    """mean(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    if ctx.node.target == aten.mean.default:
        return _reduce(ctx, "ReduceMean", None, False)
    return _reduce(ctx, "ReduceMean", ctx.arg(1), ctx.arg(2))


@lowers(aten.sum.dim_IntList, aten.sum.default)
def sum_(ctx: LowerCtx) -> Value:
    """sum(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor"""
    if ctx.node.target == aten.sum.default:
        return _reduce(ctx, "ReduceSum", None, False)
    return _reduce(ctx, "ReduceSum", ctx.arg(1), ctx.arg(2))


@lowers(aten.amax.default, aten.amin.default)
def amax(ctx: LowerCtx) -> Value:
    """amax/amin(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor"""
    op = "ReduceMax" if ctx.node.target == aten.amax.default else "ReduceMin"
    return _reduce(ctx, op, ctx.arg(1), ctx.arg(2))


def _softmax(ctx: LowerCtx, op: str) -> Value:
    x = ctx.arg(0)
    rank = ctx.rank(x)
    value = ctx.input_as(x, ctx.out_dtype)
    if rank == 0:
        return ctx.emit(op, ctx.emit("Unsqueeze", value, ctx.const([0], torch.int64)))
    return ctx.emit(op, value, axis=ctx.arg(1) % rank)


@lowers(aten.softmax.int, aten._softmax.default, aten._safe_softmax.default)
def softmax(ctx: LowerCtx) -> Value:
    """softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor"""
    return _softmax(ctx, "Softmax")


@lowers(aten.log_softmax.int, aten._log_softmax.default)
def log_softmax(ctx: LowerCtx) -> Value:
    """log_softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor"""
    return _softmax(ctx, "LogSoftmax")
