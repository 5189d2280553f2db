"""Matrix products (linear, addmm, mm, bmm, matmul, baddbmm, mv, dot, outer, bilinear, einsum)
and the vector similarities built on them."""

from __future__ import annotations

from typing import Any

import torch

from ..._errors import ExportError
from ...passes.linear_nd import gemm_reshapes
from .._ctx import LowerCtx, Value
from .._registry import lowers, one_to_one
from ._common import promoted
from .reduce import vector_norm

aten = torch.ops.aten

one_to_one(
    {
        aten.mv.default: "MatMul",
        aten.dot.default: "MatMul",
        aten.vdot.default: "MatMul",
    }
)


@lowers(aten.mm.default, aten.bmm.default, aten.matmul.default)
def matmul(ctx: LowerCtx) -> Value:
    """mm/bmm/matmul(Tensor self, Tensor other) -> Tensor. An inner dim of 1 ([..., M, 1] @
    [..., 1, N], rotary tables' inv_freq @ positions) is a broadcast Mul, exactly: one product
    per element. onnxruntime's batched MatMul spent 18 µs on llama_tiny's [2, 4, 1] @ [2, 1,
    12], its slowest node."""
    a, b = ctx.arg(0), ctx.arg(1)
    if ctx.rank(a) >= 2 and ctx.rank(b) >= 2:
        if ctx.static_shape(a)[-1] == 1 and ctx.static_shape(b)[-2] == 1:
            return ctx.emit("Mul", ctx.input(0), ctx.input(1))
    return ctx.emit("MatMul", ctx.input(0), ctx.input(1))


@lowers(aten.linear.default)
def linear(ctx: LowerCtx) -> Value:
    """linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor: x @ W^T + b.
    Float input becomes one Gemm(transB=1), between two Reshapes when it is not 2-D and the
    Reshape targets can be constants (see ``gemm_reshapes``); other ranks and integers
    (onnxruntime has no integer Gemm kernel, it has integer MatMul) MatMul with W^T, then Add."""
    x, w, b = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    if ctx.out_dtype.is_floating_point:
        bias = None if b is None else ctx.value(b)
        if ctx.rank(x) == 2:
            return ctx.emit("Gemm", ctx.value(x), ctx.value(w), bias, transB=1)
        flat = gemm_reshapes(ctx.static_shape(x), ctx.static_shape(w))
        if flat is not None:
            zero = 1 if 0 in flat[0] + flat[1] else None  # else a 0 copies the input dim
            rows = ctx.emit(
                "Reshape", ctx.value(x), ctx.const(flat[0], torch.int64), allowzero=zero
            )
            y = ctx.emit("Gemm", rows, ctx.value(w), bias, transB=1)
            return ctx.emit("Reshape", y, ctx.const(flat[1], torch.int64), allowzero=zero)
    wt = ctx.emit("Transpose", ctx.value(w), perm=[1, 0])
    y = ctx.emit("MatMul", ctx.value(x), wt)
    return y if b is None else ctx.emit("Add", y, ctx.value(b))


@lowers(aten.addmm.default)
def addmm(ctx: LowerCtx) -> Value:
    """addmm(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor:
    one Gemm for floats; MatMul, then beta * self + alpha * product for integers (onnxruntime
    has integer MatMul kernels, no integer Gemm)"""
    beta, alpha = ctx.kwarg("beta", 1), ctx.kwarg("alpha", 1)
    if not ctx.out_dtype.is_floating_point:
        prod = ctx.emit("MatMul", ctx.input(1), ctx.input(2))
        return _scaled_sum(ctx, ctx.input(0), prod, beta, alpha)
    return ctx.emit(
        "Gemm", ctx.input(1), ctx.input(2), ctx.input(0), alpha=float(alpha), beta=float(beta)
    )


@lowers(aten.baddbmm.default)
def baddbmm(ctx: LowerCtx) -> Value:
    """baddbmm(Tensor self, Tensor batch1, Tensor batch2, *, Scalar beta=1, Scalar alpha=1)"""
    prod = ctx.emit("MatMul", ctx.input(1), ctx.input(2))
    return _scaled_sum(ctx, ctx.input(0), prod, ctx.kwarg("beta", 1), ctx.kwarg("alpha", 1))


def _scaled_sum(ctx: LowerCtx, base: Value, prod: Value, beta: Any, alpha: Any) -> Value:
    """beta * base + alpha * prod; beta == 0 ignores base (NaNs in it included), as torch does."""
    dtype = ctx.out_dtype
    if alpha != 1:
        prod = ctx.emit("Mul", prod, ctx.const(alpha, dtype))
    if beta == 0:
        return ctx.emit("Expand", prod, ctx.emit("Shape", ctx.emit("Add", base, prod)))
    if beta != 1:
        base = ctx.emit("Mul", base, ctx.const(beta, dtype))
    return ctx.emit("Add", base, prod)


@lowers(aten.addmv.default)
def addmv(ctx: LowerCtx) -> Value:
    """addmv(Tensor self, Tensor mat, Tensor vec, *, Scalar beta=1, Scalar alpha=1) -> Tensor"""
    prod = ctx.emit("MatMul", ctx.input(1), ctx.input(2))
    return _scaled_sum(ctx, ctx.input(0), prod, ctx.kwarg("beta", 1), ctx.kwarg("alpha", 1))


