"""Class-index losses: cross entropy (class indices or probabilities, label smoothing), NLL
(any number of spatial dims), multi-class and multi-label margin losses.

Every option follows torch's CPU code (aten/src/ATen/native/LossNLL.cpp, LossMultiMargin.cpp,
LossMultiLabelMargin.cpp): the mean of NLL divides by the summed weight of the non-ignored
targets (NaN when all are ignored, as in eager), label smoothing's mean divides its smoothing
term by the same total, and class-probability targets divide by numel / C.
"""

from __future__ import annotations

from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers
from .loss import reduce_loss
from .reduce import reduce_value

aten = torch.ops.aten
_I64 = torch.int64


def _class_dim(ctx: LowerCtx, x: Any) -> int:
    return 1 if ctx.rank(x) >= 2 else 0


def _class_count(ctx: LowerCtx, x: Any, dtype: torch.dtype) -> Value:
    """C as a 0-d value of ``dtype`` (a constant when static)."""
    dim = _class_dim(ctx, x)
    size = ctx.static_shape(x)[dim]
    if size is not None:
        return ctx.const(float(size), dtype)
    c = ctx.emit("Squeeze", ctx.shape_of(x, dim, dim + 1), ctx.const([0], _I64))
    return ctx.cast(c, dtype)


def _weight_view(ctx: LowerCtx, weight: Any, x: Any) -> Value:
    """weight (C,) viewed to broadcast along the class dim of ``x``."""
    rank = ctx.rank(x)
    w = ctx.input_as(weight, ctx.dtype(x))
    if rank < 2:
        return w
    return ctx.emit("Reshape", w, ctx.const([1, -1] + [1] * (rank - 2), _I64))


class _Picked:
    """What NLL needs per target element: the valid mask, safe class ids (ignored -> 0), the
    weight of each element's class (0 where ignored) and its sum (the mean's divisor)."""

    def __init__(self, ctx: LowerCtx, x: Any, target: Any, weight: Any, ignore: int) -> None:
        dtype = ctx.dtype(x)
        t = ctx.cast(ctx.value(target), _I64, ctx.dtype(target))
        self.valid = ctx.emit("Not", ctx.emit("Equal", t, ctx.const(ignore, _I64)))
        self.target = ctx.emit("Where", self.valid, t, ctx.const(0, _I64))
        w = ctx.cast(self.valid, dtype, torch.bool)
        if weight is not None:
            picked = ctx.emit("Gather", ctx.input_as(weight, dtype), self.target, axis=0)
            w = ctx.emit("Mul", w, picked)
        self.weight = w
        self.rank = ctx.rank(target)
        self.total = reduce_value(ctx, "ReduceSum", w, self.rank, None, False)


def _nll(
    ctx: LowerCtx, logp: Value, x: Any, target: Any, weight: Any, reduction: int, ignore: int
) -> tuple[Value, _Picked]:
    """nll_loss over ``logp`` (shaped like ``x``): -w[t] logp[t] per element, 0 where ignored."""
    dim = _class_dim(ctx, x)
    pick = _Picked(ctx, x, target, weight, ignore)
    axis = ctx.const([dim], _I64)
    index = ctx.emit("Unsqueeze", pick.target, axis)
    value = ctx.emit("Squeeze", ctx.emit("GatherElements", logp, index, axis=dim), axis)
    losses = ctx.emit("Neg", ctx.emit("Mul", value, pick.weight))
    losses = ctx.emit("Where", pick.valid, losses, ctx.const(0.0, ctx.dtype(x)))
    if reduction == 0:
        return losses, pick
    total = reduce_value(ctx, "ReduceSum", losses, pick.rank, None, False)
    if reduction == 1:
        total = ctx.emit("Div", total, pick.total)
    return total, pick


@lowers(aten.nll_loss_nd.default, aten.nll_loss.default, aten.nll_loss2d.default)
def nll_loss(ctx: LowerCtx) -> Value:
    """nll_loss_nd / nll_loss / nll_loss2d(Tensor self, Tensor target, Tensor? weight=None,
    int reduction=Mean, SymInt ignore_index=-100) -> Tensor; self (C), (N, C) or
    (N, C, d1, ...), the class dim is 1 (0 for unbatched)."""
    x, target, weight, reduction, ignore = (ctx.arg(i) for i in range(5))
    return _nll(ctx, ctx.value(x), x, target, weight, reduction, ignore)[0]


