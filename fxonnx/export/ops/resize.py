"""Resampling and padding: upsample (nearest, linear, cubic), pad, pixel (un)shuffle.

Resize modes were checked against eager on onnxruntime: torch's align_corners=False linear and
cubic sampling is ONNX "half_pixel" (not "pytorch_half_pixel", which differs for outputs of
size 1), cubic uses a = -0.75 with edge replication (exclude_outside=0); nearest is
"asymmetric" with floor, nearest-exact is "half_pixel" with round_prefer_ceil. float64 and
float16 resize in float32 (onnxruntime has no such CPU kernels).
"""

from __future__ import annotations

from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten
_I64 = torch.int64

_NEAREST = {
    **dict.fromkeys(("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d"), "floor"),
    **dict.fromkeys(
        ("_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d"),
        "exact",
    ),
}
_INTERP = {
    "upsample_linear1d": "linear",
    "upsample_bilinear2d": "linear",
    "upsample_trilinear3d": "linear",
    "upsample_bicubic2d": "cubic",
}
_UPSAMPLE = [
    getattr(getattr(aten, name), overload)
    for name in (*_NEAREST, *_INTERP)
    for overload in ("vec", "default")
]


def _resize(ctx: LowerCtx, scales: Any, mode: str, align_corners: bool, nearest: str) -> Value:
    """ONNX Resize of the spatial dims. torch samples with the given scale factors when there
    are any, else with out / in; ONNX does the same with ``scales``, or with ``sizes`` (taken
    from the traced output). Scales are given for every dim (1 for batch and channels), and
    sizes that are whole multiples of the input become such scales: onnxruntime's CPU layout
    optimizer only turns that form into its blocked (NCHWc) Upsample, and otherwise reorders
    the tensor out of and back into blocked layout around the Resize."""
    spatial = ctx.static_shape(ctx.arg(0))[2:]
    out = ctx.static_shape(ctx.node)[2:]
    attrs: dict[str, Any] = {"mode": mode}
    if mode == "nearest":
        exact = nearest == "exact"
        attrs["coordinate_transformation_mode"] = "half_pixel" if exact else "asymmetric"
        attrs["nearest_mode"] = "round_prefer_ceil" if exact else "floor"
    else:
        attrs["coordinate_transformation_mode"] = "align_corners" if align_corners else "half_pixel"
        if mode == "cubic":
            attrs["cubic_coeff_a"], attrs["exclude_outside"] = -0.75, 0
    scales = [] if scales is None or None in scales else [float(f) for f in scales]
    if None in spatial or None in out:
        return _resize_dynamic(ctx, scales, attrs)
    if scales and not align_corners:  # align_corners maps corner to corner whatever the scale
        as_f32 = torch.tensor(scales, dtype=torch.float32)
        onnx_out = torch.floor(torch.tensor(spatial, dtype=torch.float32) * as_f32).tolist()
        if [int(o) for o in onnx_out] != list(out):
            raise ExportError(
                f"{ctx.node.name}: scale factors {scales} give {list(out)} in torch but "
                f"{onnx_out} in ONNX Resize",
                hint="pass size= (or recompute_scale_factor=True) to interpolate",
            )
    elif all(o % s == 0 for o, s in zip(out, spatial, strict=True)):
        # out / in is exact, so these scales sample where the sizes would
        scales = [float(o // s) for o, s in zip(out, spatial, strict=True)]
    else:
        axes = list(range(2, 2 + len(spatial)))
        return _in_f32(ctx, "Resize", None, None, ctx.const(list(out), _I64), axes=axes, **attrs)
    every_dim = torch.tensor([1.0, 1.0, *scales], dtype=torch.float32)
    return _in_f32(ctx, "Resize", None, ctx.const(every_dim), **attrs)


def _resize_dynamic(ctx: LowerCtx, scales: list[float], attrs: dict[str, Any]) -> Value:
    """Resize over dynamic spatial dims: by whole-number scale factors (torch's and ONNX's
    output sizes are then both in * scale at every size), or to the traced output size, which
    the graph computes from the runtime sizes."""
    n = ctx.rank(ctx.arg(0)) - 2
    if scales and all(f == int(f) for f in scales):
        every_dim = torch.tensor([1.0, 1.0, *scales], dtype=torch.float32)
        return _in_f32(ctx, "Resize", None, ctx.const(every_dim), **attrs)
    size = ctx.arg(1)
    if not scales and isinstance(size, (list, tuple)) and len(size) == n:
        axes = list(range(2, 2 + n))
        return _in_f32(ctx, "Resize", None, None, ctx.int_list(list(size)), axes=axes, **attrs)
    raise ExportError(
        f"{ctx.node.name}: resizing a dynamic spatial dim by the fractional scale factors "
        f"{scales}: torch and ONNX could round the output size differently",
        hint="pass size= to interpolate, a whole-number scale_factor, or keep the dim static",
    )


def _in_f32(ctx: LowerCtx, op: str, *inputs: Value | None, **attrs: Any) -> Value:
    """onnxruntime's CPU Resize has no float64/float16 kernels: compute those in float32."""
    dtype = ctx.dtype(ctx.arg(0))
    if dtype not in (torch.float64, torch.float16, torch.bfloat16):
        return ctx.emit(op, ctx.input(0), *inputs, **attrs)
    y = ctx.emit(op, ctx.cast(ctx.input(0), torch.float32), *inputs, **attrs)
    return ctx.cast(y, dtype)


@lowers(*_UPSAMPLE)
def upsample(ctx: LowerCtx) -> Value:
    """upsample_bilinear2d.vec(Tensor input, SymInt[]? output_size, bool align_corners,
    float[]? scale_factors); upsample_nearest2d.vec(Tensor input, SymInt[]? output_size,
    float[]? scale_factors); .default overloads take output_size, [align_corners,] scales_h..."""
    name = ctx.node.target.overloadpacket.__name__
    interp = name in _INTERP
    align = bool(ctx.arg(2)) if interp else False
    first_scale = 3 if interp else 2
    if ctx.node.target._overloadname == "vec":
        scales = ctx.arg(first_scale)
    else:
        n_args = len(ctx.node.target._schema.arguments)
        scales = [ctx.arg(i) for i in range(first_scale, n_args)]
    if interp:
        return _resize(ctx, scales, _INTERP[name], align, "")
    return _resize(ctx, scales, "nearest", False, _NEAREST[name])


# -- padding -------------------------------------------------------------------------------
_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}
_PAD_MODES["circular"] = "wrap"


def _pad(ctx: LowerCtx, pad: list[Any], mode: str, value: Any) -> Value:
    """torch pads are (begin, end) pairs from the last dim backwards; ONNX wants all begins
    then all ends for ``axes``. Negative pads crop in both."""
    x = ctx.arg(0)
    rank, n = ctx.rank(x), len(pad) // 2
    if mode not in _PAD_MODES:
        raise ExportError(f"{ctx.node.name}: unknown pad mode {mode!r}")
    if mode == "circular" and ctx.opset < 19:
        raise ExportError(
            f"{ctx.node.name}: circular padding needs ONNX Pad mode 'wrap' (opset 19)",
            hint="export with opset >= 19",
        )
    axes = [rank - 1 - i for i in range(n)]
    if mode == "replicate" and any(isinstance(p, int) and p < 0 for p in pad):
        return _replicate_cropped(ctx, x, pad, axes)
    pads = ctx.int_list([pad[2 * i] for i in range(n)] + [pad[2 * i + 1] for i in range(n)])
    fill = None
    if mode == "constant" and value not in (None, 0, 0.0):
        fill = ctx.input_as(value, ctx.out_dtype)
    return ctx.emit("Pad", ctx.input(0), pads, fill, ctx.const(axes, _I64), mode=_PAD_MODES[mode])


def _replicate_cropped(ctx: LowerCtx, x: Any, pad: list[Any], axes: list[int]) -> Value:
    """Replicate padding with a negative (cropping) pad, as torch computes it: out[j] =
    in[clamp(j - begin, 0, size - 1)] per padded dim, one Gather each. ONNX Pad crops first
    and then has no edge to replicate when the crop removes a whole dim."""
    shape = ctx.static_shape(x)
    if not all(isinstance(p, int) for p in pad) or any(shape[a] is None for a in axes):
        raise ExportError(
            f"{ctx.node.name}: replicate padding with negative pads needs static pads and sizes"
        )
    y = ctx.input(0)
    for i, axis in enumerate(axes):
        begin, end = pad[2 * i], pad[2 * i + 1]
        if begin == end == 0:
            continue
        j = torch.arange(shape[axis] + begin + end) - begin
        y = ctx.emit("Gather", y, ctx.const(j.clamp(0, shape[axis] - 1)), axis=axis)
    return y


@lowers(aten.pad.default)
def pad(ctx: LowerCtx) -> Value:
    """pad(Tensor self, SymInt[] pad, str mode="constant", float? value=None) -> Tensor"""
    return _pad(ctx, list(ctx.arg(1)), ctx.arg(2), ctx.arg(3))


@lowers(aten.constant_pad_nd.default)
def constant_pad_nd(ctx: LowerCtx) -> Value:
    """constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor"""
    return _pad(ctx, list(ctx.arg(1)), "constant", ctx.arg(2))


_MODE_OF = {"reflection": "reflect", "replication": "replicate"}


@lowers(
    *(
        getattr(aten, f"{kind}_pad{n}d").default
        for kind in ("reflection", "replication")
        for n in (1, 2, 3)
    ),
    aten._pad_circular.default,
)
def named_pad(ctx: LowerCtx) -> Value:
    """reflection_pad2d(Tensor self, SymInt[4] padding) -> Tensor; replication_pad*;
    _pad_circular(Tensor self, SymInt[] pad)"""
    name = ctx.node.target.overloadpacket.__name__
    mode = "circular" if name == "_pad_circular" else _MODE_OF[name.split("_")[0]]
    return _pad(ctx, list(ctx.arg(1)), mode, None)


# -- pixel shuffle ---------------------------------------------------------------------------
def _reshape(ctx: LowerCtx, x: Any, value: Value, tail: list[int]) -> Value:
    """Reshape ``value`` to x's leading (batch) dims followed by ``tail``."""
    lead = ctx.rank(x) - 3
    dims = ctx.static_shape(x)[:lead]
    parts = [ctx.const(tail, _I64)]
    if lead:
        known = all(d is not None for d in dims)
        parts.insert(0, ctx.const(list(dims), _I64) if known else ctx.shape_of(x, 0, lead))
    shape = parts[0] if len(parts) == 1 else ctx.emit("Concat", *parts, axis=0)
    if 0 in tail:  # a zero-size dim, not "copy the input's dim"
        return ctx.emit("Reshape", value, shape, allowzero=1)
    return ctx.emit("Reshape", value, shape)


def _channels_hw(ctx: LowerCtx, x: Any) -> tuple[int, int, int, int]:
    c, h, w = ctx.static_shape(x)[-3:]
    if None in (c, h, w):
        raise ExportError(f"{ctx.node.name}: pixel (un)shuffle needs static C, H, W")
    return c, h, w, ctx.rank(x) - 3


@lowers(aten.pixel_shuffle.default)
def pixel_shuffle(ctx: LowerCtx) -> Value:
    """pixel_shuffle(Tensor self, int upscale_factor) -> Tensor: (*, C r^2, H, W) ->
    (*, C, H r, W r) with out[c, h r + i, w r + j] = in[c r^2 + i r + j, h, w], which is
    DepthToSpace in CRD mode for 4-D float inputs (onnxruntime has DepthToSpace kernels for
    floats and 8-bit integers only; other dtypes take the Reshape / Transpose / Reshape path)."""
    x, r = ctx.arg(0), int(ctx.arg(1))
    if ctx.rank(x) == 4 and (ctx.dtype(x).is_floating_point or None in ctx.static_shape(x)[-3:]):
        return ctx.emit("DepthToSpace", ctx.input(0), blocksize=r, mode="CRD")
    c, h, w, lead = _channels_hw(ctx, x)
    split = _reshape(ctx, x, ctx.input(0), [c // (r * r), r, r, h, w])
    perm = list(range(lead)) + [lead + i for i in (0, 3, 1, 4, 2)]
    moved = ctx.emit("Transpose", split, perm=perm)
    return _reshape(ctx, x, moved, [c // (r * r), h * r, w * r])


@lowers(aten.pixel_unshuffle.default)
def pixel_unshuffle(ctx: LowerCtx) -> Value:
    """pixel_unshuffle(Tensor self, int downscale_factor) -> Tensor: the inverse of
    pixel_shuffle. ONNX SpaceToDepth orders channels (i r + j) C + c, torch c r^2 + i r + j,
    so this is Reshape / Transpose / Reshape."""
    x, r = ctx.arg(0), int(ctx.arg(1))
    c, h, w, lead = _channels_hw(ctx, x)
    split = _reshape(ctx, x, ctx.input(0), [c, h // r, r, w // r, r])
    perm = list(range(lead)) + [lead + i for i in (0, 2, 4, 1, 3)]
    moved = ctx.emit("Transpose", split, perm=perm)
    return _reshape(ctx, x, moved, [c * r * r, h // r, w // r])
