"""Normalisations: batch (running or batch statistics), layer, RMS, group, instance."""

from __future__ import annotations

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten


def _ones_or(ctx: LowerCtx, value: object, channels: int, dtype: torch.dtype, fill: float) -> str:
    return (
        ctx.value(value)
        if value is not None
        else ctx.const(torch.full((channels,), fill, dtype=dtype))
    )


def _batch_norm(ctx: LowerCtx, x, weight, bias, mean, var, eps: float) -> Value:  # noqa: ANN001
    channels = ctx.static_shape(x)[1]
    dtype = ctx.dtype(x)
    return ctx.emit(
        "BatchNormalization",
        ctx.value(x),
        _ones_or(ctx, weight, channels, dtype, 1.0),
        _ones_or(ctx, bias, channels, dtype, 0.0),
        ctx.value(mean),
        ctx.value(var),
        epsilon=float(eps),
    )


def _moments_norm(ctx: LowerCtx, x, weight, bias, axes: list[int], eps: float) -> Value:  # noqa: ANN001
    """(x - mean) / sqrt(var + eps) with the biased variance over ``axes``, then the
    per-channel (dim 1) affine; the channel count may be dynamic."""
    rank, dtype = ctx.rank(x), ctx.dtype(x)
    over = ctx.const(axes, torch.int64)
    mean = ctx.emit("ReduceMean", ctx.value(x), over, keepdims=1)
    centered = ctx.emit("Sub", ctx.value(x), mean)
    var = ctx.emit("ReduceMean", ctx.emit("Mul", centered, centered), over, keepdims=1)
    y = ctx.emit("Div", centered, ctx.emit("Sqrt", ctx.emit("Add", var, ctx.const(eps, dtype))))
    per_channel = ctx.const([-1] + [1] * (rank - 2), torch.int64)
    if weight is not None:
        y = ctx.emit("Mul", y, ctx.emit("Reshape", ctx.value(weight), per_channel))
    if bias is not None:
        y = ctx.emit("Add", y, ctx.emit("Reshape", ctx.value(bias), per_channel))
    return y


@lowers(aten.batch_norm.default)
def batch_norm(ctx: LowerCtx) -> Value:
    """batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean,
    Tensor? running_var, bool training, float momentum, float eps, bool cudnn_enabled).
    Without running statistics (track_running_stats=False) torch normalises with the batch
    statistics in eval mode too: mean and biased variance over every dim but the channels."""
    x, w, b, mean, var, training, _momentum, eps = (ctx.arg(i) for i in range(8))
    if mean is None and var is None:
        axes = [0, *range(2, ctx.rank(x))]
        return _moments_norm(ctx, x, w, b, axes, eps)
    if training:
        raise ExportError(
            f"{ctx.node.name}: batch norm in training mode (batch statistics) is not an inference op",
            hint="call model.eval(); for training graphs use fxonnx.export_training",
        )
    return _batch_norm(ctx, x, w, b, mean, var, eps)


@lowers(aten._native_batch_norm_legit_no_training.default)
def native_batch_norm_eval(ctx: LowerCtx) -> list[Value]:
    """_native_batch_norm_legit_no_training(Tensor input, Tensor? weight, Tensor? bias,
    Tensor running_mean, Tensor running_var, float momentum, float eps) -> (Tensor, Tensor, Tensor)"""
    x, w, b, mean, var, _momentum, eps = (ctx.arg(i) for i in range(7))
    y = _batch_norm(ctx, x, w, b, mean, var, eps)
    empty = ctx.const(torch.zeros(0, dtype=ctx.dtype(x)))
    return [y, empty, empty]


@lowers(aten.layer_norm.default)
def layer_norm(ctx: LowerCtx) -> Value:
    """layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None,
    float eps=1e-05, bool cudnn_enable=True) -> Tensor"""
    x, shape, w, b, eps = (ctx.arg(i) for i in range(5))
    rank = ctx.rank(x)
    dtype = ctx.dtype(x)
    scale = ctx.value(w) if w is not None else ctx.const(torch.ones(tuple(shape), dtype=dtype))
    bias = None if b is None else ctx.value(b)
    return ctx.emit(
        "LayerNormalization", ctx.value(x), scale, bias, axis=rank - len(shape), epsilon=float(eps)
    )


