"""Pooling: max (with indices), average, adaptive (even windows as one pooling op, uneven ones
as torch's windows sliced and reduced one axis at a time).

Unbatched inputs (C, *spatial) get a batch dim of 1 around the ONNX op, which wants (N, C, ...).

ceil_mode never reaches ONNX: the extra windows it allows become explicit end padding, sized
from the traced output shape. (ONNX shape inference and onnxruntime disagree on ceil_mode
windows that would start in the padding; torch drops those.) Averages whose divisor is not
the count of real elements (count_include_pad with ceil_mode, divisor_override) are a window
sum divided by torch's divisor, computed here per output position.
"""

from __future__ import annotations

import itertools
import math
import operator
from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers
from ._common import require_float

aten = torch.ops.aten


def _n(value: Any, n: int) -> list[int]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * n if len(values) == 1 else values


class _Window:
    """Kernel, stride, padding and dilation per spatial dim, with the end padding that makes
    the ONNX output size equal to torch's."""

    def __init__(
        self,
        ctx: LowerCtx,
        n: int,
        kernel: Any,
        stride: Any,
        padding: Any,
        dilation: Any = 1,
        ceil_mode: bool = False,
    ) -> None:
        self.kernel = _n(kernel, n)
        self.stride = _n(stride, n) if stride not in (None, []) else self.kernel
        self.pad = _n(padding, n)
        self.dilation = _n(dilation, n)
        self.size = list(ctx.static_shape(ctx.arg(0))[-n:])
        self.out = _out_shape(ctx, n)
        self.dynamic = None in self.size or None in self.out
        if self.dynamic:
            if ceil_mode:
                raise ExportError(
                    f"{ctx.node.name}: ceil_mode pooling over a dynamic spatial dim",
                    hint="use ceil_mode=False, or keep that dim static (dynamic_dims)",
                )
            # floor mode: ONNX computes torch's output size with no end padding at every size
            self.extra = [0] * n
            return
        self.extra = [
            max(0, (o - 1) * s + d * (k - 1) + 1 - (i + 2 * p))
            for o, s, d, k, i, p in zip(
                self.out, self.stride, self.dilation, self.kernel, self.size, self.pad, strict=True
            )
        ]

    @property
    def prepad(self) -> bool:
        """onnxruntime wants pads below the kernel size; past that, pad the input itself."""
        return any(p + e >= k for p, e, k in zip(self.pad, self.extra, self.kernel, strict=True))

    def apply(self, ctx: LowerCtx, x: Value, fill: float) -> tuple[Value, dict[str, Any]]:
        """``x`` (padded at the end when ``prepad``) and the ONNX pooling attributes."""
        ends = [p + e for p, e in zip(self.pad, self.extra, strict=True)]
        if self.prepad:
            n = len(self.kernel)
            axes = ctx.const(list(range(-n, 0)), torch.int64)
            extra = ctx.const([0] * n + self.extra, torch.int64)
            x = ctx.emit("Pad", x, extra, ctx.const(fill, ctx.out_dtype), axes)
            ends = self.pad
        attrs = {"kernel_shape": self.kernel, "strides": self.stride, "pads": self.pad + ends}
        return x, attrs

    def divisors(self, include_pad: bool) -> torch.Tensor:
        """torch's divisor per output position: the window clipped to the padded input (with
        include_pad) or to the input."""
        per_dim = []
        for o, s, k, i, p in zip(
            self.out, self.stride, self.kernel, self.size, self.pad, strict=True
        ):
            start = torch.arange(o) * s - p
            end = torch.clamp(start + k, max=i + p)
            if not include_pad:
                start, end = start.clamp(min=0), end.clamp(max=i)
            per_dim.append((end - start).to(torch.float64))
        grid = per_dim[0]
        for d in per_dim[1:]:
            grid = grid[..., None] * d
        return grid


