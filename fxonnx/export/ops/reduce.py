"""Reductions (sum, mean, extrema, arg-extrema, moments, norms, any/all), cumsum, diff and softmax
(sorting: movement.py)."""

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


def reduce_value(
    ctx: LowerCtx, op: str, value: Value, rank: int, dims: Any, keepdim: bool
) -> Value:
    """ONNX Reduce* of ``value`` over ``dims`` (None or [] = all); a 0-d input is returned."""
    if rank == 0:
        return value
    dims_value = ctx.const(axes(dims, rank), _I64)
    return ctx.emit(op, value, dims_value, keepdims=int(bool(keepdim)))


def _reduce(
    ctx: LowerCtx, op: str, dims: object, keepdim: bool, dtype: torch.dtype | None = None
) -> Value:
    x = ctx.arg(0)
    value = ctx.input_as(x, dtype or ctx.out_dtype)
    return reduce_value(ctx, op, value, ctx.rank(x), dims, keepdim)


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


@lowers(aten.prod.default, aten.prod.dim_int)
def prod(ctx: LowerCtx) -> Value:
    """prod(Tensor self, *, ScalarType? dtype); prod.dim_int(Tensor self, int dim, bool keepdim)"""
    if ctx.node.target == aten.prod.default:
        return _reduce(ctx, "ReduceProd", None, False)
    return _reduce(ctx, "ReduceProd", ctx.arg(1), ctx.arg(2))


@lowers(aten.amax.default, aten.amin.default, aten.max.default, aten.min.default)
def amax(ctx: LowerCtx) -> Value:
    """amax/amin(Tensor self, int[1] dim=[], bool keepdim=False); max/min(Tensor self)"""
    op = "ReduceMax" if ctx.node.target in (aten.amax.default, aten.max.default) else "ReduceMin"
    if ctx.node.target in (aten.max.default, aten.min.default):
        return _extreme(ctx, op, None, False)
    return _extreme(ctx, op, ctx.arg(1), ctx.arg(2))


def _extreme(ctx: LowerCtx, op: str, dims: Any, keepdim: bool) -> Value:
    """ReduceMax/ReduceMin, NaN wherever a reduced slice holds one (torch propagates NaN;
    onnxruntime's kernels drop some, depending on where they sit)."""
    x, rank = ctx.arg(0), ctx.rank(ctx.arg(0))
    out = _reduce(ctx, op, dims, keepdim)
    if rank == 0 or not ctx.out_dtype.is_floating_point:
        return out
    return nan_where_any(ctx, ctx.input_as(x, ctx.out_dtype), out, rank, dims, keepdim)


def nan_where_any(
    ctx: LowerCtx, value: Value, out: Value, rank: int, dims: Any, keepdim: bool
) -> Value:
    """``out`` (a reduction of ``value``) with NaN wherever the reduced slice holds a NaN."""
    nan = ctx.cast(ctx.emit("IsNaN", value), torch.int32)
    any_nan = ctx.cast(reduce_value(ctx, "ReduceMax", nan, rank, dims, keepdim), torch.bool)
    return ctx.emit("Where", any_nan, ctx.const(float("nan"), ctx.out_dtype), out)


def _arg_extreme(ctx: LowerCtx, op: str, dim: Any, keepdim: bool) -> Value:
    """ArgMax/ArgMin picking the first of equal values as torch does; dim None flattens. A
    NaN counts as the extreme (torch's rule): a slice holding one gives its first NaN."""
    x, rank = ctx.arg(0), ctx.rank(ctx.arg(0))
    value = ctx.value(x)
    if ctx.dtype(x) == torch.bool:
        value = ctx.cast(value, torch.int32)
    if dim is None:
        flat = ctx.emit("Reshape", value, ctx.const([-1], _I64))
        out = _first_nan_wins(ctx, op, flat, 0, 0)
        return ctx.emit("Reshape", out, ctx.const([1] * rank, _I64)) if keepdim else out
    if rank == 0:
        return ctx.const(0, _I64)
    return _first_nan_wins(ctx, op, value, dim % rank, int(bool(keepdim)))


def _first_nan_wins(ctx: LowerCtx, op: str, value: Value, axis: int, keepdims: int) -> Value:
    out = ctx.emit(op, value, axis=axis, keepdims=keepdims)
    if not ctx.dtype(ctx.arg(0)).is_floating_point:
        return out
    nan = ctx.cast(ctx.emit("IsNaN", value), torch.int32)
    first = ctx.emit("ArgMax", nan, axis=axis, keepdims=keepdims)
    any_nan = ctx.cast(
        ctx.emit("ReduceMax", nan, ctx.const([axis], _I64), keepdims=keepdims), torch.bool
    )
    return ctx.emit("Where", any_nan, first, out)


