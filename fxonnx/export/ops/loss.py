"""Loss functions for inference graphs (models that return their loss): regression, margin and
binary losses as pointwise math and a reduction (class-index losses: loss_nll.py).

Reduction codes are ATen's: 0 none, 1 mean (over every element), 2 sum. Each rule follows
torch's CPU kernel or composite (aten/src/ATen/native/Loss*.cpp) term by term.
"""

from __future__ import annotations

import math

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers
from .reduce import reduce_value, vector_norm

aten = torch.ops.aten


def reduce_loss(ctx: LowerCtx, value: Value, rank: int, reduction: int) -> Value:
    """ATen's apply_loss_reduction: 0 keeps, 1 means over all elements, 2 sums."""
    if reduction == 0:
        return value
    if reduction not in (1, 2):
        raise ExportError(f"{ctx.node.name}: unknown loss reduction code {reduction}")
    return reduce_value(
        ctx, "ReduceMean" if reduction == 1 else "ReduceSum", value, rank, None, False
    )


def _out_rank(ctx: LowerCtx) -> int:
    """Rank of the unreduced loss: the broadcast rank of the node's tensor inputs."""
    return max(ctx.rank(a) for a in ctx.node.args if isinstance(a, torch.fx.Node))


def _num(ctx: LowerCtx, value: float) -> Value:
    return ctx.const(float(value), ctx.out_dtype)


def _in(ctx: LowerCtx, i: int) -> Value:
    """Input ``i`` in the loss's dtype (targets may be ints or another float type)."""
    return ctx.input_as(ctx.arg(i), ctx.out_dtype)


def _relu(ctx: LowerCtx, value: Value) -> Value:
    return ctx.emit("Max", value, _num(ctx, 0.0))


def _log1p_exp(ctx: LowerCtx, value: Value) -> Value:
    """log(1 + exp(v)) without overflow: max(v, 0) + log(1 + exp(-|v|))."""
    tail = ctx.emit("Exp", ctx.emit("Neg", ctx.emit("Abs", value)))
    return ctx.emit(
        "Add", _relu(ctx, value), ctx.emit("Log", ctx.emit("Add", tail, _num(ctx, 1.0)))
    )


# -- regression ------------------------------------------------------------------------------
@lowers(aten.l1_loss.default)
def l1_loss(ctx: LowerCtx) -> Value:
    """l1_loss(Tensor self, Tensor target, int reduction=Mean) -> Tensor: |x - t|, reduced."""
    d = ctx.emit("Abs", ctx.emit("Sub", _in(ctx, 0), _in(ctx, 1)))
    return reduce_loss(ctx, d, _out_rank(ctx), ctx.arg(2))


def _quadratic_then_linear(ctx: LowerCtx, beta: float, scale_linear: bool) -> Value:
    """|d| < beta: 0.5 d^2 / beta (smooth L1) or 0.5 d^2 (Huber); else |d| - 0.5 beta, times
    beta for Huber."""
    z = ctx.emit("Abs", ctx.emit("Sub", _in(ctx, 0), _in(ctx, 1)))
    square = ctx.emit("Mul", ctx.emit("Mul", z, z), _num(ctx, 0.5 if scale_linear else 0.5 / beta))
    linear = ctx.emit("Sub", z, _num(ctx, 0.5 * beta))
    if scale_linear:
        linear = ctx.emit("Mul", linear, _num(ctx, beta))
    return ctx.emit("Where", ctx.emit("Less", z, _num(ctx, beta)), square, linear)


@lowers(aten.smooth_l1_loss.default)
def smooth_l1_loss(ctx: LowerCtx) -> Value:
    """smooth_l1_loss(Tensor self, Tensor target, int reduction=Mean, float beta=1.0) -> Tensor;
    beta 0 is the L1 loss."""
    beta = float(ctx.arg(3, 1.0))
    if beta == 0:
        loss = ctx.emit("Abs", ctx.emit("Sub", _in(ctx, 0), _in(ctx, 1)))
    else:
        loss = _quadratic_then_linear(ctx, beta, scale_linear=False)
    return reduce_loss(ctx, loss, _out_rank(ctx), ctx.arg(2))


@lowers(aten.huber_loss.default)
def huber_loss(ctx: LowerCtx) -> Value:
    """huber_loss(Tensor self, Tensor target, int reduction=Mean, float delta=1.0) -> Tensor"""
    loss = _quadratic_then_linear(ctx, float(ctx.arg(3, 1.0)), scale_linear=True)
    return reduce_loss(ctx, loss, _out_rank(ctx), ctx.arg(2))


