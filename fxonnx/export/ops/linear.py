"""Matrix products: linear, addmm, mm, bmm, matmul, baddbmm, einsum."""

from __future__ import annotations

import torch

from .._ctx import LowerCtx, Value
from .._registry import lowers, one_to_one

aten = torch.ops.aten

one_to_one({aten.mm.default: "MatMul", aten.bmm.default: "MatMul", aten.matmul.default: "MatMul"})


@lowers(aten.linear.default)
def linear(ctx: LowerCtx) -> Value:
    """linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor: x @ W^T + b.
    2-D input becomes one Gemm(transB=1); higher ranks MatMul with W^T, then Add."""
    x, w, b = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    if ctx.rank(x) == 2:
        bias = None if b is None else ctx.value(b)
        return ctx.emit("Gemm", ctx.value(x), ctx.value(w), bias, transB=1)
    wt = ctx.emit("Transpose", ctx.value(w), perm=[1, 0])
    y = ctx.emit("MatMul", ctx.value(x), wt)
    return y if b is None else ctx.emit("Add", y, ctx.value(b))


@lowers(aten.addmm.default)
def addmm(ctx: LowerCtx) -> Value:
    """addmm(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor"""
    beta, alpha = ctx.kwarg("beta", 1), ctx.kwarg("alpha", 1)
    return ctx.emit(
        "Gemm", ctx.input(1), ctx.input(2), ctx.input(0), alpha=float(alpha), beta=float(beta)
    )


@lowers(aten.baddbmm.default)
def baddbmm(ctx: LowerCtx) -> Value:
    """baddbmm(Tensor self, Tensor batch1, Tensor batch2, *, Scalar beta=1, Scalar alpha=1)"""
    beta, alpha = ctx.kwarg("beta", 1), ctx.kwarg("alpha", 1)
    dtype = ctx.out_dtype
    prod = ctx.emit("MatMul", ctx.input(1), ctx.input(2))
    if alpha != 1:
        prod = ctx.emit("Mul", prod, ctx.const(alpha, dtype))
    base = ctx.input(0)
    if beta == 0:
        return prod
    if beta != 1:
        base = ctx.emit("Mul", base, ctx.const(beta, dtype))
    return ctx.emit("Add", base, prod)


@lowers(aten.einsum.default)
def einsum(ctx: LowerCtx) -> Value:
    """einsum(str equation, Tensor[] tensors, *, int[]? path=None) -> Tensor"""
    equation = ctx.arg(0).replace(" ", "")
    return ctx.emit("Einsum", *(ctx.value(t) for t in ctx.arg(1)), equation=equation)
