"""Element-wise arithmetic, comparisons, logic and casts (activations: activation.py)."""

from __future__ import annotations

import torch

from .._ctx import LowerCtx, Value
from .._dtypes import onnx_dtype
from .._registry import lowers
from ._common import promoted, result_type

aten = torch.ops.aten


def binary(ctx: LowerCtx, onnx_op: str, a: object, b: object) -> Value:
    """``onnx_op`` over both operands cast to the node's result dtype."""
    x, y = promoted(ctx, a, b, dtype=ctx.out_dtype)
    return ctx.emit(onnx_op, x, y)


def _times_alpha(ctx: LowerCtx, b: object, alpha: object) -> Value:
    y = ctx.input_as(b, ctx.out_dtype)
    return y if alpha in (None, 1) else ctx.emit("Mul", y, ctx.const(alpha, ctx.out_dtype))


@lowers(aten.add.Tensor, aten.add.Scalar)
def add(ctx: LowerCtx) -> Value:
    """add(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor (bool + bool is or; with
    alpha=False, self broadcast against other)"""
    if ctx.out_dtype == torch.bool:
        if not ctx.kwarg("alpha", 1):  # self + False * other
            x, y = promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=torch.bool)
            return ctx.emit("Or", x, ctx.emit("And", y, ctx.const(False, torch.bool)))
        return binary(ctx, "Or", ctx.arg(0), ctx.arg(1))
    x = ctx.input_as(ctx.arg(0), ctx.out_dtype)
    return ctx.emit("Add", x, _times_alpha(ctx, ctx.arg(1), ctx.kwarg("alpha", 1)))


@lowers(aten.sub.Tensor, aten.sub.Scalar, aten.subtract.Tensor, aten.subtract.Scalar)
def sub(ctx: LowerCtx) -> Value:
    """sub(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor (and its alias subtract)"""
    x = ctx.input_as(ctx.arg(0), ctx.out_dtype)
    return ctx.emit("Sub", x, _times_alpha(ctx, ctx.arg(1), ctx.kwarg("alpha", 1)))


@lowers(aten.rsub.Scalar, aten.rsub.Tensor)
def rsub(ctx: LowerCtx) -> Value:
    """rsub(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor: other - alpha * self"""
    y = ctx.input_as(ctx.arg(1), ctx.out_dtype)
    return ctx.emit("Sub", y, _times_alpha(ctx, ctx.arg(0), ctx.kwarg("alpha", 1)))


@lowers(aten.mul.Tensor, aten.mul.Scalar)
def mul(ctx: LowerCtx) -> Value:
    """mul(Tensor self, Tensor other) -> Tensor (bool * bool is logical and)"""
    if ctx.out_dtype == torch.bool:
        return binary(ctx, "And", ctx.arg(0), ctx.arg(1))
    return binary(ctx, "Mul", ctx.arg(0), ctx.arg(1))


def _floor_of_int_division(ctx: LowerCtx, x: Value, y: Value) -> Value:
    """ONNX integer Div truncates toward zero; floor differs when the signs differ and the
    division is inexact."""
    dtype = ctx.out_dtype
    zero = ctx.const(0, dtype)
    q = ctx.emit("Div", x, y)
    inexact = ctx.emit("Not", ctx.emit("Equal", ctx.emit("Mul", q, y), x))
    signs_differ = ctx.emit("Xor", ctx.emit("Less", x, zero), ctx.emit("Less", y, zero))
    fix = ctx.emit("Cast", ctx.emit("And", inexact, signs_differ), to=onnx_dtype(dtype))
    return ctx.emit("Sub", q, fix)


def _trunc(ctx: LowerCtx, q: Value) -> Value:
    negative = ctx.emit("Less", q, ctx.const(0, ctx.out_dtype))
    return ctx.emit("Where", negative, ctx.emit("Ceil", q), ctx.emit("Floor", q))


@lowers(aten.div.Tensor, aten.div.Scalar, aten.div.Tensor_mode, aten.div.Scalar_mode)
@lowers(aten.divide.Tensor, aten.divide.Scalar, aten.divide.Tensor_mode, aten.divide.Scalar_mode)
def div(ctx: LowerCtx) -> Value:
    """div(Tensor self, Tensor other, *, str? rounding_mode=None) -> Tensor (and its alias
    divide)"""
    mode = ctx.kwarg("rounding_mode")
    if mode is None or not ctx.out_dtype.is_floating_point and mode == "trunc":
        return binary(ctx, "Div", ctx.arg(0), ctx.arg(1))
    if ctx.out_dtype.is_floating_point:
        q = binary(ctx, "Div", ctx.arg(0), ctx.arg(1))
        return ctx.emit("Floor", q) if mode == "floor" else _trunc(ctx, q)
    return _floor_of_int_division(ctx, *promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=ctx.out_dtype))


