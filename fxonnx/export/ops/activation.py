"""Activations: the torch.nn non-linearities that reach ATen as single ops."""

from __future__ import annotations

import math

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten


@lowers(aten.sigmoid.default, aten.tanh.default)
def sigmoid_tanh(ctx: LowerCtx) -> Value:
    """sigmoid/tanh(Tensor self) -> Tensor: integer and bool inputs are cast to the float
    result first (torch promotes them; ONNX Sigmoid and Tanh take floats only)."""
    op = "Sigmoid" if ctx.node.target == aten.sigmoid.default else "Tanh"
    return ctx.emit(op, ctx.input_as(ctx.arg(0), ctx.out_dtype))


@lowers(aten.relu.default)
def relu(ctx: LowerCtx) -> Value:
    """relu(Tensor self) -> Tensor: Relu for floats, Max(x, 0) for integers (exact; onnxruntime
    has no int64 Relu kernel)."""
    if ctx.out_dtype.is_floating_point:
        return ctx.emit("Relu", ctx.input(0))
    return ctx.emit("Max", ctx.input(0), ctx.const(0, ctx.out_dtype))


def _clip(ctx: LowerCtx, lo: float, hi: float) -> Value:
    dtype = ctx.out_dtype
    return ctx.emit("Clip", ctx.input(0), ctx.const(lo, dtype), ctx.const(hi, dtype))


@lowers(aten.hardtanh.default)
def hardtanh(ctx: LowerCtx) -> Value:
    """hardtanh(Tensor self, Scalar min_val=-1, Scalar max_val=1) -> Tensor"""
    return _clip(ctx, ctx.arg(1), ctx.arg(2))


@lowers(aten.relu6.default)
def relu6(ctx: LowerCtx) -> Value:
    """relu6(Tensor self) -> Tensor"""
    return _clip(ctx, 0, 6)