@lowers(aten.poisson_nll_loss.default)
def poisson_nll_loss(ctx: LowerCtx) -> Value:
    """poisson_nll_loss(Tensor input, Tensor target, bool log_input, bool full, float eps,
    int reduction) -> Tensor: exp(x) - t x (log_input) or x - t log(x + eps); ``full`` adds
    Stirling's t log t - t + 0.5 log(2 pi t) where t > 1."""
    log_input, full, eps, reduction = (ctx.arg(i) for i in range(2, 6))
    x, t = _in(ctx, 0), _in(ctx, 1)
    if log_input:
        loss = ctx.emit("Sub", ctx.emit("Exp", x), ctx.emit("Mul", t, x))
    else:
        log_x = ctx.emit("Log", ctx.emit("Add", x, _num(ctx, eps)))
        loss = ctx.emit("Sub", x, ctx.emit("Mul", t, log_x))
    if full:
        # t <= 1 is masked to 0 and replaced by 1 inside the logs, so no NaN/inf leaks through
        big = ctx.emit("Greater", t, _num(ctx, 1.0))
        safe = ctx.emit("Where", big, t, _num(ctx, 1.0))
        log_t = ctx.emit("Log", safe)
        stirling = ctx.emit(
            "Add",
            ctx.emit("Sub", ctx.emit("Mul", safe, log_t), safe),
            ctx.emit(
                "Mul",
                _num(ctx, 0.5),
                ctx.emit("Log", ctx.emit("Mul", safe, _num(ctx, 2 * math.pi))),
            ),
        )
        loss = ctx.emit("Add", loss, ctx.emit("Where", big, stirling, _num(ctx, 0.0)))
    return reduce_loss(ctx, loss, _out_rank(ctx), reduction)


@lowers(aten.kl_div.default)
def kl_div(ctx: LowerCtx) -> Value:
    """kl_div(Tensor self, Tensor target, int reduction=Mean, *, bool log_target=False):
    exp(t) (t - x) for log targets, else xlogy(t, t) - t x (0 where t == 0, NaN where t < 0);
    'batchmean' is a sum that F.kl_div divides in the graph."""
    x, t = _in(ctx, 0), _in(ctx, 1)
    if ctx.kwarg("log_target", False):
        loss = ctx.emit("Mul", ctx.emit("Exp", t), ctx.emit("Sub", t, x))
    else:
        t_log_t = ctx.emit(
            "Where",
            ctx.emit("Equal", t, _num(ctx, 0.0)),
            _num(ctx, 0.0),
            ctx.emit("Mul", t, ctx.emit("Log", t)),
        )
        loss = ctx.emit("Sub", t_log_t, ctx.emit("Mul", t, x))
    return reduce_loss(ctx, loss, _out_rank(ctx), ctx.arg(2))


# -- binary ---------------------------------------------------------------------------------
@lowers(aten.binary_cross_entropy.default)
def binary_cross_entropy(ctx: LowerCtx) -> Value:
    """binary_cross_entropy(Tensor self, Tensor target, Tensor? weight=None, int reduction=Mean):
    -w (t max(log x, -100) + (1 - t) max(log(1 - x), -100))"""
    weight, reduction = ctx.arg(2), ctx.arg(3)
    xv, t = _in(ctx, 0), _in(ctx, 1)
    floor = _num(ctx, -100.0)
    log_x = ctx.emit("Max", ctx.emit("Log", xv), floor)
    log_1mx = ctx.emit("Max", ctx.emit("Log", ctx.emit("Sub", _num(ctx, 1.0), xv)), floor)
    loss = ctx.emit(
        "Sub",
        ctx.emit("Mul", ctx.emit("Sub", t, _num(ctx, 1.0)), log_1mx),
        ctx.emit("Mul", t, log_x),
    )
    if weight is not None:
        loss = ctx.emit("Mul", loss, ctx.input_as(weight, ctx.out_dtype))
    return reduce_loss(ctx, loss, _out_rank(ctx), reduction)


@lowers(aten.binary_cross_entropy_with_logits.default)
def binary_cross_entropy_with_logits(ctx: LowerCtx) -> Value:
    """binary_cross_entropy_with_logits(Tensor self, Tensor target, Tensor? weight=None,
    Tensor? pos_weight=None, int reduction=Mean): (1 - t) x + lw softplus(-x), with
    lw = (pos_weight - 1) t + 1 (1 without pos_weight), times weight."""
    weight, pos_weight, reduction = ctx.arg(2), ctx.arg(3), ctx.arg(4)
    x, t = _in(ctx, 0), _in(ctx, 1)
    softplus = _log1p_exp(ctx, ctx.emit("Neg", x))
    if pos_weight is not None:
        pw = ctx.input_as(pos_weight, ctx.out_dtype)
        lw = ctx.emit(
            "Add", ctx.emit("Mul", ctx.emit("Sub", pw, _num(ctx, 1.0)), t), _num(ctx, 1.0)
        )
        softplus = ctx.emit("Mul", lw, softplus)
    loss = ctx.emit("Add", ctx.emit("Mul", ctx.emit("Sub", _num(ctx, 1.0), t), x), softplus)
    if weight is not None:
        loss = ctx.emit("Mul", loss, ctx.input_as(weight, ctx.out_dtype))
    return reduce_loss(ctx, loss, _out_rank(ctx), reduction)


@lowers(aten.soft_margin_loss.default)
def soft_margin_loss(ctx: LowerCtx) -> Value:
    """soft_margin_loss(Tensor self, Tensor target, int reduction=Mean): log(1 + exp(-t x))"""
    z = ctx.emit("Neg", ctx.emit("Mul", _in(ctx, 1), _in(ctx, 0)))
    return reduce_loss(ctx, _log1p_exp(ctx, z), _out_rank(ctx), ctx.arg(2))