@lowers(aten.floor_divide.default, aten.floor_divide.Scalar)
def floor_divide(ctx: LowerCtx) -> Value:
    """floor_divide(Tensor self, Tensor other) -> Tensor"""
    if ctx.out_dtype.is_floating_point:
        return ctx.emit("Floor", binary(ctx, "Div", ctx.arg(0), ctx.arg(1)))
    return _floor_of_int_division(ctx, *promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=ctx.out_dtype))


@lowers(aten.remainder.Tensor, aten.remainder.Scalar)
def remainder(ctx: LowerCtx) -> Value:
    """remainder(Tensor self, Tensor other) -> Tensor: x - floor(x / y) * y (Python's %)"""
    x, y = promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=ctx.out_dtype)
    if not ctx.out_dtype.is_floating_point:
        return ctx.emit("Mod", x, y)  # fmod=0 takes the divisor's sign for integers
    return ctx.emit("Sub", x, ctx.emit("Mul", ctx.emit("Floor", ctx.emit("Div", x, y)), y))


@lowers(aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor, aten.pow.Scalar)
def pow_(ctx: LowerCtx) -> Value:
    """pow(Tensor self, Scalar exponent) -> Tensor"""
    return binary(ctx, "Pow", ctx.arg(0), ctx.arg(1))


@lowers(aten.rsqrt.default)
def rsqrt(ctx: LowerCtx) -> Value:
    """rsqrt(Tensor self) -> Tensor: integer and bool inputs are cast to the float result"""
    return ctx.emit("Reciprocal", ctx.emit("Sqrt", ctx.input_as(ctx.arg(0), ctx.out_dtype)))


@lowers(aten.maximum.default, aten.minimum.default, aten.max.other, aten.min.other)
def min_max(ctx: LowerCtx) -> Value:
    """maximum/minimum(Tensor self, Tensor other) -> Tensor; max/min.other are the same"""
    op = "Max" if ctx.node.target in (aten.maximum.default, aten.max.other) else "Min"
    return binary(ctx, op, ctx.arg(0), ctx.arg(1))


def _clip(ctx: LowerCtx, x: object, lo: object, hi: object) -> Value:
    dtype = ctx.out_dtype
    value = ctx.input_as(x, dtype)
    bounds = [None if b is None else ctx.input_as(b, dtype) for b in (lo, hi)]
    if all(b is None or isinstance(b, (int, float)) for b in (lo, hi)):
        return ctx.emit("Clip", value, *bounds)
    out = value if bounds[0] is None else ctx.emit("Max", value, bounds[0])
    return out if bounds[1] is None else ctx.emit("Min", out, bounds[1])


@lowers(aten.clamp.default, aten.clamp.Tensor, aten.clip.default)
def clamp(ctx: LowerCtx) -> Value:
    """clamp(Tensor self, Scalar? min=None, Scalar? max=None) -> Tensor"""
    return _clip(ctx, ctx.arg(0), ctx.arg(1), ctx.arg(2))


@lowers(aten.clamp_min.default, aten.clamp_min.Tensor)
def clamp_min(ctx: LowerCtx) -> Value:
    """clamp_min(Tensor self, Scalar min) -> Tensor"""
    return _clip(ctx, ctx.arg(0), ctx.arg(1), None)


@lowers(aten.clamp_max.default, aten.clamp_max.Tensor)
def clamp_max(ctx: LowerCtx) -> Value:
    """clamp_max(Tensor self, Scalar max) -> Tensor"""
    return _clip(ctx, ctx.arg(0), None, ctx.arg(1))


_COMPARISONS = {
    aten.eq: ("Equal", False),
    aten.ne: ("Equal", True),
    aten.lt: ("Less", False),
    aten.le: ("LessOrEqual", False),
    aten.gt: ("Greater", False),
    aten.ge: ("GreaterOrEqual", False),
}


@lowers(*(getattr(p, o) for p in _COMPARISONS for o in ("Tensor", "Scalar")))
def compare(ctx: LowerCtx) -> Value:
    """eq/ne/lt/le/gt/ge(Tensor self, Tensor|Scalar other) -> Tensor(bool)"""
    onnx_op, negate = _COMPARISONS[ctx.node.target.overloadpacket]
    a, b = ctx.arg(0), ctx.arg(1)
    out = ctx.emit(onnx_op, *promoted(ctx, a, b, dtype=result_type(ctx, a, b)))
    return ctx.emit("Not", out) if negate else out


