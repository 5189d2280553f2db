"""Upsampling, interpolation, padding and pixel shuffles against eager at two batch sizes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from fn_module import Fn
from torch import nn

from fxonnx import models
from fxonnx._errors import ExportError
from fxonnx.capture import capture
from fxonnx.export import lower


def _rand(*shape: int) -> Callable[[int], tuple]:
    return lambda b: (torch.randn(b, *shape, generator=torch.Generator().manual_seed(b)),)


_SPATIAL = {"linear": (3, 6), "nearest": (3, 5, 6), "bilinear": (3, 5, 6), "bicubic": (3, 5, 6)}
_SPATIAL |= {"trilinear": (2, 3, 4, 5), "nearest-exact": (3, 5, 6)}
UPSAMPLE: list[tuple[str, dict]] = []
for mode, shape in _SPATIAL.items():
    n = len(shape) - 1
    for kw in (
        {"scale_factor": 2},
        {"scale_factor": 0.5},
        {"scale_factor": 1.7},
        {"size": (7, 4, 3)[-n:]},
        {"size": (1,) * n},
        {"size": tuple((2 + i % 2) * d for i, d in enumerate(shape[1:]))},  # whole multiples
    ):
        aligns = (
            (False, True) if mode in ("linear", "bilinear", "bicubic", "trilinear") else (None,)
        )
        for align in aligns:
            UPSAMPLE.append((mode, {**kw, "align_corners": align}))


@pytest.mark.parametrize(("mode", "kw"), UPSAMPLE, ids=[f"{m}-{k}" for m, k in UPSAMPLE])
def test_upsample_matches_eager(mode: str, kw: dict, onnx_matches: Callable) -> None:
    onnx_matches(nn.Upsample(mode=mode, **kw), _rand(*_SPATIAL[mode]))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: F.interpolate(x, size=(9, 2), mode="bilinear", antialias=False),
        lambda x: F.interpolate(x, scale_factor=(2, 3), mode="nearest"),
        lambda x: F.interpolate(x, scale_factor=1.5, mode="bicubic", recompute_scale_factor=True),
        lambda x: F.interpolate(x.half(), scale_factor=2, mode="bilinear").float(),
        lambda x: F.upsample_nearest(x, scale_factor=3),
    ],
    ids=["bilinear_size", "nearest_hw_scales", "bicubic_recompute", "float16", "legacy"],
)
@pytest.mark.filterwarnings("ignore:.*upsample_nearest.*deprecated")
def test_interpolate_matches_eager(fn: Callable, onnx_matches: Callable) -> None:
    onnx_matches(Fn(fn), _rand(3, 5, 6))


PADS = [
    (nn.ZeroPad2d((1, 2, 3, 0)), (3, 5, 6)),
    (nn.ConstantPad1d((2, -1), 3.5), (3, 6)),
    (nn.ConstantPad3d(1, -1.0), (2, 3, 4, 5)),
    (nn.ReflectionPad1d((2, 3)), (3, 6)),
    (nn.ReflectionPad2d((1, 2, 3, 0)), (3, 5, 6)),
    (nn.ReflectionPad3d(1), (2, 3, 4, 5)),
    (nn.ReplicationPad1d((0, 4)), (3, 6)),
    (nn.ReplicationPad2d(2), (3, 5, 6)),
    (nn.ReplicationPad3d((1, 0, 2, 1, 0, 3)), (2, 3, 4, 5)),
    (nn.CircularPad1d(2), (3, 6)),
    (nn.CircularPad2d((1, 2, 3, 0)), (3, 5, 6)),
    (nn.CircularPad3d(1), (2, 3, 4, 5)),
    (Fn(lambda x: F.pad(x, (1, -1, -2, 2), value=2.0)), (3, 5, 6)),
    (Fn(lambda x: F.pad(x, (1, 1, 0, 0, 1, 1))), (3, 5, 6)),  # the channel dim too
    (Fn(lambda x: F.pad(x, (-1, 2, 0, -2), mode="replicate")), (3, 5, 6)),
    # a negative pad that removes a whole dim: torch replicates the element next to the cut
    (Fn(lambda x: F.pad(x, (-6, 5, 0, 0), mode="replicate")), (3, 5, 6)),
    (Fn(lambda x: F.pad(x, (0, 0, 2, -5), mode="replicate")), (3, 5, 6)),
    (Fn(lambda x: F.pad(x, (5, -6, -5, 3), mode="replicate")), (3, 5, 6)),
    (Fn(lambda x: F.pad((x * 10).long(), (1, 2), value=-7)), (3, 5, 6)),
    (Fn(lambda x: torch.constant_pad_nd(x, (2, 1), 1.5)), (3, 6)),
]


@pytest.mark.parametrize(("layer", "shape"), PADS, ids=[str(i) for i in range(len(PADS))])
def test_pad_matches_eager(layer: nn.Module, shape: tuple, onnx_matches: Callable) -> None:
    onnx_matches(layer, _rand(*shape))


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.PixelShuffle(2), (8, 3, 5)),
        (nn.PixelShuffle(3), (2, 9, 2, 3)),  # extra leading dim: reshape path
        (nn.PixelUnshuffle(2), (3, 4, 6)),
        (nn.PixelUnshuffle(3), (2, 2, 3, 6)),
        (Fn(lambda x: F.pixel_unshuffle(F.pixel_shuffle(x, 2), 2) - x), (8, 3, 5)),
    ],
    ids=["shuffle", "shuffle_5d", "unshuffle", "unshuffle_5d", "roundtrip"],
)
def test_pixel_shuffle_matches_eager(layer: nn.Module, shape: tuple, onnx_matches) -> None:
    model = onnx_matches(layer, _rand(*shape))
    ops = {n.op_type for n in model.graph.node}
    if isinstance(layer, nn.PixelShuffle) and len(shape) == 3:
        assert ops == {"DepthToSpace"}
    assert "SpaceToDepth" not in ops


def test_unet_small_matches_eager(onnx_matches: Callable) -> None:
    module, _ = models.get("unet_small", batch=1)
    onnx_matches(module, lambda b: (models.get("unet_small", batch=b)[1][0],))


def test_resize_modes_in_graph() -> None:
    captured = capture(nn.Upsample(size=(4, 4), mode="bicubic"), (torch.randn(2, 3, 2, 2),))
    (node,) = [n for n in lower(captured).graph.node if n.op_type == "Resize"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["coordinate_transformation_mode"] == b"half_pixel"
    assert attrs["cubic_coeff_a"] == pytest.approx(-0.75)
    assert attrs["exclude_outside"] == 0


@pytest.mark.parametrize(
    "layer",
    [nn.Upsample(scale_factor=2, mode="bilinear"), nn.Upsample(size=(10, 18), mode="nearest")],
    ids=["scale_factor", "whole_multiple_size"],
)
def test_resize_scales_every_dim(layer: nn.Module) -> None:
    """onnxruntime's CPU layout optimizer keeps Resize in its blocked layout only when scales
    cover every dim, with no axes attribute: integer up-sampling must come out that way."""
    model = lower(capture(layer, (torch.randn(2, 3, 5, 6),)))
    (node,) = model.graph.node
    assert node.op_type == "Resize"
    assert "axes" not in {a.name for a in node.attribute}
    assert len(node.input) == 3 and node.input[2]  # scales, no sizes
    (scales,) = [t for t in model.graph.initializer if t.name == node.input[2]]
    ratios = [o / i for o, i in zip(layer(torch.randn(1, 3, 5, 6)).shape[2:], (5, 6), strict=True)]
    assert onnx.numpy_helper.to_array(scales).tolist() == [1.0, 1.0, *ratios]


def test_circular_pad_needs_opset_19() -> None:
    captured = capture(nn.CircularPad2d(1), (torch.randn(2, 3, 4, 4),))
    with pytest.raises(ExportError, match="opset 19"):
        lower(captured, opset=18)


def test_float64_resizes_in_float32() -> None:
    module = nn.Upsample(scale_factor=2, mode="bicubic")
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    model = lower(capture(module, (x,)))
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {model.graph.input[0].name: x.numpy()})
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, module(x).numpy(), rtol=1e-5, atol=1e-6)


_OPS = torch.ops.aten


@pytest.mark.parametrize(
    ("fn", "shape"),
    [
        (lambda x: _OPS.upsample_nearest2d.default(x, [10, 9]), (3, 5, 6)),
        (lambda x: _OPS.upsample_nearest2d.default(x, [10, 9], 2.0, 1.5), (3, 5, 6)),
        (lambda x: _OPS.upsample_nearest1d.default(x, [13]), (3, 6)),
        (lambda x: _OPS.upsample_bilinear2d.default(x, [7, 4], True), (3, 5, 6)),
        (lambda x: _OPS.upsample_bilinear2d.default(x, [10, 12], False, 2.0, 2.0), (3, 5, 6)),
        (lambda x: _OPS.upsample_bicubic2d.default(x, [8, 8], False), (3, 5, 6)),
        (lambda x: _OPS.upsample_trilinear3d.default(x, [4, 6, 5], True), (2, 3, 4, 5)),
        (lambda x: _OPS.reflection_pad2d.default(x, [1, 2, 0, 3]), (3, 5, 6)),
        (lambda x: _OPS.replication_pad3d.default(x, [1, 0, 2, 1, 0, 1]), (2, 3, 4, 5)),
        (lambda x: _OPS.reflection_pad1d.default(x, [3, 1]), (3, 6)),
        (lambda x: _OPS._pad_circular.default(x, [1, 2]), (3, 6)),
        (lambda x: _OPS.constant_pad_nd.default(x, [0, 1, -1, 2], -2.5), (3, 5, 6)),
    ],
    ids=[
        "nearest2d_size",
        "nearest2d_scales",
        "nearest1d",
        "bilinear_align",
        "bilinear_scales",
        "bicubic",
        "trilinear_align",
        "reflection_pad2d",
        "replication_pad3d",
        "reflection_pad1d",
        "pad_circular",
        "constant_pad_nd",
    ],
)
def test_direct_aten_overloads(fn: Callable, shape: tuple, onnx_matches: Callable) -> None:
    onnx_matches(Fn(fn), _rand(*shape))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool], ids=str)
def test_pixel_shuffle_of_integers_is_exact(dtype: torch.dtype) -> None:
    """onnxruntime has no int32/int64/bool DepthToSpace: those take Reshape / Transpose."""
    import fxonnx

    x = (torch.arange(2 * 8 * 3 * 5).reshape(2, 8, 3, 5) % 3).to(dtype)
    cm = fxonnx.compile(nn.PixelShuffle(2), (x,), provider="cpu")
    assert "DepthToSpace" not in {n.op_type for n in cm.onnx_model.graph.node}
    assert torch.equal(cm(x), F.pixel_shuffle(x, 2))


@pytest.mark.parametrize("shape", [(1, 4, 0, 3), (1, 4, 2, 0)], ids=["no_rows", "no_cols"])
def test_zero_size_pixel_shuffle_keeps_its_zero_dims(shape: tuple) -> None:
    """A 0 in Reshape's target shape means "copy the input dim" unless allowzero=1."""
    import fxonnx

    x = torch.zeros(shape, dtype=torch.int64)
    cm = fxonnx.compile(nn.PixelShuffle(2), (x,), dynamic_dims=None, provider="cpu")
    assert cm(x).shape == F.pixel_shuffle(x, 2).shape == (1, 1, 2 * shape[2], 2 * shape[3])