# -- margins --------------------------------------------------------------------------------
@lowers(aten.margin_ranking_loss.default)
def margin_ranking_loss(ctx: LowerCtx) -> Value:
    """margin_ranking_loss(Tensor input1, Tensor input2, Tensor target, float margin=0.0,
    int reduction=Mean): max(0, -t (x1 - x2) + margin)"""
    d = ctx.emit("Sub", _in(ctx, 0), _in(ctx, 1))
    z = ctx.emit(
        "Add", ctx.emit("Neg", ctx.emit("Mul", _in(ctx, 2), d)), _num(ctx, ctx.arg(3, 0.0))
    )
    return reduce_loss(ctx, _relu(ctx, z), _out_rank(ctx), ctx.arg(4))


@lowers(aten.hinge_embedding_loss.default)
def hinge_embedding_loss(ctx: LowerCtx) -> Value:
    """hinge_embedding_loss(Tensor self, Tensor target, float margin=1.0, int reduction=Mean):
    (t != 1 ? max(0, margin - x) : 0) + (t != -1 ? x : 0)"""
    x, t = _in(ctx, 0), _in(ctx, 1)
    zero = _num(ctx, 0.0)
    margin = _relu(ctx, ctx.emit("Sub", _num(ctx, ctx.arg(2, 1.0)), x))
    loss = ctx.emit(
        "Add",
        ctx.emit("Where", ctx.emit("Equal", t, _num(ctx, 1.0)), zero, margin),
        ctx.emit("Where", ctx.emit("Equal", t, _num(ctx, -1.0)), zero, x),
    )
    return reduce_loss(ctx, loss, _out_rank(ctx), ctx.arg(3))


@lowers(aten.cosine_embedding_loss.default)
def cosine_embedding_loss(ctx: LowerCtx) -> Value:
    """cosine_embedding_loss(Tensor input1, Tensor input2, Tensor target, float margin=0.0,
    int reduction=Mean): cos = <x1, x2> / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12)) over the
    target's rank as dim; 1 - cos where t == 1, max(0, cos - margin) where t == -1, else 0."""
    x1, x2, t = _in(ctx, 0), _in(ctx, 1), _in(ctx, 2)
    dim = ctx.rank(ctx.arg(2))
    rank = ctx.rank(ctx.arg(0))

    def dot(a: Value, b: Value) -> Value:
        return reduce_value(ctx, "ReduceSum", ctx.emit("Mul", a, b), rank, [dim], False)

    eps = _num(ctx, 1e-12)
    mag = ctx.emit("Mul", ctx.emit("Add", dot(x1, x1), eps), ctx.emit("Add", dot(x2, x2), eps))
    cos = ctx.emit("Div", dot(x1, x2), ctx.emit("Sqrt", mag))
    zero = _num(ctx, 0.0)
    pos = ctx.emit(
        "Where", ctx.emit("Equal", t, _num(ctx, 1.0)), ctx.emit("Sub", _num(ctx, 1.0), cos), zero
    )
    neg_value = _relu(ctx, ctx.emit("Sub", cos, _num(ctx, ctx.arg(3, 0.0))))
    neg = ctx.emit("Where", ctx.emit("Equal", t, _num(ctx, -1.0)), neg_value, zero)
    return reduce_loss(ctx, ctx.emit("Add", pos, neg), dim, ctx.arg(4))


def _pairwise_distance(ctx: LowerCtx, a: Value, b: Value, rank: int, p: float, eps: float) -> Value:
    """||a - b + eps||_p over the last dim (torch.pairwise_distance)."""
    diff = ctx.emit("Add", ctx.emit("Sub", a, b), _num(ctx, eps))
    return vector_norm(ctx, diff, rank, p, [rank - 1], False)


@lowers(aten.triplet_margin_loss.default)
def triplet_margin_loss(ctx: LowerCtx) -> Value:
    """triplet_margin_loss(Tensor anchor, Tensor positive, Tensor negative, float margin=1.0,
    float p=2, float eps=1e-06, bool swap=False, int reduction=Mean):
    max(0, margin + d(a, p) - d(a, n)), d(a, n) = min(d(a, n), d(p, n)) with ``swap``."""
    margin, p, eps, swap, reduction = (ctx.arg(i) for i in range(3, 8))
    a, pos, neg = _in(ctx, 0), _in(ctx, 1), _in(ctx, 2)
    rank = _out_rank(ctx)
    d_pos = _pairwise_distance(ctx, a, pos, rank, p, eps)
    d_neg = _pairwise_distance(ctx, a, neg, rank, p, eps)
    if swap:
        d_neg = ctx.emit("Min", d_neg, _pairwise_distance(ctx, pos, neg, rank, p, eps))
    z = ctx.emit("Sub", ctx.emit("Add", d_pos, _num(ctx, margin)), d_neg)
    return reduce_loss(ctx, _relu(ctx, z), rank - 1, reduction)