_LOGICAL = {
    aten.logical_and.default: "And",
    aten.logical_or.default: "Or",
    aten.logical_xor.default: "Xor",
}
_BITWISE = {
    **{getattr(aten.bitwise_and, o): "And" for o in ("Tensor", "Scalar")},
    **{getattr(aten.bitwise_or, o): "Or" for o in ("Tensor", "Scalar")},
    **{getattr(aten.bitwise_xor, o): "Xor" for o in ("Tensor", "Scalar")},
    **{getattr(aten.__and__, o): "And" for o in ("Tensor", "Scalar")},
    **{getattr(aten.__or__, o): "Or" for o in ("Tensor", "Scalar")},
    **{getattr(aten.__xor__, o): "Xor" for o in ("Tensor", "Scalar")},
}


@lowers(*_LOGICAL)
def logical(ctx: LowerCtx) -> Value:
    """logical_and/or/xor(Tensor self, Tensor other) -> Tensor(bool)"""
    values = promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=torch.bool)
    return ctx.emit(_LOGICAL[ctx.node.target], *values)


@lowers(aten.logical_not.default)
def logical_not(ctx: LowerCtx) -> Value:
    """logical_not(Tensor self) -> Tensor(bool)"""
    return ctx.emit("Not", ctx.input_as(ctx.arg(0), torch.bool))


@lowers(*_BITWISE)
def bitwise(ctx: LowerCtx) -> Value:
    """bitwise_and/or/xor(Tensor self, Tensor|Scalar other) -> Tensor, and &, |, ^: logical on
    bools, ONNX Bitwise* on integers"""
    op = _BITWISE[ctx.node.target]
    if ctx.out_dtype == torch.bool:
        return binary(ctx, op, ctx.arg(0), ctx.arg(1))
    return binary(ctx, "Bitwise" + op, ctx.arg(0), ctx.arg(1))


@lowers(aten.bitwise_not.default)
def bitwise_not(ctx: LowerCtx) -> Value:
    """bitwise_not(Tensor self) -> Tensor: Not on bools, BitwiseNot on integers"""
    return ctx.emit("Not" if ctx.out_dtype == torch.bool else "BitwiseNot", ctx.input(0))


_SHIFTS = {
    aten.__lshift__.Tensor: True,
    aten.__lshift__.Scalar: True,
    aten.bitwise_left_shift.Tensor: True,
    aten.bitwise_left_shift.Tensor_Scalar: True,
    aten.__rshift__.Tensor: False,
    aten.__rshift__.Scalar: False,
    aten.bitwise_right_shift.Tensor: False,
    aten.bitwise_right_shift.Tensor_Scalar: False,
}


@lowers(*_SHIFTS)
def shift(ctx: LowerCtx) -> Value:
    """__lshift__/__rshift__(Tensor self, Tensor|Scalar other) -> Tensor. ONNX BitShift is
    unsigned-only, so x << n is x * 2^n and x >> n is floor(x / 2^n) (arithmetic shift)."""
    x, n = promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=ctx.out_dtype)
    factor = ctx.emit("Pow", ctx.const(2, ctx.out_dtype), n)
    if _SHIFTS[ctx.node.target]:
        return ctx.emit("Mul", x, factor)
    return _floor_of_int_division(ctx, x, factor)


@lowers(aten.fmod.Tensor, aten.fmod.Scalar)
def fmod(ctx: LowerCtx) -> Value:
    """fmod(Tensor self, Tensor|Scalar other) -> Tensor: C's fmod, the sign of the dividend"""
    return ctx.emit("Mod", *promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=ctx.out_dtype), fmod=1)


@lowers(aten.where.self, aten.where.ScalarOther, aten.where.ScalarSelf, aten.where.Scalar)
def where(ctx: LowerCtx) -> Value:
    """where(Tensor condition, Tensor self, Tensor other) -> Tensor"""
    cond = ctx.input_as(ctx.arg(0), torch.bool)
    return ctx.emit("Where", cond, *promoted(ctx, ctx.arg(1), ctx.arg(2), dtype=ctx.out_dtype))


@lowers(
    aten._to_copy.default, aten.to.dtype, aten.to.dtype_layout, aten.to.device, aten.type_as.default
)
def to_dtype(ctx: LowerCtx) -> Value:
    """_to_copy(Tensor self, *, ScalarType? dtype=None, ...) -> Tensor: a Cast, or nothing"""
    return ctx.cast(ctx.input(0), ctx.out_dtype, ctx.dtype(ctx.arg(0)))
