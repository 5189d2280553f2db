"""Element-wise arithmetic, activations, comparisons, logic and casts."""

from __future__ import annotations

import torch

from .._ctx import LowerCtx, Value
from .._dtypes import onnx_dtype
from .._registry import lowers, one_to_one
from ._common import promoted, result_type

aten = torch.ops.aten

one_to_one(
    {
        aten.relu.default: "Relu",
        aten.sigmoid.default: "Sigmoid",
        aten.tanh.default: "Tanh",
        aten.exp.default: "Exp",
        aten.log.default: "Log",
        aten.sqrt.default: "Sqrt",
        aten.neg.default: "Neg",
        aten.abs.default: "Abs",
        aten.sin.default: "Sin",
        aten.cos.default: "Cos",
        aten.erf.default: "Erf",
        aten.floor.default: "Floor",
        aten.ceil.default: "Ceil",
        aten.sign.default: "Sign",
        aten.reciprocal.default: "Reciprocal",
        aten.logical_not.default: "Not",
        aten.softplus.default: "Softplus",
        aten.mish.default: "Mish",
    }
)


def binary(ctx: LowerCtx, onnx_op: str, a: object, b: object) -> Value:
    """``onnx_op`` over both operands cast to the node's result dtype."""
    x, y = promoted(ctx, a, b, dtype=ctx.out_dtype)
    return ctx.emit(onnx_op, x, y)


def _times_alpha(ctx: LowerCtx, b: object, alpha: object) -> Value:
    y = ctx.input_as(b, ctx.out_dtype)
    return y if alpha in (None, 1) else ctx.emit("Mul", y, ctx.const(alpha, ctx.out_dtype))


@lowers(aten.add.Tensor, aten.add.Scalar)
def add(ctx: LowerCtx) -> Value:
    """add(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"""
    x = ctx.input_as(ctx.arg(0), ctx.out_dtype)
    return ctx.emit("Add", x, _times_alpha(ctx, ctx.arg(1), ctx.kwarg("alpha", 1)))


@lowers(aten.sub.Tensor, aten.sub.Scalar)
def sub(ctx: LowerCtx) -> Value:
    """sub(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor"""
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
def div(ctx: LowerCtx) -> Value:
    """div(Tensor self, Tensor other, *, str? rounding_mode=None) -> Tensor"""
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
    """rsqrt(Tensor self) -> Tensor"""
    return ctx.emit("Reciprocal", ctx.emit("Sqrt", ctx.input(0)))


@lowers(aten.maximum.default, aten.minimum.default)
def min_max(ctx: LowerCtx) -> Value:
    """maximum/minimum(Tensor self, Tensor other) -> Tensor"""
    op = "Max" if ctx.node.target == aten.maximum.default else "Min"
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


@lowers(aten.hardtanh.default)
def hardtanh(ctx: LowerCtx) -> Value:
    """hardtanh(Tensor self, Scalar min_val=-1, Scalar max_val=1) -> Tensor"""
    return _clip(ctx, ctx.arg(0), ctx.arg(1), ctx.arg(2))


@lowers(aten.relu6.default)
def relu6(ctx: LowerCtx) -> Value:
    """relu6(Tensor self) -> Tensor"""
    return _clip(ctx, ctx.arg(0), 0, 6)


@lowers(aten.gelu.default)
def gelu(ctx: LowerCtx) -> Value:
    """gelu(Tensor self, *, str approximate='none') -> Tensor (ONNX Gelu since opset 20)"""
    return ctx.emit("Gelu", ctx.input(0), approximate=ctx.kwarg("approximate", "none"))


@lowers(aten.silu.default)
def silu(ctx: LowerCtx) -> Value:
    """silu(Tensor self) -> Tensor: x * sigmoid(x)"""
    x = ctx.input(0)
    return ctx.emit("Mul", x, ctx.emit("Sigmoid", x))


@lowers(aten.leaky_relu.default)
def leaky_relu(ctx: LowerCtx) -> Value:
    """leaky_relu(Tensor self, Scalar negative_slope=0.01) -> Tensor"""
    return ctx.emit("LeakyRelu", ctx.input(0), alpha=float(ctx.arg(1)))


@lowers(aten.hardsigmoid.default)
def hardsigmoid(ctx: LowerCtx) -> Value:
    """hardsigmoid(Tensor self) -> Tensor: clip(x / 6 + 1 / 2, 0, 1)"""
    return ctx.emit("HardSigmoid", ctx.input(0), alpha=1.0 / 6, beta=0.5)


@lowers(aten.hardswish.default)
def hardswish(ctx: LowerCtx) -> Value:
    """hardswish(Tensor self) -> Tensor"""
    return ctx.emit("HardSwish", ctx.input(0))


@lowers(aten.elu.default)
def elu(ctx: LowerCtx) -> Value:
    """elu(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1) -> Tensor"""
    alpha, scale, input_scale = ctx.arg(1), ctx.arg(2), ctx.arg(3)
    if scale == 1 and input_scale == 1:
        return ctx.emit("Elu", ctx.input(0), alpha=float(alpha))
    raise NotImplementedError("elu with scale/input_scale != 1")


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
    aten.bitwise_and.Tensor: "And",
    aten.bitwise_or.Tensor: "Or",
    aten.bitwise_xor.Tensor: "Xor",
}


@lowers(*_LOGICAL)
def logical(ctx: LowerCtx) -> Value:
    """logical_and/or/xor(Tensor self, Tensor other) -> Tensor(bool); bitwise ops on bools"""
    if ctx.node.target.overloadpacket in (aten.bitwise_and, aten.bitwise_or, aten.bitwise_xor):
        if ctx.out_dtype != torch.bool:
            op = "Bitwise" + _LOGICAL[ctx.node.target]
            return binary(ctx, op, ctx.arg(0), ctx.arg(1))
    return ctx.emit(
        _LOGICAL[ctx.node.target], *promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=torch.bool)
    )


@lowers(aten.where.self, aten.where.ScalarOther, aten.where.ScalarSelf, aten.where.Scalar)
def where(ctx: LowerCtx) -> Value:
    """where(Tensor condition, Tensor self, Tensor other) -> Tensor"""
    cond = ctx.input_as(ctx.arg(0), torch.bool)
    return ctx.emit("Where", cond, *promoted(ctx, ctx.arg(1), ctx.arg(2), dtype=ctx.out_dtype))


@lowers(aten.isnan.default)
def isnan(ctx: LowerCtx) -> Value:
    """isnan(Tensor self) -> Tensor(bool)"""
    return ctx.emit("IsNaN", ctx.input(0))


@lowers(
    aten._to_copy.default, aten.to.dtype, aten.to.dtype_layout, aten.to.device, aten.type_as.default
)
def to_dtype(ctx: LowerCtx) -> Value:
    """_to_copy(Tensor self, *, ScalarType? dtype=None, ...) -> Tensor: a Cast, or nothing"""
    return ctx.cast(ctx.input(0), ctx.out_dtype, ctx.dtype(ctx.arg(0)))