@lowers(aten.native_layer_norm.default)
def native_layer_norm(ctx: LowerCtx) -> list[Value]:
    """native_layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias,
    float eps) -> (Tensor, Tensor, Tensor): output, mean, rstd"""
    x, shape, w, b, eps = (ctx.arg(i) for i in range(5))
    rank = ctx.rank(x)
    dtype = ctx.dtype(x)
    scale = ctx.value(w) if w is not None else ctx.const(torch.ones(tuple(shape), dtype=dtype))
    bias = None if b is None else ctx.value(b)
    return ctx.emit(
        "LayerNormalization",
        ctx.value(x),
        scale,
        bias,
        outputs=3,
        axis=rank - len(shape),
        epsilon=float(eps),
    )


@lowers(aten.rms_norm.default)
def rms_norm(ctx: LowerCtx) -> Value:
    """rms_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, float? eps=None)
    -> Tensor: x * rsqrt(mean(x^2 over the last len(normalized_shape) dims) + eps) * weight,
    computed in float32 for half inputs; eps None is finfo(float32 or float64).eps, as in
    torch's own decomposition."""
    x, shape, w, eps = (ctx.arg(i) for i in range(4))
    rank, dtype = ctx.rank(x), ctx.dtype(x)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    if eps is None:
        eps = torch.finfo(compute).eps
    value = ctx.cast(ctx.value(x), compute, dtype)
    dims = ctx.const(list(range(rank - len(shape), rank)), torch.int64)
    mean_sq = ctx.emit("ReduceMean", ctx.emit("Mul", value, value), dims, keepdims=1)
    denom = ctx.emit("Sqrt", ctx.emit("Add", mean_sq, ctx.const(float(eps), compute)))
    y = ctx.emit("Div", value, denom)
    if w is not None:
        y = ctx.emit("Mul", y, ctx.input_as(w, compute))
    return ctx.cast(y, ctx.out_dtype, compute)


@lowers(aten.group_norm.default)
def group_norm(ctx: LowerCtx) -> Value:
    """group_norm(Tensor input, int num_groups, Tensor? weight=None, Tensor? bias=None,
    float eps=1e-05, bool cudnn_enabled=True) -> Tensor. Normalise (N, G, -1) with
    InstanceNormalization-free math: mean/var over the group, then per-channel affine."""
    x, groups, w, b, eps = (ctx.arg(i) for i in range(5))
    shape = ctx.static_shape(x)
    rank, channels, dtype = len(shape), shape[1], ctx.dtype(x)
    xv = ctx.value(x)
    grouped = ctx.emit("Reshape", xv, ctx.const([0, groups, -1], torch.int64))
    axis = ctx.const([2], torch.int64)
    mean = ctx.emit("ReduceMean", grouped, axis)
    centered = ctx.emit("Sub", grouped, mean)
    var = ctx.emit("ReduceMean", ctx.emit("Mul", centered, centered), axis)
    normed = ctx.emit(
        "Div", centered, ctx.emit("Sqrt", ctx.emit("Add", var, ctx.const(eps, dtype)))
    )
    y = ctx.emit("Reshape", normed, ctx.shape_of(x))
    if w is None and b is None:
        return y
    affine_shape = ctx.const([channels] + [1] * (rank - 2), torch.int64)
    if w is not None:
        y = ctx.emit("Mul", y, ctx.emit("Reshape", ctx.value(w), affine_shape))
    if b is not None:
        y = ctx.emit("Add", y, ctx.emit("Reshape", ctx.value(b), affine_shape))
    return y


@lowers(aten.instance_norm.default)
def instance_norm(ctx: LowerCtx) -> Value:
    """instance_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean,
    Tensor? running_var, bool use_input_stats, float momentum, float eps, bool cudnn_enabled):
    per-sample statistics (InstanceNormalization), or the running ones (track_running_stats
    in eval mode), which is batch norm."""
    x, w, b, mean, var, use_input_stats, _momentum, eps = (ctx.arg(i) for i in range(8))
    if not use_input_stats:
        return _batch_norm(ctx, x, w, b, mean, var, eps)
    channels = ctx.static_shape(x)[1]
    if channels is None:  # InstanceNormalization wants (C,) scales: write the math out
        return _moments_norm(ctx, x, w, b, list(range(2, ctx.rank(x))), eps)
    dtype = ctx.dtype(x)
    return ctx.emit(
        "InstanceNormalization",
        ctx.value(x),
        _ones_or(ctx, w, channels, dtype, 1.0),
        _ones_or(ctx, b, channels, dtype, 0.0),
        epsilon=float(eps),
    )
