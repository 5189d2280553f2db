"""Element-wise math functions: exp/log families, trigonometry, rounding, inf/NaN handling,
and the fused forms lerp, addcmul, addcdiv, xlogy, atan2."""

from __future__ import annotations

import math

import torch

from .._ctx import LowerCtx, Value
from .._registry import lowers
from ._common import promoted

aten = torch.ops.aten

_UNARY = {
    aten.exp.default: "Exp",
    aten.log.default: "Log",
    aten.sqrt.default: "Sqrt",
    aten.neg.default: "Neg",
    aten.abs.default: "Abs",
    aten.sin.default: "Sin",
    aten.cos.default: "Cos",
    aten.tan.default: "Tan",
    aten.asin.default: "Asin",
    aten.acos.default: "Acos",
    aten.atan.default: "Atan",
    aten.sinh.default: "Sinh",
    aten.cosh.default: "Cosh",
    aten.asinh.default: "Asinh",
    aten.acosh.default: "Acosh",
    aten.atanh.default: "Atanh",
    aten.erf.default: "Erf",
    aten.floor.default: "Floor",
    aten.ceil.default: "Ceil",
    aten.round.default: "Round",
    aten.reciprocal.default: "Reciprocal",
}
_ROUNDING = {"Floor", "Ceil", "Round"}


@lowers(*_UNARY)
def unary(ctx: LowerCtx) -> Value:
    """exp/log/sqrt/sin/...(Tensor self) -> Tensor: integer inputs of float functions are cast
    first (torch promotes them); rounding an integer tensor is the identity."""
    op = _UNARY[ctx.node.target]
    if op in _ROUNDING and not ctx.out_dtype.is_floating_point:
        return ctx.input(0)
    return ctx.emit(op, ctx.input_as(ctx.arg(0), ctx.out_dtype))


@lowers(aten.sign.default, aten.sgn.default)
def sign(ctx: LowerCtx) -> Value:
    """sign/sgn(Tensor self) -> Tensor: -1, 0 or 1; torch gives 0 for NaN, ONNX Sign NaN"""
    x, dtype = _x(ctx)
    if not dtype.is_floating_point:
        return ctx.emit("Sign", x) if dtype != torch.bool else x
    return ctx.emit("Where", ctx.emit("IsNaN", x), ctx.const(0.0, dtype), ctx.emit("Sign", x))


def _x(ctx: LowerCtx) -> tuple[Value, torch.dtype]:
    return ctx.input_as(ctx.arg(0), ctx.out_dtype), ctx.out_dtype


@lowers(aten.square.default)
def square(ctx: LowerCtx) -> Value:
    """square(Tensor self) -> Tensor"""
    x, _ = _x(ctx)
    return ctx.emit("Mul", x, x)


@lowers(aten.log1p.default, aten.special_log1p.default)
def log1p(ctx: LowerCtx) -> Value:
    """log1p(Tensor self) -> Tensor: log(u) * x / (u - 1) with u = 1 + x, exact where 1 + x
    rounds (Goldberg's trick), x itself where u == 1"""
    x, dtype = _x(ctx)
    u = ctx.emit("Add", x, ctx.const(1.0, dtype))
    um1 = ctx.emit("Sub", u, ctx.const(1.0, dtype))
    ratio = ctx.emit(
        "Div",
        x,
        ctx.emit(
            "Where", ctx.emit("Equal", um1, ctx.const(0.0, dtype)), ctx.const(1.0, dtype), um1
        ),
    )
    precise = ctx.emit("Mul", ctx.emit("Log", u), ratio)
    huge = ctx.emit("IsInf", u, detect_negative=0)  # log(inf) * inf / inf would be NaN
    precise = ctx.emit("Where", huge, u, precise)
    return ctx.emit("Where", ctx.emit("Equal", u, ctx.const(1.0, dtype)), x, precise)