def _out_shape(ctx: LowerCtx, n: int) -> list[int | None]:
    val = ctx.val()
    return list(ctx.static_shape(val[0] if isinstance(val, (tuple, list)) else val)[-n:])


def _dims(ctx: LowerCtx) -> int:
    name = ctx.node.target.overloadpacket.__name__
    return int(name.split("pool")[1][0])


def _batched(ctx: LowerCtx, n: int) -> tuple[Value, bool]:
    """Input 0 with a leading batch dim of 1 when it is unbatched (rank n + 1)."""
    x = ctx.input(0)
    if ctx.rank(ctx.arg(0)) != n + 1:
        return x, False
    return ctx.emit("Unsqueeze", x, ctx.const([0], torch.int64)), True


def _unbatched(ctx: LowerCtx, y: Any, unbatched: bool) -> Any:
    """Drop the batch dim ``_batched`` added, from one value or each of a list (None stays)."""
    if not unbatched:
        return y
    zero = ctx.const([0], torch.int64)
    if isinstance(y, list):
        return [None if v is None else ctx.emit("Squeeze", v, zero) for v in y]
    return ctx.emit("Squeeze", y, zero)


def _plane_indices(ctx: LowerCtx, indices: Value, spatial: list[int]) -> Value:
    """ONNX MaxPool indices count over the whole (N, C, *spatial) tensor; torch's over one
    plane, which is the remainder modulo the plane size."""
    return ctx.emit("Mod", indices, ctx.const(math.prod(spatial), torch.int64))


def _max_pool(ctx: LowerCtx, x: Value, window: _Window, with_indices: bool) -> Any:
    dtype = ctx.out_dtype
    if dtype == torch.int64 and not window.dynamic:
        return _running_max(ctx, x, window, with_indices)
    lowest = torch.finfo(dtype).min if dtype.is_floating_point else torch.iinfo(dtype).min
    x, attrs = window.apply(ctx, x, -math.inf if dtype.is_floating_point else lowest)
    attrs["dilations"] = window.dilation
    if not with_indices:
        return ctx.emit("MaxPool", x, **attrs)
    if window.prepad or window.dynamic:
        raise ExportError(
            f"{ctx.node.name}: max-pool indices with ceil_mode windows this wide, or over a "
            "dynamic spatial dim"
        )
    values, indices = ctx.emit("MaxPool", x, outputs=2, **attrs)
    return [values, _plane_indices(ctx, indices, window.size)]


def _running_max(ctx: LowerCtx, x: Value, window: _Window, with_indices: bool) -> Any:
    """int64 max pooling, exactly (onnxruntime has no int64 MaxPool and float64 would round
    past 2**53): the input padded with the lowest int64, then a running Max over one strided
    Slice per kernel offset. Indices come from a constant grid of plane positions (-1 in the
    padding); a later offset wins only when strictly greater, or over padding, so the first
    maximum in window order wins, as in torch."""
    n, lowest = len(window.kernel), torch.iinfo(torch.int64).min
    begins = window.pad
    ends = [p + e for p, e in zip(window.pad, window.extra, strict=True)]
    axes = ctx.const(list(range(-n, 0)), torch.int64)
    padded = ctx.emit(
        "Pad", x, ctx.const(begins + ends, torch.int64), ctx.const(lowest, torch.int64), axes
    )
    grid = torch.arange(math.prod(window.size)).reshape(window.size)
    sides = [q for b, e in list(zip(begins, ends, strict=True))[::-1] for q in (b, e)]
    grid = torch.nn.functional.pad(grid, sides, value=-1)
    best = where = None
    for offset in itertools.product(*(range(k) for k in window.kernel)):
        starts = [o * d for o, d in zip(offset, window.dilation, strict=True)]
        stops = [
            b + (m - 1) * s + 1 for b, m, s in zip(starts, window.out, window.stride, strict=True)
        ]
        v = ctx.emit(
            "Slice",
            padded,
            ctx.const(starts, torch.int64),
            ctx.const(stops, torch.int64),
            axes,
            ctx.const(window.stride, torch.int64),
        )
        spots = grid[
            tuple(slice(b, e, s) for b, e, s in zip(starts, stops, window.stride, strict=True))
        ]
        if best is None:
            best, where = v, ctx.const(spots)
            continue
        if not with_indices:
            best = ctx.emit("Max", best, v)
            continue
        over_pad = ctx.emit("Equal", where, ctx.const(-1, torch.int64))
        real = ctx.const(spots >= 0)
        better = ctx.emit("Or", ctx.emit("Greater", v, best), ctx.emit("And", over_pad, real))
        best = ctx.emit("Where", better, v, best)
        where = ctx.emit("Where", better, ctx.const(spots), where)
    if not with_indices:
        return best
    return [best, ctx.emit("Expand", where, ctx.emit("Shape", best))]