@lowers(aten.argmax.default, aten.argmin.default)
def argmax(ctx: LowerCtx) -> Value:
    """argmax/argmin(Tensor self, int? dim=None, bool keepdim=False) -> Tensor"""
    op = "ArgMax" if ctx.node.target == aten.argmax.default else "ArgMin"
    return _arg_extreme(ctx, op, ctx.arg(1), ctx.arg(2))


@lowers(aten.max.dim, aten.min.dim)
def max_dim(ctx: LowerCtx) -> list[Value]:
    """max.dim/min.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor
    indices)"""
    is_max = ctx.node.target == aten.max.dim
    dim, keepdim = ctx.arg(1), bool(ctx.arg(2))
    values = _extreme(ctx, "ReduceMax" if is_max else "ReduceMin", [dim], keepdim)
    return [values, _arg_extreme(ctx, "ArgMax" if is_max else "ArgMin", dim, keepdim)]


def _moments(ctx: LowerCtx, dims: Any, correction: Any, keepdim: bool) -> tuple[Value, Value]:
    """(var, mean) with var = sum((x - mean)^2) / (N - correction), N from the runtime shape."""
    x = ctx.arg(0)
    rank, dtype = ctx.rank(x), ctx.out_dtype
    value = ctx.input_as(x, dtype)
    chosen = axes(dims, rank)
    m = reduce_value(ctx, "ReduceMean", value, rank, chosen, True)
    centered = ctx.emit("Sub", value, m)
    sq = reduce_value(ctx, "ReduceSum", ctx.emit("Mul", centered, centered), rank, chosen, keepdim)
    sizes = [ctx.static_shape(x)[d] for d in chosen]
    if None in sizes:
        dims_shape = ctx.emit("Gather", ctx.shape_of(x), ctx.const(chosen, _I64))
        count = ctx.emit("ReduceProd", dims_shape, keepdims=0)
        count = ctx.cast(ctx.emit("Sub", count, ctx.const(correction, _I64)), dtype)
    else:
        count = ctx.const(math.prod(sizes) - correction, dtype)
    var = ctx.emit("Div", sq, count)
    if not keepdim:
        m = ctx.emit("Squeeze", m, ctx.const(chosen, _I64)) if rank else m
    return var, m


def _var_args(ctx: LowerCtx) -> tuple[Any, Any, bool]:
    """(dims, correction, keepdim) from var/std overloads: .dim has bool unbiased."""
    target = ctx.node.target
    if target._overloadname == "default":
        return None, 1 if ctx.arg(1, True) else 0, False
    if target._overloadname == "dim":
        return ctx.arg(1), 1 if ctx.arg(2, True) else 0, bool(ctx.arg(3, False))
    correction = ctx.kwarg("correction")
    return ctx.arg(1), 1 if correction is None else correction, bool(ctx.kwarg("keepdim", False))


_MOMENTS = [getattr(p, o) for p in (aten.var, aten.std) for o in ("default", "dim", "correction")]
_MOMENT_PAIRS = [
    getattr(p, o) for p in (aten.var_mean, aten.std_mean) for o in ("default", "dim", "correction")
]


@lowers(*_MOMENTS, *_MOMENT_PAIRS)
def var(ctx: LowerCtx) -> Any:
    """var/std(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False);
    var_mean/std_mean return (var or std, mean)."""
    v, m = _moments(ctx, *_var_args(ctx))
    if ctx.node.target.overloadpacket in (aten.std, aten.std_mean):
        v = ctx.emit("Sqrt", v)
    return [v, m] if ctx.node.target in _MOMENT_PAIRS else v