@lowers(aten.expm1.default, aten.special_expm1.default)
def expm1(ctx: LowerCtx) -> Value:
    """expm1(Tensor self) -> Tensor: exp(x) - 1 (absolute error ~1 ulp of 1)"""
    x, dtype = _x(ctx)
    return ctx.emit("Sub", ctx.emit("Exp", x), ctx.const(1.0, dtype))


@lowers(aten.exp2.default, aten.special_exp2.default)
def exp2(ctx: LowerCtx) -> Value:
    """exp2(Tensor self) -> Tensor: 2 ** x"""
    x, dtype = _x(ctx)
    return ctx.emit("Pow", ctx.const(2.0, dtype), x)


@lowers(aten.log2.default, aten.log10.default)
def log_base(ctx: LowerCtx) -> Value:
    """log2/log10(Tensor self) -> Tensor: log(x) / log(base)"""
    x, dtype = _x(ctx)
    base = 2.0 if ctx.node.target == aten.log2.default else 10.0
    return ctx.emit("Div", ctx.emit("Log", x), ctx.const(math.log(base), dtype))


@lowers(aten.round.decimals)
def round_decimals(ctx: LowerCtx) -> Value:
    """round.decimals(Tensor self, *, int decimals) -> Tensor: round(x * 10^d) / 10^d, ties to
    even, as torch computes it"""
    x, dtype = _x(ctx)
    scale = ctx.const(10.0 ** ctx.kwarg("decimals", 0), dtype)
    return ctx.emit("Div", ctx.emit("Round", ctx.emit("Mul", x, scale)), scale)


def trunc_value(ctx: LowerCtx, x: Value, dtype: torch.dtype) -> Value:
    negative = ctx.emit("Less", x, ctx.const(0.0, dtype))
    return ctx.emit("Where", negative, ctx.emit("Ceil", x), ctx.emit("Floor", x))


@lowers(aten.trunc.default, aten.fix.default, aten.frac.default)
def trunc(ctx: LowerCtx) -> Value:
    """trunc/fix(Tensor self) -> Tensor (toward zero); frac(Tensor self): x - trunc(x)"""
    x, dtype = _x(ctx)
    if not dtype.is_floating_point:
        return x if ctx.node.target != aten.frac.default else ctx.emit("Sub", x, x)
    t = trunc_value(ctx, x, dtype)
    return ctx.emit("Sub", x, t) if ctx.node.target == aten.frac.default else t


@lowers(aten.isnan.default)
def isnan(ctx: LowerCtx) -> Value:
    """isnan(Tensor self) -> Tensor(bool); never true for integers"""
    if not ctx.dtype(ctx.arg(0)).is_floating_point:
        return ctx.emit("Expand", ctx.const(False, torch.bool), ctx.shape_of(ctx.arg(0)))
    return ctx.emit("IsNaN", ctx.input(0))


_INF = {
    aten.isinf.default: (1, 1),
    aten.isposinf.default: (1, 0),
    aten.isneginf.default: (0, 1),
}


@lowers(*_INF, aten.isfinite.default)
def isinf(ctx: LowerCtx) -> Value:
    """isinf/isposinf/isneginf/isfinite(Tensor self) -> Tensor(bool)"""
    x = ctx.input(0)
    if not ctx.dtype(ctx.arg(0)).is_floating_point:
        finite = ctx.node.target == aten.isfinite.default
        return ctx.emit("Expand", ctx.const(finite, torch.bool), ctx.shape_of(ctx.arg(0)))
    if ctx.node.target == aten.isfinite.default:
        return ctx.emit("Not", ctx.emit("Or", ctx.emit("IsInf", x), ctx.emit("IsNaN", x)))
    pos, neg = _INF[ctx.node.target]
    return ctx.emit("IsInf", x, detect_positive=pos, detect_negative=neg)


