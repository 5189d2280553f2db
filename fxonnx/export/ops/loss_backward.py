"""Gradients of the losses whose backward ATen ops appear in training graphs
(``fxonnx.export_training``): smooth L1, Huber, binary cross entropy (the mean divides by
numel(self), as torch's kernels do), soft margin, multi-class and multi-label margins (the
mean divides by the number of samples) and NLL over spatial dims (mse and 2-D NLL:
backward.py)."""

from __future__ import annotations

import torch

from .._ctx import LowerCtx, Value
from .._registry import lowers
from .loss_nll import MarginTerms, MultiLabelTerms, _Picked

aten = torch.ops.aten


def _scaled(ctx: LowerCtx, local: Value, reduction: int) -> Value:
    """local gradient * grad_output, over numel(self) for the mean."""
    dtype = ctx.out_dtype
    g = ctx.emit("Mul", local, ctx.input_as(ctx.arg(0), dtype))
    if reduction == 1:
        g = ctx.emit("Div", g, ctx.cast(ctx.emit("Size", ctx.value(ctx.arg(1))), dtype))
    return g


def _diff(ctx: LowerCtx) -> Value:
    dtype = ctx.out_dtype
    return ctx.emit("Sub", ctx.input_as(ctx.arg(1), dtype), ctx.input_as(ctx.arg(2), dtype))


@lowers(aten.smooth_l1_loss_backward.default)
def smooth_l1_loss_backward(ctx: LowerCtx) -> Value:
    """smooth_l1_loss_backward(Tensor grad_output, Tensor self, Tensor target, int reduction,
    float beta) -> Tensor: d = x - t; -1 where d <= -beta, 1 where d >= beta, else d / beta
    (beta 0: the sign, with -1 at d == 0 as torch's kernel)."""
    dtype, beta = ctx.out_dtype, float(ctx.arg(4))
    d = _diff(ctx)
    one, minus_one = ctx.const(1.0, dtype), ctx.const(-1.0, dtype)
    low = ctx.emit("LessOrEqual", d, ctx.const(-beta, dtype))
    if beta == 0:
        local = ctx.emit("Where", low, minus_one, one)
    else:
        high = ctx.emit("GreaterOrEqual", d, ctx.const(beta, dtype))
        inner = ctx.emit("Div", d, ctx.const(beta, dtype))
        local = ctx.emit("Where", low, minus_one, ctx.emit("Where", high, one, inner))
    return _scaled(ctx, local, ctx.arg(3))


@lowers(aten.huber_loss_backward.default)
def huber_loss_backward(ctx: LowerCtx) -> Value:
    """huber_loss_backward(Tensor grad_output, Tensor self, Tensor target, int reduction,
    float delta) -> Tensor: clip(x - t, -delta, delta)"""
    dtype, delta = ctx.out_dtype, float(ctx.arg(4))
    local = ctx.emit("Clip", _diff(ctx), ctx.const(-delta, dtype), ctx.const(delta, dtype))
    return _scaled(ctx, local, ctx.arg(3))


@lowers(aten.binary_cross_entropy_backward.default)
def binary_cross_entropy_backward(ctx: LowerCtx) -> Value:
    """binary_cross_entropy_backward(Tensor grad_output, Tensor self, Tensor target,
    Tensor? weight=None, int reduction=Mean) -> Tensor: w (x - t) / max((1 - x) x, 1e-12)"""
    dtype = ctx.out_dtype
    x = ctx.input_as(ctx.arg(1), dtype)
    denom = ctx.emit("Mul", ctx.emit("Sub", ctx.const(1.0, dtype), x), x)
    denom = ctx.emit("Max", denom, ctx.const(1e-12, dtype))
    local = ctx.emit("Div", _diff(ctx), denom)
    weight = ctx.arg(3)
    if weight is not None:
        local = ctx.emit("Mul", local, ctx.input_as(weight, dtype))
    return _scaled(ctx, local, ctx.arg(4))


@lowers(aten.nll_loss2d_backward.default)
def nll_loss2d_backward(ctx: LowerCtx) -> Value:
    """nll_loss2d_backward(Tensor grad_output, Tensor self, Tensor target, Tensor? weight,
    int reduction, SymInt ignore_index, Tensor total_weight) -> Tensor: -w[t] * grad at each
    element's target class (dim 1), 0 elsewhere and where ignored; the mean divides by
    ``total_weight`` (the forward's)."""
    g, x, target, weight, reduction, ignore, total = (ctx.arg(i) for i in range(7))
    dtype, rank = ctx.dtype(x), ctx.rank(x)
    pick = _Picked(ctx, x, target, weight, ignore)
    scale = ctx.emit("Mul", ctx.emit("Neg", pick.weight), ctx.input_as(g, dtype))
    if reduction == 1:
        scale = ctx.emit("Div", scale, ctx.value(total))
    one = ctx.const([1], torch.int64)
    size = ctx.emit(
        "Squeeze", ctx.emit("Shape", ctx.value(x), start=1, end=2), ctx.const([0], torch.int64)
    )
    classes = ctx.emit("Range", ctx.const(0, torch.int64), size, ctx.const(1, torch.int64))
    classes = ctx.emit("Reshape", classes, ctx.const([1, -1] + [1] * (rank - 2), torch.int64))
    hit = ctx.emit("Equal", ctx.emit("Unsqueeze", pick.target, one), classes)
    return ctx.emit("Where", hit, ctx.emit("Unsqueeze", scale, one), ctx.const(0.0, dtype))