def vector_norm(ctx: LowerCtx, value: Value, rank: int, ord_: Any, dims: Any, keep: bool) -> Value:
    """||x||_ord over dims: ord 2 / 1 / inf / -inf / 0 / any other p."""
    ord_ = float(ord_)
    if ord_ == 2:
        return reduce_value(ctx, "ReduceL2", value, rank, dims, keep)
    if ord_ == 1:
        return reduce_value(ctx, "ReduceL1", value, rank, dims, keep)
    magnitude = ctx.emit("Abs", value)
    if math.isinf(ord_):
        op = "ReduceMax" if ord_ > 0 else "ReduceMin"
        out = reduce_value(ctx, op, magnitude, rank, dims, keep)
        return nan_where_any(ctx, magnitude, out, rank, dims, keep) if rank else out
    dtype = ctx.out_dtype
    if ord_ == 0:
        nonzero = ctx.cast(ctx.emit("Not", ctx.emit("Equal", value, ctx.const(0.0, dtype))), dtype)
        return reduce_value(ctx, "ReduceSum", nonzero, rank, dims, keep)
    powered = ctx.emit("Pow", magnitude, ctx.const(ord_, dtype))
    total = reduce_value(ctx, "ReduceSum", powered, rank, dims, keep)
    return ctx.emit("Pow", total, ctx.const(1.0 / ord_, dtype))


@lowers(aten.linalg_vector_norm.default, aten.norm.Scalar, aten.norm.ScalarOpt_dim)
def linalg_vector_norm(ctx: LowerCtx) -> Value:
    """linalg_vector_norm(Tensor self, Scalar ord=2, int[1]? dim=None, bool keepdim=False, *,
    ScalarType? dtype=None); norm.ScalarOpt_dim(Tensor self, Scalar? p, int[1] dim, bool keepdim)"""
    x = ctx.arg(0)
    ord_ = 2 if ctx.arg(1) is None else ctx.arg(1)
    value = ctx.input_as(x, ctx.out_dtype)
    return vector_norm(ctx, value, ctx.rank(x), ord_, ctx.arg(2), bool(ctx.arg(3, False)))


@lowers(aten.linalg_norm.default, aten.linalg_norm.ord_str)
def linalg_norm(ctx: LowerCtx) -> Value:
    """linalg_norm(Tensor self, Scalar? ord=None, int[1]? dim=None, bool keepdim=False, ...):
    vector norms, and the Frobenius norm of matrices"""
    x, ord_, dims, keep = ctx.arg(0), ctx.arg(1), ctx.arg(2), bool(ctx.arg(3, False))
    rank = ctx.rank(x)
    matrix = (dims is not None and len(dims) == 2) or (
        dims is None and ord_ is not None and rank == 2
    )
    if matrix and ord_ not in (None, "fro"):
        raise ExportError(f"{ctx.node.name}: matrix norm ord={ord_!r} (only 'fro' is supported)")
    ord_ = 2 if ord_ in (None, "fro") else ord_
    return vector_norm(ctx, ctx.input_as(x, ctx.out_dtype), rank, ord_, dims, keep)


@lowers(
    aten.any.default, aten.any.dim, aten.any.dims, aten.all.default, aten.all.dim, aten.all.dims
)
def any_all(ctx: LowerCtx) -> Value:
    """any/all(Tensor self, int[1]? dim=None, bool keepdim=False) -> Tensor(bool): max/min of
    (x != 0) as int32 (onnxruntime reduces no bools)"""
    x = ctx.arg(0)
    dtype = ctx.dtype(x)
    truth = ctx.value(x)
    if dtype != torch.bool:
        truth = ctx.emit("Not", ctx.emit("Equal", truth, ctx.const(0, dtype)))
    op = "ReduceMax" if ctx.node.target.overloadpacket == aten.any else "ReduceMin"
    dims = None if ctx.node.target._overloadname == "default" else ctx.arg(1)
    keep = ctx.node.target._overloadname != "default" and bool(ctx.arg(2, False))
    out = reduce_value(ctx, op, ctx.cast(truth, torch.int32), ctx.rank(x), dims, keep)
    return ctx.cast(out, torch.bool)


@lowers(aten.logsumexp.default)
def logsumexp(ctx: LowerCtx) -> Value:
    """logsumexp(Tensor self, int[1] dim, bool keepdim=False) -> Tensor: m + log(sum(exp(x - m)))
    with m the max (finite), stable for large inputs"""
    x, dims, keep = ctx.arg(0), ctx.arg(1), bool(ctx.arg(2, False))
    rank, dtype = ctx.rank(x), ctx.out_dtype
    value = ctx.input_as(x, dtype)
    m = reduce_value(ctx, "ReduceMax", value, rank, dims, True)
    m = ctx.emit("Where", ctx.emit("IsInf", m), ctx.const(0.0, dtype), m)
    total = reduce_value(
        ctx, "ReduceSum", ctx.emit("Exp", ctx.emit("Sub", value, m)), rank, dims, keep
    )
    if not keep and rank:
        m = ctx.emit("Squeeze", m, ctx.const(axes(dims, rank), _I64))
    return ctx.emit("Add", ctx.emit("Log", total), m)