@lowers(
    *(getattr(aten, f"max_pool{n}d").default for n in (1, 2, 3)),
    *(getattr(aten, f"max_pool{n}d_with_indices").default for n in (1, 2, 3)),
)
def max_pool(ctx: LowerCtx) -> Any:
    """max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
    int[2] dilation=1, bool ceil_mode=False) -> Tensor; *_with_indices -> (Tensor, Tensor)"""
    n = _dims(ctx)
    window = _Window(ctx, n, ctx.arg(1), ctx.arg(2), ctx.arg(3), ctx.arg(4), bool(ctx.arg(5)))
    x, unbatched = _batched(ctx, n)
    if "with_indices" not in ctx.node.target.overloadpacket.__name__:
        return _unbatched(ctx, _max_pool(ctx, x, window, False), unbatched)
    if not _indices_read(ctx.node):  # aot_autograd's inference graphs: values only
        return _unbatched(ctx, [_max_pool(ctx, x, window, False), None], unbatched)
    return _unbatched(ctx, _max_pool(ctx, x, window, True), unbatched)


def _indices_read(node: Any) -> bool:
    """Whether anything reads output 1 of a *_with_indices node: onnxruntime's MaxPool with
    an Indices output skips its fast (NCHWc) kernel, measured 1.8x slower on lenet."""
    return any(not (u.target is operator.getitem and u.args[1] == 0) for u in node.users)


@lowers(aten.avg_pool1d.default, aten.avg_pool2d.default, aten.avg_pool3d.default)
def avg_pool(ctx: LowerCtx) -> Value:
    """avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
    bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None) -> Tensor"""
    require_float(ctx, "AveragePool", ctx.out_dtype)
    n = _dims(ctx)
    window = _Window(ctx, n, ctx.arg(1), ctx.arg(2), ctx.arg(3), ceil_mode=bool(ctx.arg(4)))
    include_pad = ctx.arg(5) if ctx.arg(5) is not None else True
    divisor = ctx.arg(6) if n > 1 else None
    plain = divisor is None and not any(window.extra)
    x, unbatched = _batched(ctx, n)
    x, attrs = window.apply(ctx, x, 0.0)
    y = ctx.emit("AveragePool", x, count_include_pad=int(bool(include_pad) or not plain), **attrs)
    if not plain:
        # y is the window sum / kernel size; torch divides the sum by divisor_override, or by
        # the window clipped to the (padded) input
        dtype = ctx.out_dtype
        if divisor is not None:
            y = ctx.emit("Mul", y, ctx.const(math.prod(window.kernel) / divisor, dtype))
        else:
            scale = math.prod(window.kernel) / window.divisors(include_pad=bool(include_pad))
            y = ctx.emit("Mul", y, ctx.const(scale.to(dtype)))
    return _unbatched(ctx, y, unbatched)


def _adaptive_spatial(ctx: LowerCtx) -> tuple[list[int], list[int]]:
    out_size = list(ctx.arg(1))
    spatial = list(ctx.static_shape(ctx.arg(0))[-len(out_size) :])
    if any(s is None or not isinstance(o, int) for s, o in zip(spatial, out_size, strict=True)):
        raise ExportError(
            f"{ctx.node.name}: adaptive pooling over a dynamic spatial dim {spatial}",
            hint="export with static spatial sizes (only the batch can be dynamic here)",
        )
    return spatial, out_size


