"""passes._graph: metadata for new nodes, by the cheap meta-tensor path or the FakeTensorMode."""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

from fxonnx.passes._graph import _on_meta

aten = torch.ops.aten


def test_static_inputs_get_the_same_metadata_as_the_mode_gives() -> None:
    mode = FakeTensorMode(shape_env=ShapeEnv())
    w = mode.from_tensor(torch.randn(8, 3, 3, 3), static_shapes=True)
    s = mode.from_tensor(torch.randn(8), static_shapes=True)
    for target, args in (
        (aten.mul.Tensor, (w, aten.reshape.default(torch.randn(8), [8, 1, 1, 1]))),
        (aten.rsqrt.default, (s,)),
        (aten.add.Tensor, (s, 1e-5)),
        (aten.reshape.default, (s, [-1, 1, 1, 1])),
        (aten.sub.Tensor, (s, s)),
    ):
        args = tuple(
            mode.from_tensor(a, static_shapes=True)
            if not isinstance(a, FakeTensor) and isinstance(a, torch.Tensor)
            else a
            for a in args
        )
        got = _on_meta(mode, target, args, {})
        with mode:
            want = target(*args)
        assert isinstance(got, FakeTensor), target
        assert got.shape == want.shape and got.dtype == want.dtype, target
        assert got.device == want.device and got.stride() == want.stride(), target


def test_symbolic_or_non_tensor_results_fall_back_to_the_mode() -> None:
    mode = FakeTensorMode(shape_env=ShapeEnv())
    x = mode.from_tensor(torch.randn(4, 3))  # dynamic sizes under a ShapeEnv
    assert not all(type(d) is int for d in x.shape)
    assert _on_meta(mode, aten.relu.default, (x,), {}) is None
    s = mode.from_tensor(torch.randn(6), static_shapes=True)
    assert _on_meta(mode, aten.split.Tensor, (s, 2), {}) is None  # a list of tensors
    assert _on_meta(mode, aten.add.Tensor, (1, 2), {}) is None  # no tensor at all