@lowers(aten.nll_loss2d_forward.default)
def nll_loss2d_forward(ctx: LowerCtx) -> list[Value]:
    """nll_loss2d_forward(Tensor self, Tensor target, Tensor? weight, int reduction,
    SymInt ignore_index) -> (Tensor output, Tensor total_weight): the real total weight
    (0 for reduction none, as torch's decomposition)."""
    x, target, weight, reduction, ignore = (ctx.arg(i) for i in range(5))
    out, pick = _nll(ctx, ctx.value(x), x, target, weight, reduction, ignore)
    total = ctx.const(0.0, ctx.dtype(x)) if reduction == 0 else pick.total
    return [out, total]


@lowers(aten.cross_entropy_loss.default)
def cross_entropy_loss(ctx: LowerCtx) -> Value:
    """cross_entropy_loss(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean,
    SymInt ignore_index=-100, float label_smoothing=0.0) -> Tensor: log_softmax over the class
    dim, then NLL (class indices) or -sum(t' w logp) (float class probabilities,
    t' = t (1 - ls) + ls / C)."""
    x, target, weight, reduction, ignore, smoothing = (ctx.arg(i) for i in range(6))
    dim, dtype, rank = _class_dim(ctx, x), ctx.dtype(x), ctx.rank(x)
    logp = ctx.emit("LogSoftmax", ctx.value(x), axis=dim)
    n_classes = _class_count(ctx, x, dtype)
    if ctx.dtype(target).is_floating_point:
        return _soft_targets(ctx, logp, x, target, weight, reduction, smoothing, n_classes)
    nll, pick = _nll(ctx, logp, x, target, weight, reduction, ignore)
    if not smoothing:
        return nll
    weighted = logp if weight is None else ctx.emit("Mul", logp, _weight_view(ctx, weight, x))
    smooth = ctx.emit("Neg", reduce_value(ctx, "ReduceSum", weighted, rank, [dim], False))
    smooth = ctx.emit("Where", pick.valid, smooth, ctx.const(0.0, dtype))
    if reduction != 0:
        smooth = reduce_value(ctx, "ReduceSum", smooth, pick.rank, None, False)
    if reduction == 1:
        smooth = ctx.emit("Div", smooth, pick.total)
    scale = ctx.emit("Div", ctx.const(float(smoothing), dtype), n_classes)
    return ctx.emit(
        "Add",
        ctx.emit("Mul", nll, ctx.const(1.0 - float(smoothing), dtype)),
        ctx.emit("Mul", smooth, scale),
    )


def _soft_targets(
    ctx: LowerCtx,
    logp: Value,
    x: Any,
    target: Any,
    weight: Any,
    reduction: int,
    smoothing: float,
    n_classes: Value,
) -> Value:
    """cross entropy against class probabilities; the mean divides by numel / C."""
    dim, dtype, rank = _class_dim(ctx, x), ctx.dtype(x), ctx.rank(x)
    t = ctx.input_as(target, dtype)
    if smoothing:
        t = ctx.emit(
            "Add",
            ctx.emit("Mul", t, ctx.const(1.0 - float(smoothing), dtype)),
            ctx.emit("Div", ctx.const(float(smoothing), dtype), n_classes),
        )
    terms = ctx.emit("Mul", logp, t)
    if weight is not None:
        terms = ctx.emit("Mul", terms, _weight_view(ctx, weight, x))
    if reduction == 0:
        return ctx.emit("Neg", reduce_value(ctx, "ReduceSum", terms, rank, [dim], False))
    total = ctx.emit("Neg", reduce_value(ctx, "ReduceSum", terms, rank, None, False))
    if reduction == 1:
        count = ctx.emit("Div", ctx.cast(ctx.emit("Size", ctx.value(x)), dtype), n_classes)
        total = ctx.emit("Div", total, count)
    return total