@lowers(aten.nan_to_num.default)
def nan_to_num(ctx: LowerCtx) -> Value:
    """nan_to_num(Tensor self, float? nan=None, float? posinf=None, float? neginf=None): NaN ->
    nan (0), +inf -> posinf (dtype max), -inf -> neginf (dtype min)"""
    x, dtype = _x(ctx)
    if not dtype.is_floating_point:
        return x
    info = torch.finfo(dtype)
    nan, pos, neg = ctx.arg(1), ctx.arg(2), ctx.arg(3)
    y = ctx.emit("Where", ctx.emit("IsNaN", x), ctx.const(0.0 if nan is None else nan, dtype), x)
    y = ctx.emit(
        "Where",
        ctx.emit("IsInf", x, detect_negative=0),
        ctx.const(info.max if pos is None else pos, dtype),
        y,
    )
    return ctx.emit(
        "Where",
        ctx.emit("IsInf", x, detect_positive=0),
        ctx.const(info.min if neg is None else neg, dtype),
        y,
    )


@lowers(aten.atan2.default)
def atan2(ctx: LowerCtx) -> Value:
    """atan2(Tensor self, Tensor other) -> Tensor: atan(y / x), moved by +-pi for x < 0;
    sign(y) pi / 2 where x == 0"""
    dtype = ctx.out_dtype
    y, x = promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=dtype)
    zero = ctx.const(0.0, dtype)
    base = ctx.emit("Atan", ctx.emit("Div", y, x))
    turn = ctx.emit(
        "Where", ctx.emit("Less", y, zero), ctx.const(-math.pi, dtype), ctx.const(math.pi, dtype)
    )
    out = ctx.emit("Where", ctx.emit("Less", x, zero), ctx.emit("Add", base, turn), base)
    axis = ctx.emit("Mul", ctx.emit("Sign", y), ctx.const(math.pi / 2, dtype))
    return ctx.emit("Where", ctx.emit("Equal", x, zero), axis, out)


@lowers(aten.lerp.Scalar, aten.lerp.Tensor)
def lerp(ctx: LowerCtx) -> Value:
    """lerp(Tensor self, Tensor end, Scalar|Tensor weight) -> Tensor: self + w (end - self)"""
    start, end, weight = promoted(ctx, ctx.arg(0), ctx.arg(1), ctx.arg(2), dtype=ctx.out_dtype)
    return ctx.emit("Add", start, ctx.emit("Mul", weight, ctx.emit("Sub", end, start)))


@lowers(aten.addcmul.default, aten.addcdiv.default)
def addcmul(ctx: LowerCtx) -> Value:
    """addcmul/addcdiv(Tensor self, Tensor tensor1, Tensor tensor2, *, Scalar value=1):
    self + value * t1 * t2 (or t1 / t2)"""
    dtype = ctx.out_dtype
    base, t1, t2 = promoted(ctx, ctx.arg(0), ctx.arg(1), ctx.arg(2), dtype=dtype)
    op = "Mul" if ctx.node.target == aten.addcmul.default else "Div"
    term = ctx.emit(op, t1, t2)
    value = ctx.kwarg("value", 1)
    if value != 1:
        term = ctx.emit("Mul", term, ctx.const(value, dtype))
    return ctx.emit("Add", base, term)


@lowers(
    aten.xlogy.Tensor,
    aten.xlogy.Scalar_Other,
    aten.xlogy.Scalar_Self,
    aten.special_xlogy.default,
)
def xlogy(ctx: LowerCtx) -> Value:
    """xlogy(Tensor self, Tensor other) -> Tensor: 0 where x == 0 (unless y is NaN), else
    x * log(y)"""
    dtype = ctx.out_dtype
    x, y = promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=dtype)
    zero = ctx.const(0.0, dtype)
    keep_zero = ctx.emit("And", ctx.emit("Equal", x, zero), ctx.emit("Not", ctx.emit("IsNaN", y)))
    return ctx.emit("Where", keep_zero, zero, ctx.emit("Mul", x, ctx.emit("Log", y)))