def _even(spatial: list[int], out_size: list[int]) -> bool:
    return all(s % o == 0 for s, o in zip(spatial, out_size, strict=True))


def _adaptive_windows(
    ctx: LowerCtx, x: Value, op: str, spatial: list[int], out: list[int]
) -> Value:
    """torch's adaptive windows, one axis at a time (a box mean or max is separable): output i of
    an axis of length L reduces [floor(i * L / out), ceil((i + 1) * L / out)). ``x`` is
    (N, C, *spatial)."""
    for axis, (length, o) in enumerate(zip(spatial, out, strict=True), start=2):
        pieces = []
        for i in range(o):
            start, end = (i * length) // o, -((-(i + 1) * length) // o)
            piece = ctx.emit(
                "Slice",
                x,
                ctx.const([start], torch.int64),
                ctx.const([end], torch.int64),
                ctx.const([axis], torch.int64),
            )
            pieces.append(ctx.emit(op, piece, ctx.const([axis], torch.int64), keepdims=1))
        x = pieces[0] if o == 1 else ctx.emit("Concat", *pieces, axis=axis)
    return x


@lowers(
    aten.adaptive_avg_pool1d.default,
    aten.adaptive_avg_pool2d.default,
    aten.adaptive_avg_pool3d.default,
    aten._adaptive_avg_pool2d.default,
    aten._adaptive_avg_pool3d.default,
)
def adaptive_avg_pool(ctx: LowerCtx) -> Value:
    """adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor"""
    n = len(ctx.arg(1))
    x, unbatched = _batched(ctx, n)
    if all(o == 1 for o in ctx.arg(1)):
        return _unbatched(ctx, ctx.emit("GlobalAveragePool", x), unbatched)
    spatial, out = _adaptive_spatial(ctx)
    if not _even(spatial, out):
        return _unbatched(ctx, _adaptive_windows(ctx, x, "ReduceMean", spatial, out), unbatched)
    kernel = [s // o for s, o in zip(spatial, out, strict=True)]
    pads = [0] * (2 * n)
    y = ctx.emit("AveragePool", x, kernel_shape=kernel, strides=kernel, pads=pads)
    return _unbatched(ctx, y, unbatched)


@lowers(
    aten.adaptive_max_pool1d.default,
    aten.adaptive_max_pool2d.default,
    aten.adaptive_max_pool3d.default,
)
def adaptive_max_pool(ctx: LowerCtx) -> list[Value]:
    """adaptive_max_pool2d(Tensor self, int[2] output_size) -> (Tensor, Tensor)"""
    n = len(ctx.arg(1))
    spatial, out = _adaptive_spatial(ctx)
    x, unbatched = _batched(ctx, n)
    wants_indices = any(u.args[1] == 1 for u in ctx.node.users)
    if not _even(spatial, out):
        if wants_indices:
            raise ExportError(
                f"{ctx.node.name}: adaptive max pooling from {spatial} to {out} with "
                "return_indices has uneven windows",
                hint="choose an output size that divides the input size, or drop return_indices",
            )
        y = _adaptive_windows(ctx, x, "ReduceMax", spatial, out)
        return _unbatched(ctx, [y, None], unbatched)
    kernel = [s // o for s, o in zip(spatial, out, strict=True)]
    attrs = {"kernel_shape": kernel, "strides": kernel, "pads": [0] * (2 * n)}
    if not wants_indices:
        return _unbatched(ctx, [ctx.emit("MaxPool", x, **attrs), None], unbatched)
    values, indices = ctx.emit("MaxPool", x, outputs=2, **attrs)
    return _unbatched(ctx, [values, _plane_indices(ctx, indices, spatial)], unbatched)