@lowers(aten.soft_margin_loss_backward.default)
def soft_margin_loss_backward(ctx: LowerCtx) -> Value:
    """soft_margin_loss_backward(Tensor grad_output, Tensor self, Tensor target,
    int reduction) -> Tensor: -t sigmoid(-t x)"""
    dtype = ctx.out_dtype
    t = ctx.input_as(ctx.arg(2), dtype)
    minus_tx = ctx.emit("Neg", ctx.emit("Mul", t, ctx.input_as(ctx.arg(1), dtype)))
    local = ctx.emit("Neg", ctx.emit("Mul", t, ctx.emit("Sigmoid", minus_tx)))
    return _scaled(ctx, local, ctx.arg(3))


def _per_sample_grad(ctx: LowerCtx, local: Value, x2d: Value, reduction: int) -> Value:
    """(N, C) local gradient times grad_output (per sample for none), over N for the mean,
    in the shape of self."""
    dtype = ctx.out_dtype
    g = ctx.emit("Reshape", ctx.input_as(ctx.arg(0), dtype), ctx.const([-1, 1], torch.int64))
    grad = ctx.emit("Mul", local, g)
    if reduction == 1:
        rows = ctx.cast(ctx.emit("Shape", x2d, start=0, end=1), dtype)
        grad = ctx.emit("Div", grad, rows)
    return ctx.emit("Reshape", grad, ctx.shape_of(ctx.arg(1)))


@lowers(aten.multi_margin_loss_backward.default)
def multi_margin_loss_backward(ctx: LowerCtx) -> Value:
    """multi_margin_loss_backward(Tensor grad_output, Tensor self, Tensor target, Scalar p,
    Scalar margin, Tensor? weight=None, int reduction=Mean) -> Tensor: with
    z_i = margin - x[y] + x[i] > 0 (i != y), d_i = w[y] (1 or 2 z_i) / C goes to x[i] and
    -sum_i d_i to x[y]."""
    _g, x, target, p, margin, weight, reduction = (ctx.arg(i) for i in range(7))
    dtype = ctx.out_dtype
    m = MarginTerms(ctx, x, target, margin)
    zero = ctx.const(0.0, dtype)
    active = ctx.emit("And", ctx.emit("Greater", m.z, zero), ctx.emit("Not", m.own))
    slope = ctx.emit("Mul", m.z, ctx.const(2.0, dtype)) if int(p) == 2 else ctx.const(1.0, dtype)
    d = ctx.emit("Where", active, slope, zero)
    if weight is not None:
        d = ctx.emit("Mul", d, ctx.emit("Gather", ctx.input_as(weight, dtype), m.target, axis=0))
    d = ctx.emit("Div", d, m.classes)
    to_target = ctx.emit("Neg", ctx.emit("ReduceSum", d, ctx.const([1], torch.int64), keepdims=1))
    local = ctx.emit("Where", m.own, to_target, d)
    return _per_sample_grad(ctx, local, m.x, reduction)


@lowers(aten.multilabel_margin_loss_backward.default)
def multilabel_margin_loss_backward(ctx: LowerCtx) -> Value:
    """multilabel_margin_loss_backward(Tensor grad_output, Tensor self, Tensor target,
    int reduction, Tensor is_target) -> Tensor: each counted margin 1 - x[y_j] + x[i] > 0
    adds 1/C to x[i] and -1/C to x[y_j]."""
    dtype = ctx.out_dtype
    terms = MultiLabelTerms(ctx, ctx.arg(1), ctx.arg(2))
    zero = ctx.const(0.0, dtype)
    active = ctx.emit("And", terms.keep, ctx.emit("Greater", terms.z, zero))
    a = ctx.emit("Div", ctx.cast(active, dtype, torch.bool), terms.classes)  # (N, J, C)
    to_others = ctx.emit("ReduceSum", a, ctx.const([1], torch.int64), keepdims=0)
    per_target = ctx.emit("ReduceSum", a, ctx.const([2], torch.int64), keepdims=1)  # (N, J, 1)
    hits = ctx.cast(terms.hits, dtype, torch.bool)
    to_targets = ctx.emit(
        "ReduceSum", ctx.emit("Mul", hits, per_target), ctx.const([1], torch.int64), keepdims=0
    )
    local = ctx.emit("Sub", to_others, to_targets)
    return _per_sample_grad(ctx, local, terms.x, ctx.arg(3))