@lowers(aten.cumsum.default)
def cumsum(ctx: LowerCtx) -> Value:
    """cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor"""
    x = ctx.arg(0)
    value = ctx.input_as(x, ctx.out_dtype)
    if ctx.rank(x) == 0:
        return value
    return ctx.emit("CumSum", value, ctx.const(ctx.arg(1) % ctx.rank(x), _I64))


@lowers(aten.diff.default)
def diff(ctx: LowerCtx) -> Value:
    """diff(Tensor self, int n=1, int dim=-1, Tensor? prepend=None, Tensor? append=None):
    ``prepend``, ``self`` and ``append`` joined along ``dim``, then n times x[1:] - x[:-1]
    (bool: x[1:] != x[:-1], torch's logical_xor); n = 0 returns ``self`` alone, as eager."""
    x, n, dim, prepend, append = (ctx.arg(i) for i in range(5))
    if n == 0:
        return ctx.input(0)
    rank, dtype = ctx.rank(x), ctx.out_dtype
    dim %= rank
    axis = ctx.const([dim], _I64)
    big = torch.iinfo(torch.int64).max
    op = "Xor" if dtype == torch.bool else "Sub"
    if n == 1 and append is None and prepend is not None and ctx.static_shape(prepend)[dim] == 1:
        # one prepended step (torch.diff(p, prepend=p[..., :1] - 1)): the later terms are
        # ``self`` itself, the earlier ones prepend + self[:-1]; one Slice and Concat fewer
        value = ctx.input_as(x, dtype)
        head = ctx.emit("Slice", value, ctx.const([0], _I64), ctx.const([-1], _I64), axis)
        earlier = ctx.emit("Concat", ctx.input_as(prepend, dtype), head, axis=dim)
        return ctx.emit(op, value, earlier)
    parts = [ctx.input_as(t, dtype) for t in (prepend, x, append) if t is not None]
    value = parts[0] if len(parts) == 1 else ctx.emit("Concat", *parts, axis=dim)
    for _ in range(n):
        later = ctx.emit("Slice", value, ctx.const([1], _I64), ctx.const([big], _I64), axis)
        earlier = ctx.emit("Slice", value, ctx.const([0], _I64), ctx.const([-1], _I64), axis)
        value = ctx.emit(op, later, earlier)
    return value


def _softmax(ctx: LowerCtx, op: str) -> Value:
    x = ctx.arg(0)
    rank = ctx.rank(x)
    value = ctx.input_as(x, ctx.out_dtype)
    if rank == 0:
        y = ctx.emit(op, ctx.emit("Unsqueeze", value, ctx.const([0], _I64)))
        return ctx.emit("Squeeze", y, ctx.const([0], _I64))
    return ctx.emit(op, value, axis=ctx.arg(1) % rank)


@lowers(aten.softmax.int, aten._softmax.default)
def softmax(ctx: LowerCtx) -> Value:
    """softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor"""
    return _softmax(ctx, "Softmax")


@lowers(aten._safe_softmax.default)
def safe_softmax(ctx: LowerCtx) -> Value:
    """_safe_softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor: softmax, but 0
    (not NaN) on rows that are entirely -inf (fully masked attention rows). A row is all -inf
    exactly when its max is -inf (a NaN row's max is NaN, and its softmax stays NaN, as in
    eager): one reduction over the scores and a test on the row maxima, where testing every
    score and casting the mask took two more passes over [batch, heads, seq, seq]."""
    y = _softmax(ctx, "Softmax")
    x, dtype = ctx.arg(0), ctx.out_dtype
    rank = ctx.rank(x)
    if rank == 0:
        return y
    value = ctx.input_as(x, dtype)
    row_max = reduce_value(ctx, "ReduceMax", value, rank, [ctx.arg(1)], True)
    all_masked = ctx.emit("IsInf", row_max, detect_positive=0)
    return ctx.emit("Where", all_masked, ctx.const(0.0, dtype), y)


@lowers(aten.log_softmax.int, aten._log_softmax.default)
def log_softmax(ctx: LowerCtx) -> Value:
    """log_softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor"""
    return _softmax(ctx, "LogSoftmax")