def _as_batch(ctx: LowerCtx, x: Any) -> Value:
    """(C,) -> (1, C) and () -> (1, 1) (one sample of one class, as torch); (N, C) stays."""
    value, rank = ctx.value(x), ctx.rank(x)
    if rank == 0:
        return ctx.emit("Reshape", value, ctx.const([1, 1], _I64))
    return ctx.emit("Unsqueeze", value, ctx.const([0], _I64)) if rank == 1 else value


def _class_range(ctx: LowerCtx, x2d: Value) -> Value:
    """[0, 1, ..., C-1] as a (1, C) int64 tensor, C the last dim of ``x2d``."""
    c = ctx.emit("Squeeze", ctx.emit("Shape", x2d, start=1, end=2), ctx.const([0], _I64))
    r = ctx.emit("Range", ctx.const(0, _I64), c, ctx.const(1, _I64))
    return ctx.emit("Unsqueeze", r, ctx.const([0], _I64))


def _loss_rank(ctx: LowerCtx) -> int:
    """Rank of the loss this node returns (its first output)."""
    val = ctx.val()
    return (val[0] if isinstance(val, (list, tuple)) else val).dim()


def _per_sample_out(ctx: LowerCtx, losses: Value, reduction: int) -> Value:
    """(N,) per-sample losses reduced, or reshaped to the op's own output shape."""
    if reduction != 0:
        return reduce_loss(ctx, losses, 1, reduction)
    if _loss_rank(ctx) == 0:
        return ctx.emit("Squeeze", losses, ctx.const([0], _I64))
    return losses


def _refuse_unbatched_none(ctx: LowerCtx, reduction: int, eager_rank: int) -> None:
    """Unbatched input, reduction none: torch's traced shape is (1,) where eager returns a
    0-d loss, so the graph after this node was traced with another shape than eager runs."""
    if reduction == 0 and _loss_rank(ctx) != eager_rank:
        raise ExportError(
            f"{ctx.node.name}: {ctx.node.target.__name__} of an unbatched input with "
            "reduction='none' returns a 0-d tensor in eager but (1,) in torch's traced shapes",
            hint="add the batch dim (input[None], target[None]) or use reduction='sum'",
        )


class MarginTerms:
    """The per-class margins of multi_margin_loss on (N, C): z = margin - x[y] + x[i],
    ``own`` marks each sample's target class, ``classes`` is C as a (1,) value of x's dtype."""

    def __init__(self, ctx: LowerCtx, x: Any, target: Any, margin: float) -> None:
        dtype = ctx.dtype(x)
        self.x = _as_batch(ctx, x)
        t = ctx.cast(ctx.value(target), _I64, ctx.dtype(target))
        self.target = ctx.emit("Reshape", t, ctx.const([-1, 1], _I64))
        x_y = ctx.emit("GatherElements", self.x, self.target, axis=1)
        self.z = ctx.emit("Add", ctx.emit("Sub", ctx.const(float(margin), dtype), x_y), self.x)
        self.own = ctx.emit("Equal", _class_range(ctx, self.x), self.target)
        self.classes = ctx.cast(ctx.emit("Shape", self.x, start=1, end=2), dtype)


@lowers(aten.multi_margin_loss.default)
def multi_margin_loss(ctx: LowerCtx) -> Value:
    """multi_margin_loss(Tensor self, Tensor target, Scalar p=1, Scalar margin=1,
    Tensor? weight=None, int reduction=Mean): per sample
    sum_{i != y} w[y] max(0, margin - x[y] + x[i])^p / C (p is 1 or 2)."""
    x, target, p, margin, weight, reduction = (ctx.arg(i) for i in range(6))
    if ctx.rank(x) <= 1:
        _refuse_unbatched_none(ctx, reduction, ctx.rank(target))
    dtype = ctx.dtype(x)
    m = MarginTerms(ctx, x, target, margin)
    h = ctx.emit("Max", m.z, ctx.const(0.0, dtype))
    if int(p) == 2:
        h = ctx.emit("Mul", h, h)
    if weight is not None:
        h = ctx.emit("Mul", h, ctx.emit("Gather", ctx.input_as(weight, dtype), m.target, axis=0))
    h = ctx.emit("Where", m.own, ctx.const(0.0, dtype), h)
    per_sample = ctx.emit("ReduceSum", h, ctx.const([1], _I64), keepdims=0)
    return _per_sample_out(ctx, ctx.emit("Div", per_sample, m.classes), reduction)


