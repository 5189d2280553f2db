"""Training graphs: ATen backward ops, losses and train-mode batch norm in standard ONNX ops.

These ops appear in joint forward+backward graphs (``fxonnx.export_training``), which autograd
writes with PyTorch's own derivative formulas; each rule here states the math of one of them.
Convolution gradients are two convolutions, pooling gradients a scatter or a transposed
convolution with a ones kernel, normalisation gradients the usual closed forms.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten

# node.meta key: set on nodes of joint training graphs whose lowering is only valid there
TRAINING_META = "fxonnx.training"


def _i64(ctx: LowerCtx, values: list[int]) -> Value:
    return ctx.const(list(values), torch.int64)


def _sum(ctx: LowerCtx, x: Value, axes: list[int], keepdims: int = 1) -> Value:
    return ctx.emit("ReduceSum", x, _i64(ctx, axes), keepdims=keepdims)


def _mean(ctx: LowerCtx, x: Value, axes: list[int], keepdims: int = 1) -> Value:
    return ctx.emit("ReduceMean", x, _i64(ctx, axes), keepdims=keepdims)


def _zeros_like(ctx: LowerCtx, x: Any, dtype: torch.dtype) -> Value:
    return ctx.emit("Expand", ctx.const(0.0, dtype), ctx.shape_of(x))


def _numel(ctx: LowerCtx, x: Any, dtype: torch.dtype) -> Value:
    return ctx.cast(ctx.emit("Size", ctx.value(x)), dtype)


def _mask(ctx: LowerCtx, n: int) -> list[bool]:
    mask = ctx.arg(n)
    return [bool(m) for m in mask] if mask is not None else [True, True, True]


def _channel_shape(rank: int) -> list[int]:
    return [1, -1] + [1] * (rank - 2)


# -- pointwise ----------------------------------------------------------------------------
@lowers(aten.threshold_backward.default)
def threshold_backward(ctx: LowerCtx) -> Value:
    """threshold_backward(Tensor grad_output, Tensor self, Scalar threshold):
    grad where self > threshold, else 0 (relu's gradient)."""
    dtype = ctx.out_dtype
    below = ctx.emit("LessOrEqual", ctx.input(1), ctx.const(ctx.arg(2), ctx.dtype(ctx.arg(1))))
    return ctx.emit("Where", below, ctx.const(0.0, dtype), ctx.input(0))


@lowers(aten.native_dropout_backward.default)
def native_dropout_backward(ctx: LowerCtx) -> Value:
    """native_dropout_backward(Tensor grad_output, Tensor mask, float scale): grad * (mask *
    scale), as torch computes it (a NaN gradient at a dropped position stays NaN). The mask
    comes from the forward's native_dropout, which stays in torch (its random mask)."""
    dtype = ctx.out_dtype  # an integer gradient times the float scale is float, as in torch
    grad = ctx.cast(ctx.input(0), dtype, ctx.dtype(ctx.arg(0)))
    keep = ctx.cast(ctx.input(1), dtype, ctx.dtype(ctx.arg(1)))
    return ctx.emit("Mul", grad, ctx.emit("Mul", keep, ctx.const(ctx.arg(2), dtype)))


@lowers(aten.hardtanh_backward.default)
def hardtanh_backward(ctx: LowerCtx) -> Value:
    """hardtanh_backward(Tensor grad_output, Tensor self, Scalar min_val, Scalar max_val):
    grad where min_val < self < max_val, else 0."""
    dtype = ctx.out_dtype
    x = ctx.input(1)
    low = ctx.emit("LessOrEqual", x, ctx.const(ctx.arg(2), dtype))
    high = ctx.emit("GreaterOrEqual", x, ctx.const(ctx.arg(3), dtype))
    return ctx.emit("Where", ctx.emit("Or", low, high), ctx.const(0.0, dtype), ctx.input(0))


@lowers(aten.tanh_backward.default)
def tanh_backward(ctx: LowerCtx) -> Value:
    """tanh_backward(Tensor grad_output, Tensor output): grad * (1 - y^2)."""
    y = ctx.input(1)
    one_minus = ctx.emit("Sub", ctx.const(1.0, ctx.out_dtype), ctx.emit("Mul", y, y))
    return ctx.emit("Mul", ctx.input(0), one_minus)


@lowers(aten.sigmoid_backward.default)
def sigmoid_backward(ctx: LowerCtx) -> Value:
    """sigmoid_backward(Tensor grad_output, Tensor output): grad * y * (1 - y)."""
    y = ctx.input(1)
    one_minus = ctx.emit("Sub", ctx.const(1.0, ctx.out_dtype), y)
    return ctx.emit("Mul", ctx.input(0), ctx.emit("Mul", y, one_minus))


@lowers(aten.silu_backward.default)
def silu_backward(ctx: LowerCtx) -> Value:
    """silu_backward(Tensor grad_output, Tensor self): grad * s * (1 + x * (1 - s)),
    s = sigmoid(x)."""
    dtype = ctx.out_dtype
    x = ctx.input(1)
    s = ctx.emit("Sigmoid", x)
    one = ctx.const(1.0, dtype)
    inner = ctx.emit("Add", one, ctx.emit("Mul", x, ctx.emit("Sub", one, s)))
    return ctx.emit("Mul", ctx.input(0), ctx.emit("Mul", s, inner))


@lowers(aten.gelu_backward.default)
def gelu_backward(ctx: LowerCtx) -> Value:
    """gelu_backward(Tensor grad_output, Tensor self, *, str approximate='none'):
    grad * (Phi(x) + x * phi(x)); with approximate='tanh' torch's tanh formula."""
    dtype = ctx.out_dtype
    x = ctx.input(1)

    def c(v: float) -> Value:
        return ctx.const(v, dtype)

    if ctx.kwarg("approximate", "none") == "tanh":
        beta, kappa = math.sqrt(2.0) * (2.0 / math.sqrt(math.pi)) * 0.5, 0.044715
        x_sq = ctx.emit("Mul", x, x)
        inner = ctx.emit(
            "Mul", c(beta), ctx.emit("Add", x, ctx.emit("Mul", c(kappa), ctx.emit("Mul", x_sq, x)))
        )
        t = ctx.emit("Tanh", inner)
        left = ctx.emit("Mul", c(0.5), ctx.emit("Add", c(1.0), t))
        slope = ctx.emit("Add", c(1.0), ctx.emit("Mul", c(3.0 * kappa), x_sq))
        sech2 = ctx.emit("Sub", c(1.0), ctx.emit("Mul", t, t))
        right = ctx.emit(
            "Mul",
            ctx.emit("Mul", c(0.5), x),
            ctx.emit("Mul", sech2, ctx.emit("Mul", c(beta), slope)),
        )
        return ctx.emit("Mul", ctx.input(0), ctx.emit("Add", left, right))
    cdf = ctx.emit(
        "Mul",
        c(0.5),
        ctx.emit("Add", c(1.0), ctx.emit("Erf", ctx.emit("Mul", x, c(math.sqrt(0.5))))),
    )
    pdf = ctx.emit(
        "Mul",
        c(1.0 / math.sqrt(2.0 * math.pi)),
        ctx.emit("Exp", ctx.emit("Mul", c(-0.5), ctx.emit("Mul", x, x))),
    )
    return ctx.emit("Mul", ctx.input(0), ctx.emit("Add", cdf, ctx.emit("Mul", x, pdf)))


@lowers(aten._log_softmax_backward_data.default)
def log_softmax_backward(ctx: LowerCtx) -> Value:
    """_log_softmax_backward_data(Tensor grad_output, Tensor output, int dim, ScalarType
    input_dtype): grad - exp(y) * sum(grad, dim)."""
    g, y, dim = ctx.input(0), ctx.input(1), ctx.arg(2)
    return ctx.emit("Sub", g, ctx.emit("Mul", ctx.emit("Exp", y), _sum(ctx, g, [dim])))


@lowers(aten._softmax_backward_data.default)
def softmax_backward(ctx: LowerCtx) -> Value:
    """_softmax_backward_data(Tensor grad_output, Tensor output, int dim, ScalarType
    input_dtype): y * (grad - sum(grad * y, dim))."""
    g, y, dim = ctx.input(0), ctx.input(1), ctx.arg(2)
    return ctx.emit("Mul", y, ctx.emit("Sub", g, _sum(ctx, ctx.emit("Mul", g, y), [dim])))


# -- losses -------------------------------------------------------------------------------
@lowers(aten.mse_loss.default)
def mse_loss(ctx: LowerCtx) -> Value:
    """mse_loss(Tensor self, Tensor target, int reduction=Mean): (x - t)^2, reduced."""
    d = ctx.emit("Sub", ctx.input(0), ctx.input(1))
    sq = ctx.emit("Mul", d, d)
    reduction = ctx.arg(2)
    if reduction == 0:
        return sq
    return ctx.emit("ReduceMean" if reduction == 1 else "ReduceSum", sq, keepdims=0)


@lowers(aten.mse_loss_backward.default)
def mse_loss_backward(ctx: LowerCtx) -> Value:
    """mse_loss_backward(Tensor grad_output, Tensor self, Tensor target, int reduction):
    2 (x - t) grad, divided by numel(x) for the mean."""
    dtype = ctx.out_dtype
    d = ctx.emit("Sub", ctx.input(1), ctx.input(2))
    g = ctx.emit("Mul", ctx.emit("Mul", d, ctx.const(2.0, dtype)), ctx.input(0))
    if ctx.arg(3) == 1:
        g = ctx.emit("Div", g, _numel(ctx, ctx.arg(1), dtype))
    return g


class _Nll:
    """Per-sample pieces of nll_loss: safe class ids, the weight of each sample's class
    (0 where target == ignore_index) and the total weight, which is the mean's divisor."""

    def __init__(self, ctx: LowerCtx, x: Any, target: Any, weight: Any, ignore: int) -> None:
        self.dtype = ctx.dtype(x)
        self.unbatched = ctx.rank(x) == 1
        t = ctx.value(target)
        if self.unbatched:
            t = ctx.emit("Unsqueeze", t, _i64(ctx, [0]))
        valid = ctx.emit("Not", ctx.emit("Equal", t, ctx.const(ignore, torch.int64)))
        self.target = ctx.emit("Where", valid, t, ctx.const(0, torch.int64))
        w = ctx.cast(valid, self.dtype, torch.bool)
        if weight is not None:
            w = ctx.emit("Mul", w, ctx.emit("Gather", ctx.value(weight), self.target, axis=0))
        self.weight = w
        self.total = ctx.emit("ReduceSum", w, keepdims=0)  # over every dim: (N,) or (N, *d)


@lowers(aten.nll_loss_forward.default)
def nll_loss_forward(ctx: LowerCtx) -> list[Value]:
    """nll_loss_forward(Tensor self, Tensor target, Tensor? weight, int reduction,
    SymInt ignore_index) -> (Tensor output, Tensor total_weight). Mean divides by the real
    total weight of the non-ignored targets (never a constant 1)."""
    x, target, weight, reduction, ignore = (ctx.arg(i) for i in range(5))
    nll = _Nll(ctx, x, target, weight, ignore)
    xv = ctx.value(x)
    if nll.unbatched:
        xv = ctx.emit("Unsqueeze", xv, _i64(ctx, [0]))
    index = ctx.emit("Unsqueeze", nll.target, _i64(ctx, [1]))
    picked = ctx.emit("Squeeze", ctx.emit("GatherElements", xv, index, axis=1), _i64(ctx, [1]))
    losses = ctx.emit("Neg", ctx.emit("Mul", picked, nll.weight))
    if reduction == 0:
        out = ctx.emit("Squeeze", losses, _i64(ctx, [0])) if nll.unbatched else losses
        return [out, ctx.const(0.0, nll.dtype)]
    total = ctx.emit("ReduceSum", losses, keepdims=0)
    if reduction == 1:
        total = ctx.emit("Div", total, nll.total)
    return [total, nll.total]


@lowers(aten.nll_loss_backward.default)
def nll_loss_backward(ctx: LowerCtx) -> Value:
    """nll_loss_backward(Tensor grad_output, Tensor self, Tensor target, Tensor? weight,
    int reduction, SymInt ignore_index, Tensor total_weight): -w[target] * grad scattered
    to each sample's target class; the mean divides by ``total_weight`` (the forward's)."""
    g, x, target, weight, reduction, ignore, total = (ctx.arg(i) for i in range(7))
    nll = _Nll(ctx, x, target, weight, ignore)
    gv = ctx.value(g)
    if reduction == 0 and nll.unbatched:
        gv = ctx.emit("Unsqueeze", gv, _i64(ctx, [0]))
    scale = ctx.emit("Mul", ctx.emit("Neg", nll.weight), gv)
    if reduction == 1:
        scale = ctx.emit("Div", scale, ctx.value(total))
    xv = ctx.value(x)
    if nll.unbatched:
        xv = ctx.emit("Unsqueeze", xv, _i64(ctx, [0]))
    zeros = ctx.emit("Expand", ctx.const(0.0, nll.dtype), ctx.emit("Shape", xv))
    one = _i64(ctx, [1])
    out = ctx.emit(
        "ScatterElements",
        zeros,
        ctx.emit("Unsqueeze", nll.target, one),
        ctx.emit("Unsqueeze", scale, one),
        axis=1,
    )
    return ctx.emit("Squeeze", out, _i64(ctx, [0])) if nll.unbatched else out


# -- convolution --------------------------------------------------------------------------
def _n(value: Any, n: int) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * n if len(values) == 1 else values


@lowers(aten.convolution_backward.default)
def convolution_backward(ctx: LowerCtx) -> list[Value | None]:
    """convolution_backward(Tensor grad_output, Tensor input, Tensor weight, SymInt[]?
    bias_sizes, SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed,
    SymInt[] output_padding, SymInt groups, bool[3] output_mask) -> (Tensor, Tensor, Tensor).

    grad_input: the transposed convolution of grad_output with the same weight (output
    padding restores the input size floor-division dropped). grad_weight: input patches
    (im2col as a one-hot depthwise convolution) times grad_output, one matrix product per
    group (see ``_conv_weight_grad``). grad_bias: grad_output summed. A transposed convolution
    is the adjoint of the convolution with the same weight, <convT(x, w), g> = <x, conv(g, w)>:
    its grad_input is conv(g, w), its grad_weight the convolution's with input and grad_output
    swapped."""
    g, x, w = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    stride, padding, dilation, transposed = ctx.arg(4), ctx.arg(5), ctx.arg(6), ctx.arg(7)
    groups, mask = int(ctx.arg(9)), _mask(ctx, 10)
    if transposed:
        return _conv_transpose_backward(ctx, g, x, w, stride, padding, dilation, groups, mask)
    n = ctx.rank(w) - 2
    stride, padding, dilation = _n(stride, n), _n(padding, n), _n(dilation, n)
    x_shape, g_shape, w_shape = ctx.static_shape(x), ctx.static_shape(g), ctx.static_shape(w)
    spatial, out_spatial, kernel = list(x_shape[2:]), list(g_shape[2:]), list(w_shape[2:])
    if None in spatial or None in out_spatial or x_shape[1] is None:
        raise ExportError(f"{ctx.node.name}: convolution gradient over dynamic spatial dims")
    results: list[Value | None] = [None, None, None]
    if mask[0]:
        out_pad = [
            i - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
            for i, o, s, p, d, k in zip(
                spatial, out_spatial, stride, padding, dilation, kernel, strict=True
            )
        ]
        results[0] = ctx.emit(
            "ConvTranspose",
            ctx.value(g),
            ctx.value(w),
            strides=stride,
            pads=padding + padding,
            dilations=dilation,
            group=groups,
            output_padding=out_pad,
        )
    if mask[1]:
        results[1] = _conv_weight_grad(
            ctx, g, x, w, kernel, stride, padding, dilation, groups, out_spatial
        )
    if mask[2]:
        results[2] = _sum(ctx, ctx.value(g), [0] + list(range(2, 2 + n)), keepdims=0)
    return results


def _conv_transpose_backward(
    ctx: LowerCtx,
    g: Any,
    x: Any,
    w: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    mask: list[bool],
) -> list[Value | None]:
    n = ctx.rank(w) - 2
    stride, padding, dilation = _n(stride, n), _n(padding, n), _n(dilation, n)
    x_shape, g_shape = ctx.static_shape(x), ctx.static_shape(g)
    spatial, out_spatial = list(x_shape[2:]), list(g_shape[2:])
    if None in spatial or None in out_spatial or g_shape[1] is None:
        raise ExportError(f"{ctx.node.name}: convolution gradient over dynamic spatial dims")
    results: list[Value | None] = [None, None, None]
    if mask[0]:
        results[0] = ctx.emit(
            "Conv",
            ctx.value(g),
            ctx.value(w),
            strides=stride,
            pads=padding + padding,
            dilations=dilation,
            group=groups,
        )
    if mask[1]:
        kernel = list(ctx.static_shape(w)[2:])
        results[1] = _conv_weight_grad(
            ctx, x, g, w, kernel, stride, padding, dilation, groups, spatial
        )
    if mask[2]:
        results[2] = _sum(ctx, ctx.value(g), [0] + list(range(2, 2 + n)), keepdims=0)
    return results


def _conv_weight_grad(
    ctx: LowerCtx,
    g: Any,
    x: Any,
    w: Any,
    kernel: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    out_spatial: list[int],
) -> Value:
    """grad_weight[o, i, k] = sum over samples and positions of grad_output[o] * input patch
    [i, k]: the patches come from a depthwise convolution with one-hot kernels (im2col). When
    a sample has more positions L than output channels co (the early, wide layers), one
    matrix product per sample and group, (ci*K, L) @ (L, co), summed over samples: no
    transpose of the large patch tensor. Otherwise (deep layers, few positions: the per-sample
    products would be larger than the patches) the samples are moved next to the positions
    and each group is one product over all of them, (co, N*L) @ (N*L, ci*K): resnet18's
    layer3/layer4 gradients at batch 8 took 23-24 ms instead of 30-40 ms (torch: 18-21)."""
    cin, cout = int(ctx.static_shape(x)[1]), int(ctx.static_shape(w)[0])
    ci, co = cin // groups, cout // groups
    taps, positions = math.prod(kernel), math.prod(out_spatial)
    if taps == 1 and all(s == 1 for s in stride) and not any(padding):
        patches = ctx.value(x)
    else:
        eye = torch.eye(taps, dtype=ctx.dtype(x)).reshape(taps, 1, *kernel)
        onehot = ctx.const(eye.repeat(cin, *([1] * (len(kernel) + 1))))
        patches = ctx.emit(
            "Conv",
            ctx.value(x),
            onehot,
            strides=stride,
            pads=padding + padding,
            dilations=dilation,
            group=cin,
        )
    p = ctx.emit("Reshape", patches, _i64(ctx, [-1, groups, ci * taps, positions]))
    q = ctx.emit("Reshape", ctx.value(g), _i64(ctx, [-1, groups, co, positions]))
    if co > positions:
        # whole rows of L positions move: (groups, ci*K, N, L) and (groups, co, N, L)
        pt = ctx.emit("Transpose", p, perm=[1, 2, 0, 3])
        pt = ctx.emit("Reshape", pt, _i64(ctx, [groups, ci * taps, -1]))
        qt = ctx.emit("Transpose", q, perm=[1, 2, 0, 3])
        qt = ctx.emit("Reshape", qt, _i64(ctx, [groups, co, -1]))
        # (groups, co, N*L) @ (groups, N*L, ci*K); onnxruntime folds the Transpose into
        # the product (FusedMatMul, transB)
        gw = ctx.emit("MatMul", qt, ctx.emit("Transpose", pt, perm=[0, 2, 1]))
        return ctx.emit("Reshape", gw, _i64(ctx, [cout, ci, *kernel]))
    q = ctx.emit("Transpose", q, perm=[0, 1, 3, 2])  # (N, groups, L, co): the small one
    per_sample = ctx.emit("MatMul", p, q)  # (N, groups, ci*K, co)
    gw = ctx.emit("Transpose", _sum(ctx, per_sample, [0], keepdims=0), perm=[0, 2, 1])
    return ctx.emit("Reshape", gw, _i64(ctx, [cout, ci, *kernel]))


# -- pooling ------------------------------------------------------------------------------
@lowers(
    aten.max_pool2d_with_indices_backward.default, aten.max_pool3d_with_indices_backward.default
)
def max_pool_backward(ctx: LowerCtx) -> Value:
    """max_pool2d_with_indices_backward(Tensor grad_output, Tensor self, int[2] kernel_size,
    int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode, Tensor indices):
    grad_output added into zeros at each window's argmax (indices count within a plane)."""
    g, x, indices = ctx.arg(0), ctx.arg(1), ctx.arg(7)
    flat = _i64(ctx, [0, 0, -1])
    dtype = ctx.out_dtype
    plane = ctx.emit("Reshape", _zeros_like(ctx, x, dtype), flat)
    out = ctx.emit(
        "ScatterElements",
        plane,
        ctx.emit("Reshape", ctx.value(indices), flat),
        ctx.emit("Reshape", ctx.value(g), flat),
        axis=2,
        reduction="add",
    )
    return ctx.emit("Reshape", out, ctx.shape_of(x))


def _spread(
    ctx: LowerCtx, g: Value, x: Any, kernel: list[int], stride: list[int], pad: list[int]
) -> Value:
    """Each output position's gradient added to every input position of its window: a
    depthwise transposed convolution with a ones kernel, cropped to the (unpadded) input."""
    dtype = ctx.out_dtype
    shape = ctx.static_shape(x)
    channels, size = shape[1], list(shape[2:])
    n = len(kernel)
    ones = ctx.const(torch.ones((channels, 1, *kernel), dtype=dtype))
    full = ctx.emit("ConvTranspose", g, ones, strides=stride, group=channels, pads=[0] * (2 * n))
    out_size = list(ctx.static_shape(ctx.arg(0))[2:])
    reach = [(o - 1) * s + k for o, s, k in zip(out_size, stride, kernel, strict=True)]
    short = [max(0, p + i - r) for p, i, r in zip(pad, size, reach, strict=True)]
    axes = _i64(ctx, list(range(2, 2 + n)))
    if any(short):
        full = ctx.emit("Pad", full, _i64(ctx, [0] * n + short), ctx.const(0.0, dtype), axes)
    ends = [p + i for p, i in zip(pad, size, strict=True)]
    return ctx.emit("Slice", full, _i64(ctx, pad), _i64(ctx, ends), axes)


@lowers(aten.avg_pool2d_backward.default, aten.avg_pool3d_backward.default)
def avg_pool_backward(ctx: LowerCtx) -> Value:
    """avg_pool2d_backward(Tensor grad_output, Tensor self, int[2] kernel_size, int[2] stride,
    int[2] padding, bool ceil_mode, bool count_include_pad, int? divisor_override): grad
    divided by torch's divisor per output position, then spread over each window."""
    g, x = ctx.arg(0), ctx.arg(1)
    n = ctx.rank(x) - 2
    kernel = _n(ctx.arg(2), n)
    stride = _n(ctx.arg(3), n) if ctx.arg(3) not in (None, []) else kernel
    pad = _n(ctx.arg(4), n)
    include_pad, divisor = bool(ctx.arg(6)), ctx.arg(7)
    size = list(ctx.static_shape(x)[2:])
    out = list(ctx.static_shape(g)[2:])
    dtype = ctx.out_dtype
    if divisor is not None:
        scale = torch.full(out, 1.0 / divisor, dtype=torch.float64)
    else:
        per_dim = []
        for o, s, k, i, p in zip(out, stride, kernel, size, pad, strict=True):
            start = torch.arange(o) * s - p
            end = torch.clamp(start + k, max=i + p)
            if not include_pad:
                start, end = start.clamp(min=0), end.clamp(max=i)
            per_dim.append((end - start).to(torch.float64))
        grid = per_dim[0]
        for d in per_dim[1:]:
            grid = grid[..., None] * d
        scale = 1.0 / grid
    scaled = ctx.emit("Mul", ctx.value(g), ctx.const(scale.to(dtype)))
    return _spread(ctx, scaled, x, kernel, stride, pad)


@lowers(aten._adaptive_avg_pool2d_backward.default, aten._adaptive_avg_pool3d_backward.default)
def adaptive_avg_pool_backward(ctx: LowerCtx) -> Value:
    """_adaptive_avg_pool2d_backward(Tensor grad_output, Tensor self): each input position
    receives grad / window size of the (even) window it falls in."""
    g, x = ctx.arg(0), ctx.arg(1)
    size, out = list(ctx.static_shape(x)[2:]), list(ctx.static_shape(g)[2:])
    if None in size or any(i % o for i, o in zip(size, out, strict=True)):
        raise ExportError(f"{ctx.node.name}: adaptive pooling gradient with uneven windows")
    kernel = [i // o for i, o in zip(size, out, strict=True)]
    scaled = ctx.emit("Mul", ctx.value(g), ctx.const(1.0 / math.prod(kernel), ctx.out_dtype))
    if all(o == 1 for o in out):
        return ctx.emit("Expand", scaled, ctx.shape_of(x))
    return _spread(ctx, scaled, x, kernel, kernel, [0] * len(kernel))


# -- resampling ---------------------------------------------------------------------------
_UPSAMPLE = (
    "upsample_nearest1d",
    "upsample_nearest2d",
    "upsample_nearest3d",
    "_upsample_nearest_exact1d",
    "_upsample_nearest_exact2d",
    "_upsample_nearest_exact3d",
    "upsample_linear1d",
    "upsample_bilinear2d",
    "upsample_bicubic2d",
    "upsample_trilinear3d",
)


def _resample_matrix(forward: Any, args: list, size: list[int], axis: int) -> torch.Tensor:
    """(out, in) weights of the resampling along spatial ``axis``: the forward op applied to
    one basis plane per input position (ones along the other axes, whose weights sum to 1)."""
    n = size[axis]
    basis = torch.zeros(n, 1, *size, dtype=torch.float64)
    index = [slice(None)] * basis.dim()
    for m in range(n):
        index[0], index[2 + axis] = m, m
        basis[tuple(index)] = 1.0
    out = forward(basis, *args)[:, 0]
    pick = [0] * len(size)
    pick[axis] = slice(None)
    return out[(slice(None), *pick)].T.contiguous()


def _along(ctx: LowerCtx, x: Value, weights: torch.Tensor, axis: int, rank: int) -> Value:
    """x contracted with ``weights`` (out, in) along ``axis``: the transposed resampling."""
    w = ctx.const(weights)
    if axis == rank - 1:
        return ctx.emit("MatMul", x, w)
    if axis == rank - 2:
        return ctx.emit("MatMul", ctx.const(weights.T.contiguous()), x)
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    moved = ctx.emit("MatMul", ctx.emit("Transpose", x, perm=perm), w)
    return ctx.emit("Transpose", moved, perm=perm)


@lowers(*(getattr(aten, f"{name}_backward").default for name in _UPSAMPLE))
def upsample_backward(ctx: LowerCtx) -> Value:
    """upsample_bilinear2d_backward(Tensor grad_output, SymInt[2] output_size, SymInt[4]
    input_size, bool align_corners, float? scales_h=None, float? scales_w=None) and the other
    nearest/linear/cubic modes: the resampling is separable and linear, out = A_h x A_w^T per
    plane, so grad_in = A_h^T g A_w, the matrices from torch's own forward op (static sizes)."""
    name = ctx.node.target.overloadpacket.__name__.removesuffix("_backward")
    out_size, in_size = list(ctx.arg(1)), list(ctx.arg(2))
    size = in_size[2:]
    if not all(isinstance(s, int) for s in [*size, *out_size]):
        raise ExportError(f"{ctx.node.name}: resampling gradient over a dynamic spatial size")
    forward = getattr(aten, name).default
    extra = list(ctx.node.args[3:])
    rank, dtype = len(in_size), ctx.out_dtype
    g = ctx.input(0)
    for axis in range(len(size)):
        weights = _resample_matrix(forward, [out_size, *extra], size, axis)
        g = _along(ctx, g, weights.to(dtype), 2 + axis, rank)
    return g


# -- normalisation ------------------------------------------------------------------------
@lowers(aten._native_batch_norm_legit_functional.default)
def batch_norm_train(ctx: LowerCtx) -> list[Value]:
    """_native_batch_norm_legit_functional(Tensor input, Tensor? weight, Tensor? bias, Tensor
    running_mean, Tensor running_var, bool training, float momentum, float eps) -> (out,
    save_mean, save_invstd, new_running_mean, new_running_var). Batch statistics over all dims
    but channels; running stats move by ``momentum`` towards the mean and the unbiased
    variance (n / (n - 1)), exactly as torch's train-mode batch norm. Only in training graphs
    (``node.meta["fxonnx.training"]``, set by export_training, whose outputs carry the new
    running stats); an inference export of a train-mode model is refused."""
    x, w, b, rm, rv, training, momentum, eps = (ctx.arg(i) for i in range(8))
    if not training or not ctx.node.meta.get(TRAINING_META):
        raise ExportError(
            f"{ctx.node.name}: batch_norm in training mode (batch statistics, running stats "
            "updated) is not an inference op",
            hint="call model.eval(); for training graphs use fxonnx.export_training",
        )
    dtype, rank = ctx.dtype(x), ctx.rank(x)
    axes = [0] + list(range(2, rank))
    xv = ctx.value(x)
    # y = d * (invstd * w) + b, the per-channel factor made first: one pass over x fewer
    # (onnxruntime, 8x64x112x112: 9.1 ms instead of 11.2; ReduceSumSquare for the variance
    # was slower than ReduceMean(d * d), 12.2 ms)
    mean = _mean(ctx, xv, axes)
    d = ctx.emit("Sub", xv, mean)
    var = _mean(ctx, ctx.emit("Mul", d, d), axes)
    invstd = ctx.emit("Reciprocal", ctx.emit("Sqrt", ctx.emit("Add", var, ctx.const(eps, dtype))))
    shape = _i64(ctx, _channel_shape(rank))
    scale = (
        invstd if w is None else ctx.emit("Mul", invstd, ctx.emit("Reshape", ctx.value(w), shape))
    )
    y = ctx.emit("Mul", d, scale)
    if b is not None:
        y = ctx.emit("Add", y, ctx.emit("Reshape", ctx.value(b), shape))
    flat = _i64(ctx, [-1])
    mean_c, var_c = ctx.emit("Reshape", mean, flat), ctx.emit("Reshape", var, flat)
    count = ctx.emit("Div", _numel(ctx, x, dtype), ctx.cast(ctx.shape_of(x, 1, 2), dtype))
    unbiased = ctx.emit(
        "Mul", var_c, ctx.emit("Div", count, ctx.emit("Sub", count, ctx.const(1.0, dtype)))
    )
    keep, m = ctx.const(1.0 - momentum, dtype), ctx.const(momentum, dtype)

    def moved(running: Any, batch: Value) -> Value:
        return ctx.emit("Add", ctx.emit("Mul", ctx.value(running), keep), ctx.emit("Mul", batch, m))

    return [y, mean_c, ctx.emit("Reshape", invstd, flat), moved(rm, mean_c), moved(rv, unbiased)]


@lowers(aten.native_batch_norm_backward.default)
def batch_norm_backward(ctx: LowerCtx) -> list[Value | None]:
    """native_batch_norm_backward(Tensor grad_out, Tensor input, Tensor? weight, Tensor?
    running_mean, Tensor? running_var, Tensor? save_mean, Tensor? save_invstd, bool train,
    float eps, bool[3] output_mask), as torch's CPU kernel computes it: with xc = x - mean
    and dot = sum(g xc) over all dims but channels, dw = dot invstd, db = sum(g); train:
    dx = w invstd (g - sum(g)/n - xc dot invstd^2/n); eval: dx = w g / sqrt(running_var +
    eps). The train dx is one ``Sum`` of g and xc scaled per channel: five passes over the
    activation where the textbook form (x^, g - mean(g), x^ mean(g x^), ...) took seven
    (21-29 -> 16 ms at [8, 64, 112, 112], 2 threads, two runs; torch's kernel 6.7)."""
    g, x, w, rm, rv, save_mean, save_invstd, train, eps = (ctx.arg(i) for i in range(9))
    mask = _mask(ctx, 9)
    dtype, rank = ctx.dtype(x), ctx.rank(x)
    axes = [0] + list(range(2, rank))
    shape = _i64(ctx, _channel_shape(rank))
    if train:
        mean = ctx.emit("Reshape", ctx.value(save_mean), shape)
        invstd = ctx.emit("Reshape", ctx.value(save_invstd), shape)
    else:
        mean = ctx.emit("Reshape", ctx.value(rm), shape)
        std = ctx.emit("Sqrt", ctx.emit("Add", ctx.value(rv), ctx.const(eps, dtype)))
        invstd = ctx.emit("Reshape", ctx.emit("Reciprocal", std), shape)
    gv = ctx.value(g)
    scale = (
        invstd if w is None else ctx.emit("Mul", invstd, ctx.emit("Reshape", ctx.value(w), shape))
    )
    full_dx = train and mask[0]
    xc = dot = sum_g = None
    if full_dx or mask[1]:
        xc = ctx.emit("Sub", ctx.value(x), mean)
        dot = _sum(ctx, ctx.emit("Mul", gv, xc), axes)
    if full_dx or mask[2]:
        sum_g = _sum(ctx, gv, axes)
    results: list[Value | None] = [None, None, None]
    if mask[0]:
        if full_dx:
            count = ctx.emit("Div", _numel(ctx, x, dtype), ctx.cast(ctx.shape_of(x, 1, 2), dtype))
            minus_scale = ctx.emit("Div", ctx.emit("Neg", scale), count)  # -w invstd / n
            shift = ctx.emit("Mul", sum_g, minus_scale)
            slope = ctx.emit(
                "Mul", ctx.emit("Mul", dot, minus_scale), ctx.emit("Mul", invstd, invstd)
            )
            results[0] = ctx.emit(
                "Sum", ctx.emit("Mul", gv, scale), ctx.emit("Mul", xc, slope), shift
            )
        else:
            results[0] = ctx.emit("Mul", gv, scale)
    flat = _i64(ctx, [-1])
    if mask[1]:
        results[1] = ctx.emit("Reshape", ctx.emit("Mul", dot, invstd), flat)
    if mask[2]:
        results[2] = ctx.emit("Reshape", sum_g, flat)
    return results


@lowers(aten.native_layer_norm_backward.default)
def layer_norm_backward(ctx: LowerCtx) -> list[Value | None]:
    """native_layer_norm_backward(Tensor grad_out, Tensor input, SymInt[] normalized_shape,
    Tensor mean, Tensor rstd, Tensor? weight, Tensor? bias, bool[3] output_mask):
    x^ = (x - mean) rstd, h = g w, dx = rstd (h - mean(h) - x^ mean(h x^)) over the normalised
    dims; dw = sum(g x^), db = sum(g) over the others."""
    g, x, shape, mean, rstd, w, b = (ctx.arg(i) for i in range(7))
    mask = _mask(ctx, 7)
    rank, k = ctx.rank(x), len(shape)
    inner, outer = list(range(rank - k, rank)), list(range(rank - k))
    gv = ctx.value(g)
    xhat = ctx.emit("Mul", ctx.emit("Sub", ctx.value(x), ctx.value(mean)), ctx.value(rstd))
    h = gv if w is None else ctx.emit("Mul", gv, ctx.value(w))
    results: list[Value | None] = [None, None, None]
    if mask[0]:
        centered = ctx.emit(
            "Sub",
            ctx.emit("Sub", h, _mean(ctx, h, inner)),
            ctx.emit("Mul", xhat, _mean(ctx, ctx.emit("Mul", h, xhat), inner)),
        )
        results[0] = ctx.emit("Mul", centered, ctx.value(rstd))
    if mask[1] and w is not None:
        results[1] = _sum(ctx, ctx.emit("Mul", gv, xhat), outer, keepdims=0)
    if mask[2] and b is not None:
        results[2] = _sum(ctx, gv, outer, keepdims=0)
    return results


# -- indexing -----------------------------------------------------------------------------
@lowers(aten.embedding_dense_backward.default)
def embedding_backward(ctx: LowerCtx) -> Value:
    """embedding_dense_backward(Tensor grad_output, Tensor indices, SymInt num_weights,
    SymInt padding_idx, bool scale_grad_by_freq): rows of grad added into zeros at their
    indices (ScatterND, reduction add); the padding row gets nothing."""
    g, indices, num, padding_idx, by_freq = (ctx.arg(i) for i in range(5))
    if by_freq:
        raise ExportError(f"{ctx.node.name}: embedding gradients with scale_grad_by_freq")
    dtype = ctx.out_dtype
    dim = ctx.static_shape(g)[-1]
    rows = ctx.emit("Reshape", ctx.value(g), _i64(ctx, [-1, dim]))
    idx = ctx.emit("Reshape", ctx.value(indices), _i64(ctx, [-1, 1]))
    if padding_idx is not None and padding_idx >= 0:
        pad = ctx.emit("Equal", idx, ctx.const(padding_idx, torch.int64))
        rows = ctx.emit("Where", pad, ctx.const(0.0, dtype), rows)
    zeros = ctx.emit("Expand", ctx.const(0.0, dtype), _i64(ctx, [int(num), dim]))
    return ctx.emit("ScatterND", zeros, idx, rows, reduction="add")


def _pad_dim(ctx: LowerCtx, g: Value, dim: int, before: int, after: int) -> Value:
    pads = ctx.const([before, after], torch.int64)
    return ctx.emit("Pad", g, pads, ctx.const(0.0, ctx.out_dtype), ctx.const([dim], torch.int64))


@lowers(aten.select_backward.default)
def select_backward(ctx: LowerCtx) -> Value:
    """select_backward(Tensor grad_output, SymInt[] input_sizes, int dim, SymInt index):
    grad placed at ``index`` along ``dim``, zeros elsewhere."""
    sizes, dim, index = ctx.arg(1), ctx.arg(2), ctx.arg(3)
    dim %= len(sizes)
    size = sizes[dim]
    if not isinstance(size, int) or not isinstance(index, int):
        raise ExportError(f"{ctx.node.name}: select gradient along the dynamic batch dim")
    index %= size
    g = ctx.emit("Unsqueeze", ctx.input(0), _i64(ctx, [dim]))
    return _pad_dim(ctx, g, dim, index, size - index - 1)


@lowers(aten.slice_backward.default)
def slice_backward(ctx: LowerCtx) -> Value:
    """slice_backward(Tensor grad_output, SymInt[] input_sizes, int dim, SymInt start, SymInt
    end, SymInt step): grad placed at start:end along ``dim`` (step 1), zeros elsewhere."""
    sizes, dim, start, end, step = (ctx.arg(i) for i in range(1, 6))
    dim %= len(sizes)
    size = sizes[dim]
    if step != 1:
        raise ExportError(f"{ctx.node.name}: slice gradient with a step")
    if all(isinstance(v, int) for v in (size, start, end)):
        start = min(max(start + size if start < 0 else start, 0), size)
        end = min(max(end + size if end < 0 else end, start), size)
        return _pad_dim(ctx, ctx.input(0), dim, start, size - end)
    return _pad_dim_dynamic(ctx, dim, size, start, end)


def _pad_dim_dynamic(ctx: LowerCtx, dim: int, size: Any, start: Any, end: Any) -> Value:
    """Zero padding before ``start`` and after ``end`` of a dynamic-size dim, computed in the
    graph: a negative int bound counts from the end, an end at or past ``size`` pads nothing.
    The padded amounts are the runtime values of torch's (already valid) slice bounds."""
    n = ctx.int_list([size])
    if isinstance(start, int) and start < 0:
        before = ctx.emit("Add", n, ctx.int_list([start]))
    else:
        before = ctx.int_list([start])
    if isinstance(end, int) and end < 0:
        after = ctx.int_list([-end])
    elif isinstance(end, int) and end >= 1 << 62:
        after = ctx.int_list([0])
    else:
        after = ctx.emit("Max", ctx.emit("Sub", n, ctx.int_list([end])), ctx.int_list([0]))
    pads = ctx.emit("Concat", before, after, axis=0)
    zero = ctx.const(0.0, ctx.out_dtype)
    return ctx.emit("Pad", ctx.input(0), pads, zero, ctx.const([dim], torch.int64))