@lowers(aten.outer.default, aten.ger.default)
def outer(ctx: LowerCtx) -> Value:
    """outer(Tensor self, Tensor vec2) -> Tensor: a[:, None] * b[None, :]"""
    a, b = promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=ctx.out_dtype)
    column = ctx.emit("Unsqueeze", a, ctx.const([1], torch.int64))
    return ctx.emit("Mul", column, b)


@lowers(aten.bilinear.default)
def bilinear(ctx: LowerCtx) -> Value:
    """bilinear(Tensor input1, Tensor input2, Tensor weight, Tensor? bias) -> Tensor:
    y[..., k] = x1[..., i] W[k, i, j] x2[..., j] + b[k]"""
    y = ctx.emit("Einsum", ctx.input(0), ctx.input(2), ctx.input(1), equation="...i,kij,...j->...k")
    return y if ctx.arg(3) is None else ctx.emit("Add", y, ctx.input(3))


@lowers(aten.cosine_similarity.default)
def cosine_similarity(ctx: LowerCtx) -> Value:
    """cosine_similarity(Tensor x1, Tensor x2, int dim=1, float eps=1e-08) -> Tensor:
    sum((x1 / max(||x1||, eps)) * (x2 / max(||x2||, eps))) over dim, as ATen computes it:
    both broadcast to their common shape first (a size-1 ``dim`` is expanded before its norm)"""
    x1, x2, dim, eps = ctx.arg(0), ctx.arg(1), ctx.arg(2), float(ctx.arg(3))
    dtype = ctx.out_dtype
    rank = max(ctx.rank(x1), ctx.rank(x2))
    axis = ctx.const([dim % rank], torch.int64)
    values = [ctx.input_as(x, dtype) for x in (x1, x2)]
    shapes = [ctx.emit("Shape", v) for v in values]
    parts = []
    for value, other in zip(values, reversed(shapes), strict=True):
        value = ctx.emit("Expand", value, other)  # ONNX Expand broadcasts both ways
        norm = ctx.emit("ReduceL2", value, axis, keepdims=1)
        parts.append(ctx.emit("Div", value, ctx.emit("Max", norm, ctx.const(eps, dtype))))
    return ctx.emit("ReduceSum", ctx.emit("Mul", *parts), axis, keepdims=0)


@lowers(aten.pairwise_distance.default)
def pairwise_distance(ctx: LowerCtx) -> Value:
    """pairwise_distance(Tensor x1, Tensor x2, float p=2, float eps=1e-06, bool keepdim=False):
    ||x1 - x2 + eps||_p over the last dim"""
    x1, x2 = promoted(ctx, ctx.arg(0), ctx.arg(1), dtype=ctx.out_dtype)
    diff = ctx.emit("Add", ctx.emit("Sub", x1, x2), ctx.const(float(ctx.arg(3)), ctx.out_dtype))
    rank = max(ctx.rank(ctx.arg(0)), ctx.rank(ctx.arg(1)))
    return vector_norm(ctx, diff, rank, ctx.arg(2), [-1], bool(ctx.arg(4)))


@lowers(aten.einsum.default)
def einsum(ctx: LowerCtx) -> Value:
    """einsum(str equation, Tensor[] tensors, *, int[]? path=None) -> Tensor; the output is made
    explicit, ``...`` becomes letters (right-aligned, as torch broadcasts operands with fewer
    ellipsis dims; onnxruntime wants equal counts) and subscripts are renamed to lower-case
    letters, which onnxruntime requires."""
    tensors = list(ctx.arg(1))
    equation = _explicit(ctx, ctx.arg(0).replace(" ", ""), [ctx.rank(t) for t in tensors])
    letters = sorted({c for c in equation if c.isalpha()})
    if any(c.isupper() for c in letters):
        if len(letters) > 26:
            raise ExportError(f"{ctx.node.name}: einsum with more than 26 subscripts")
        spare = iter(
            sorted(set("abcdefghijklmnopqrstuvwxyz") - {c for c in letters if c.islower()})
        )
        rename = {c: (c if c.islower() else next(spare)) for c in letters}
        equation = "".join(rename.get(c, c) for c in equation)
    values = promoted(ctx, *tensors, dtype=ctx.out_dtype)
    return ctx.emit("Einsum", *values, equation=equation)


def _explicit(ctx: LowerCtx, equation: str, ranks: list[int]) -> str:
    """``equation`` with an explicit output (torch's implicit one: the ellipsis dims, then the
    subscripts that appear once, sorted) and every ``...`` spelled out in unused letters."""
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if not arrow:
        once = sorted(c for c in set(lhs) if c.isalpha() and lhs.count(c) == 1)
        rhs = ("..." if "..." in lhs else "") + "".join(once)
    if "..." not in equation:
        return f"{lhs}->{rhs}"
    if len(terms) != len(ranks):
        raise ExportError(f"{ctx.node.name}: einsum {equation!r} names {len(terms)} operands")
    dims = [r - (len(t) - 3) if "..." in t else 0 for t, r in zip(terms, ranks, strict=True)]
    used = set(equation)
    spare = [c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used]
    if max(dims) > len(spare):
        raise ExportError(f"{ctx.node.name}: einsum with more than 52 subscripts")
    ell = "".join(spare[: max(dims)])
    terms = [t.replace("...", ell[len(ell) - d :]) for t, d in zip(terms, dims, strict=True)]
    return ",".join(terms) + "->" + rhs.replace("...", ell)