class MultiLabelTerms:
    """multilabel_margin_loss on (N, C) with targets (N, J): ``valid`` (N, J) marks targets
    before the first -1, ``safe`` their class ids (0 elsewhere), ``hits`` (N, J, C) is
    valid & (class == target j), ``is_target`` (N, 1, C) int32, ``z`` (N, J, C) the raw margins
    1 - x[y_j] + x[i] and ``keep`` where they count (j valid, i not a target)."""

    def __init__(self, ctx: LowerCtx, x: Any, target: Any) -> None:
        dtype = ctx.dtype(x)
        self.x = _as_batch(ctx, x)
        t = _as_batch(ctx, target)
        minus_one = ctx.cast(ctx.emit("Equal", t, ctx.const(-1, _I64)), _I64)
        after = ctx.emit("CumSum", minus_one, ctx.const(1, _I64))
        self.valid = ctx.emit("Equal", after, ctx.const(0, _I64))
        self.safe = ctx.emit("Where", self.valid, t, ctx.const(0, _I64))
        classes = ctx.emit("Unsqueeze", _class_range(ctx, self.x), ctx.const([0], _I64))
        two = ctx.const([2], _I64)
        valid3 = ctx.emit("Unsqueeze", self.valid, two)
        same = ctx.emit("Equal", ctx.emit("Unsqueeze", self.safe, two), classes)
        self.hits = ctx.emit("And", same, valid3)
        self.is_target = ctx.emit(
            "ReduceMax", ctx.cast(self.hits, torch.int32), ctx.const([1], _I64), keepdims=1
        )
        x_y = ctx.emit("GatherElements", self.x, self.safe, axis=1)
        x_i = ctx.emit("Unsqueeze", self.x, ctx.const([1], _I64))
        z = ctx.emit("Sub", ctx.const(1.0, dtype), ctx.emit("Unsqueeze", x_y, two))
        self.z = ctx.emit("Add", z, x_i)
        not_target = ctx.emit("Equal", self.is_target, ctx.const(0, torch.int32))
        self.keep = ctx.emit("And", valid3, not_target)
        self.classes = ctx.cast(ctx.emit("Shape", self.x, start=1, end=2), dtype)


def _multilabel_loss(ctx: LowerCtx, terms: MultiLabelTerms, reduction: int) -> Value:
    dtype = ctx.dtype(ctx.arg(0))
    z = ctx.emit("Max", terms.z, ctx.const(0.0, dtype))
    z = ctx.emit("Where", terms.keep, z, ctx.const(0.0, dtype))
    per_sample = ctx.emit("ReduceSum", z, ctx.const([1, 2], _I64), keepdims=0)
    return _per_sample_out(ctx, ctx.emit("Div", per_sample, terms.classes), reduction)


@lowers(aten.multilabel_margin_loss.default)
def multilabel_margin_loss(ctx: LowerCtx) -> Value:
    """multilabel_margin_loss(Tensor self, Tensor target, int reduction=Mean): the targets
    of a sample are its target entries before the first -1; per sample
    sum_{j target} sum_{i not a target} max(0, 1 - (x[y_j] - x[i])) / C."""
    x, target, reduction = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    if ctx.rank(x) <= 1:
        _refuse_unbatched_none(ctx, reduction, 0)
    return _multilabel_loss(ctx, MultiLabelTerms(ctx, x, target), reduction)


@lowers(aten.multilabel_margin_loss_forward.default)
def multilabel_margin_loss_forward(ctx: LowerCtx) -> list[Value]:
    """multilabel_margin_loss_forward(Tensor self, Tensor target, int reduction) ->
    (Tensor output, Tensor is_target): is_target is 1.0 at each sample's target classes,
    shaped and typed like self."""
    x, target, reduction = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    if ctx.rank(x) <= 1:
        _refuse_unbatched_none(ctx, reduction, 0)
    terms = MultiLabelTerms(ctx, x, target)
    is_target = ctx.cast(terms.is_target, ctx.dtype(x))
    is_target = ctx.emit("Reshape", is_target, ctx.shape_of(x))
    return [_multilabel_loss(ctx, terms, reduction), is_target]
