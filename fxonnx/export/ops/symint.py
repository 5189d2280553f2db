"""SymInt arithmetic: the shape computations of dynamic dims (``x.size(1) // 2``, ``seq * 4``).

A SymInt (or SymFloat, SymBool) node's value is a shape-[1] tensor: int64, float32 or bool.
``ctx.int_list`` concatenates such values with constant ints into ONNX shape tensors; when every
input is static, onnxruntime folds the whole computation at session creation.
"""

from __future__ import annotations

import math
import operator

import torch

from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten


def _is_float(ctx: LowerCtx, x: object) -> bool:
    return isinstance(ctx.val(x), (float, torch.SymFloat))


def _operands(ctx: LowerCtx) -> tuple[list[Value], bool]:
    """Both operands as [1] values of one type: float32 if either is a float, else int64."""
    items = [ctx.arg(0), ctx.arg(1)]
    as_float = any(_is_float(ctx, x) for x in items)
    if as_float:
        return [_as_float(ctx, x) for x in items], True
    return [ctx.int_list([x]) for x in items], False


def _as_float(ctx: LowerCtx, x: object) -> Value:
    if _is_float(ctx, x):
        return (
            ctx.value(x, torch.float32)
            if not isinstance(x, float)
            else ctx.const([x], torch.float32)
        )
    value = ctx.int_list([x])
    return ctx.emit("Cast", value, to=1)  # FLOAT


@lowers(aten.sym_size.int)
def sym_size(ctx: LowerCtx) -> Value:
    """sym_size.int(Tensor self, int dim) -> SymInt"""
    size = ctx.val()
    key = size.node.expr if isinstance(size, torch.SymInt) else None
    known = ctx.builder.sym_value(key) if key is not None else None
    if known is not None:  # the same size read again (``arange(x.size(1))`` twice): one Shape
        return known
    dim = ctx.arg(1) % ctx.rank(ctx.arg(0))
    value = ctx.shape_of(ctx.arg(0), start=dim, end=dim + 1)
    if key is not None:
        ctx.builder.sym_values[key] = value
    return value


@lowers(aten.sym_numel.default)
def sym_numel(ctx: LowerCtx) -> Value:
    """sym_numel(Tensor self) -> SymInt"""
    size = ctx.emit("Size", ctx.input(0))
    return ctx.emit("Reshape", size, ctx.const([1], torch.int64))


_ARITH = {operator.mul: "Mul", operator.add: "Add", operator.sub: "Sub"}


@lowers(*_ARITH)
def sym_arith(ctx: LowerCtx) -> Value:
    """a * b, a + b, a - b on SymInts/SymFloats and Python numbers"""
    (a, b), _ = _operands(ctx)
    return ctx.emit(_ARITH[ctx.node.target], a, b)


@lowers(operator.floordiv)
def sym_floordiv(ctx: LowerCtx) -> Value:
    """a // b with Python's floor semantics (ONNX integer Div truncates toward zero, so a
    possibly negative numerator goes through (a - a mod b) / b)."""
    (a, b), as_float = _operands(ctx)
    if as_float:
        return ctx.emit("Floor", ctx.emit("Div", a, b))
    if _nonnegative(ctx.val(ctx.arg(0))) and _nonnegative(ctx.val(ctx.arg(1))):
        return ctx.emit("Div", a, b)
    rem = ctx.emit("Mod", a, b, fmod=0)
    return ctx.emit("Div", ctx.emit("Sub", a, rem), b)


@lowers(operator.mod)
def sym_mod(ctx: LowerCtx) -> Value:
    """a % b with Python's sign rule (the divisor's): ONNX Mod with fmod=0"""
    (a, b), as_float = _operands(ctx)
    return ctx.emit("Mod", a, b, fmod=1 if as_float else 0)


@lowers(operator.truediv)
def sym_truediv(ctx: LowerCtx) -> Value:
    """a / b -> SymFloat"""
    a, b = (_as_float(ctx, x) for x in (ctx.arg(0), ctx.arg(1)))
    return ctx.emit("Div", a, b)


@lowers(operator.pow)
def sym_pow(ctx: LowerCtx) -> Value:
    """a ** b (a SymFloat when either is a float, as in ``d ** -0.5``)"""
    (a, b), _ = _operands(ctx)
    return ctx.emit("Pow", a, b)


@lowers(operator.neg)
def sym_neg(ctx: LowerCtx) -> Value:
    """-a"""
    return ctx.emit("Neg", ctx.value(ctx.arg(0)))


@lowers(torch.sym_max, torch.sym_min)
def sym_max_min(ctx: LowerCtx) -> Value:
    """torch.sym_max(a, b), torch.sym_min(a, b)"""
    (a, b), _ = _operands(ctx)
    return ctx.emit("Max" if ctx.node.target is torch.sym_max else "Min", a, b)


@lowers(torch.sym_float)
def sym_float(ctx: LowerCtx) -> Value:
    """torch.sym_float(SymInt) -> SymFloat"""
    return _as_float(ctx, ctx.arg(0))


@lowers(torch.sym_int, math.trunc)
def sym_int(ctx: LowerCtx) -> Value:
    """torch.sym_int(SymFloat) -> SymInt, truncating toward zero"""
    x = ctx.arg(0)
    if not _is_float(ctx, x):
        return ctx.int_list([x])
    return ctx.emit("Cast", _as_float(ctx, x), to=7)  # INT64 (Cast truncates)


@lowers(math.floor, math.ceil)
def sym_floor_ceil(ctx: LowerCtx) -> Value:
    """math.floor / math.ceil of a SymFloat -> SymInt"""
    x = ctx.arg(0)
    if not _is_float(ctx, x):
        return ctx.int_list([x])
    op = "Floor" if ctx.node.target is math.floor else "Ceil"
    return ctx.emit("Cast", ctx.emit(op, _as_float(ctx, x)), to=7)


_COMPARE = {
    operator.eq: "Equal",
    operator.lt: "Less",
    operator.le: "LessOrEqual",
    operator.gt: "Greater",
    operator.ge: "GreaterOrEqual",
}


@lowers(*_COMPARE, operator.ne)
def sym_compare(ctx: LowerCtx) -> Value:
    """a == b, a != b, a < b, ... on SymInts -> SymBool"""
    (a, b), _ = _operands(ctx)
    if ctx.node.target is operator.ne:
        return ctx.emit("Not", ctx.emit("Equal", a, b))
    return ctx.emit(_COMPARE[ctx.node.target], a, b)


@lowers(torch.sym_not)
def sym_not(ctx: LowerCtx) -> Value:
    """torch.sym_not(SymBool)"""
    return ctx.emit("Not", ctx.value(ctx.arg(0)))


@lowers(torch.sym_ite)
def sym_ite(ctx: LowerCtx) -> Value:
    """torch.sym_ite(cond, a, b)"""
    cond = ctx.value(ctx.arg(0))
    a, b = (ctx.int_list([x]) for x in (ctx.arg(1), ctx.arg(2)))
    return ctx.emit("Where", cond, a, b)


def _nonnegative(v: object) -> bool:
    if isinstance(v, int):
        return v >= 0
    if isinstance(v, torch.SymInt):
        return bool(v.node.expr.is_nonnegative)
    return False