@lowers(aten.gelu.default)
def gelu(ctx: LowerCtx) -> Value:
    """gelu(Tensor self, *, str approximate='none') -> Tensor: ONNX Gelu from opset 20, else
    0.5 x (1 + erf(x / sqrt 2)) or 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    approximate = ctx.kwarg("approximate", "none")
    if ctx.opset >= 20:
        return ctx.emit("Gelu", ctx.input(0), approximate=approximate)
    x, dtype = ctx.input(0), ctx.out_dtype
    if approximate == "tanh":
        cube = ctx.emit("Mul", ctx.emit("Mul", x, x), x)
        inner = ctx.emit("Add", x, ctx.emit("Mul", cube, ctx.const(0.044715, dtype)))
        inner = ctx.emit("Mul", inner, ctx.const(math.sqrt(2 / math.pi), dtype))
        core = ctx.emit("Tanh", inner)
    else:
        core = ctx.emit("Erf", ctx.emit("Mul", x, ctx.const(1 / math.sqrt(2), dtype)))
    half_x = ctx.emit("Mul", x, ctx.const(0.5, dtype))
    return ctx.emit("Mul", half_x, ctx.emit("Add", core, ctx.const(1.0, dtype)))


@lowers(aten.silu.default)
def silu(ctx: LowerCtx) -> Value:
    """silu(Tensor self) -> Tensor: x * sigmoid(x)"""
    x = ctx.input(0)
    return ctx.emit("Mul", x, ctx.emit("Sigmoid", x))


@lowers(aten.mish.default)
def mish(ctx: LowerCtx) -> Value:
    """mish(Tensor self) -> Tensor: x * tanh(softplus(x))"""
    return ctx.emit("Mish", ctx.input(0))


@lowers(aten.leaky_relu.default)
def leaky_relu(ctx: LowerCtx) -> Value:
    """leaky_relu(Tensor self, Scalar negative_slope=0.01) -> Tensor"""
    return ctx.emit("LeakyRelu", ctx.input(0), alpha=float(ctx.arg(1)))


@lowers(aten.rrelu.default)
def rrelu(ctx: LowerCtx) -> Value:
    """rrelu(Tensor self, Scalar lower=1/8, Scalar upper=1/3, bool training=False, ...): in
    eval mode a leaky ReLU with the mean slope (lower + upper) / 2."""
    if ctx.arg(3):
        raise ExportError(f"{ctx.node.name}: rrelu in training mode samples random slopes")
    return ctx.emit("LeakyRelu", ctx.input(0), alpha=(float(ctx.arg(1)) + float(ctx.arg(2))) / 2)


@lowers(aten.prelu.default, aten._prelu_kernel.default)
def prelu(ctx: LowerCtx) -> Value:
    """prelu(Tensor self, Tensor weight) -> Tensor: one slope per channel (dim 1), or one for
    all; ONNX PRelu broadcasts from the right, so the slopes become (C, 1, ..., 1)."""
    x, w = ctx.arg(0), ctx.arg(1)
    rank, slopes = ctx.rank(x), ctx.value(w)
    if rank >= 2 and ctx.rank(w) == 1 and ctx.static_shape(w)[0] != 1:
        slopes = ctx.emit("Reshape", slopes, ctx.const([-1] + [1] * (rank - 2), torch.int64))
    elif rank == 0:  # a (1,) slope would broadcast a 0-d input up to (1,)
        slopes = ctx.emit("Reshape", slopes, ctx.const([], torch.int64))
    return ctx.emit("PRelu", ctx.value(x), slopes)


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
    """elu(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1) -> Tensor:
    scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1))"""
    alpha, scale, input_scale = (float(ctx.arg(i)) for i in (1, 2, 3))
    if scale == 1 and input_scale == 1:
        return ctx.emit("Elu", ctx.input(0), alpha=alpha)
    x, dtype = ctx.input(0), ctx.out_dtype
    negative = ctx.emit("Exp", ctx.emit("Mul", x, ctx.const(input_scale, dtype)))
    negative = ctx.emit(
        "Mul", ctx.emit("Sub", negative, ctx.const(1.0, dtype)), ctx.const(alpha, dtype)
    )
    y = ctx.emit("Where", ctx.emit("Greater", x, ctx.const(0.0, dtype)), x, negative)
    return ctx.emit("Mul", y, ctx.const(scale, dtype))


@lowers(aten.selu.default)
def selu(ctx: LowerCtx) -> Value:
    """selu(Tensor self) -> Tensor"""
    return ctx.emit("Selu", ctx.input(0), alpha=1.6732632423543772, gamma=1.0507009873554805)


@lowers(aten.celu.default)
def celu(ctx: LowerCtx) -> Value:
    """celu(Tensor self, Scalar alpha=1.0) -> Tensor: max(0, x) + min(0, alpha (exp(x / alpha) - 1))"""
    alpha = float(ctx.arg(1))
    if ctx.out_dtype == torch.float32:
        return ctx.emit("Celu", ctx.input(0), alpha=alpha)
    dtype = ctx.out_dtype
    y = ctx.emit("Elu", ctx.emit("Mul", ctx.input(0), ctx.const(1 / alpha, dtype)))
    return ctx.emit("Mul", y, ctx.const(alpha, dtype))


@lowers(aten.softplus.default)
def softplus(ctx: LowerCtx) -> Value:
    """softplus(Tensor self, Scalar beta=1, Scalar threshold=20) -> Tensor:
    x where beta x > threshold, else log(1 + exp(beta x)) / beta"""
    beta, threshold = float(ctx.arg(1)), float(ctx.arg(2))
    x, dtype = ctx.input(0), ctx.out_dtype
    scaled = x if beta == 1 else ctx.emit("Mul", x, ctx.const(beta, dtype))
    soft = ctx.emit("Softplus", scaled)
    if beta != 1:
        soft = ctx.emit("Div", soft, ctx.const(beta, dtype))
    linear = ctx.emit("Greater", scaled, ctx.const(threshold, dtype))
    return ctx.emit("Where", linear, x, soft)


@lowers(aten.log_sigmoid.default, aten.log_sigmoid_forward.default)
def log_sigmoid(ctx: LowerCtx) -> Value:
    """log_sigmoid(Tensor self) -> Tensor: -softplus(-x)"""
    y = ctx.emit("Neg", ctx.emit("Softplus", ctx.emit("Neg", ctx.input(0))))
    if ctx.node.target == aten.log_sigmoid_forward.default:
        return [y, ctx.const(torch.zeros(0, dtype=ctx.out_dtype))]
    return y


@lowers(aten.threshold.default)
def threshold(ctx: LowerCtx) -> Value:
    """threshold(Tensor self, Scalar threshold, Scalar value) -> Tensor: x if x > t else value"""
    x, dtype = ctx.input(0), ctx.out_dtype
    keep = ctx.emit("Greater", x, ctx.const(ctx.arg(1), dtype))
    return ctx.emit("Where", keep, x, ctx.const(ctx.arg(2), dtype))


@lowers(aten.hardshrink.default, aten.softshrink.default)
def shrink(ctx: LowerCtx) -> Value:
    """hardshrink/softshrink(Tensor self, Scalar lambd=0.5) -> Tensor: ONNX Shrink with
    bias 0 (hard) or lambd (soft)"""
    lambd = float(ctx.arg(1))
    bias = lambd if ctx.node.target == aten.softshrink.default else 0.0
    return ctx.emit("Shrink", ctx.input(0), lambd=lambd, bias=bias)


@lowers(aten.glu.default)
def glu(ctx: LowerCtx) -> Value:
    """glu(Tensor self, int dim=-1) -> Tensor: a * sigmoid(b) for the halves a, b along dim"""
    dim = ctx.arg(1) % ctx.rank(ctx.arg(0))
    a, b = ctx.emit("Split", ctx.input(0), outputs=2, axis=dim, num_outputs=2)
    return ctx.emit("Mul", a, ctx.emit("Sigmoid", b))
