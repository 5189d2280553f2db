"""Each shape-only fake kernel gives what torch's own fake tensor gives: shape, strides, dtype,
storage offset, aliasing (views share the input's storage, in-place ops return the input), on
symbolic sizes in contiguous, channels-last and permuted layouts; and it is used, not skipped."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.source import ConstantSource
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, statically_known_true
from torch.multiprocessing.reductions import StorageWeakRef

from fxonnx.capture._shape_kernels import _KERNELS, lean_node_meta, shape_kernel_mode

aten = torch.ops.aten


def _symbol(env: ShapeEnv, name: str, hint: int) -> torch.SymInt:
    source = ConstantSource(name)
    sym = env.create_symbol(hint, source, dynamic_dim=DimDynamic.DYNAMIC)
    return env.create_symintnode(sym, hint=hint, source=source)


class Pair:
    """One ShapeEnv, a plain FakeTensorMode (torch's answer) and ours."""

    def __init__(self) -> None:
        self.env = ShapeEnv()
        self.b = _symbol(self.env, "b", 3)
        self.s = _symbol(self.env, "s", 5)
        self.plain = FakeTensorMode(shape_env=self.env, allow_non_fake_inputs=True)
        self.ours = shape_kernel_mode(shape_env=self.env, allow_non_fake_inputs=True)

    def tensor(self, mode: FakeTensorMode, spec: tuple) -> torch.Tensor:
        layout, shape, dtype = spec
        shape = [self.b if d == "b" else self.s if d == "s" else d for d in shape]
        with mode:
            if layout == "channels_last":
                return torch.empty(shape, dtype=dtype, memory_format=torch.channels_last)
            t = torch.empty(shape, dtype=dtype)
            return t.transpose(-1, -2) if layout == "transposed" else t


F32 = torch.float32
C4 = ("contiguous", ("b", 6, 5, 4), F32)
CL4 = ("channels_last", ("b", 6, 5, 4), F32)
T3 = ("transposed", ("b", "s", 8), F32)
C3 = ("contiguous", ("b", "s", 8), F32)
C2 = ("contiguous", ("b", 8), F32)
W = ("contiguous", (16, 8), F32)
WT = ("contiguous", (8, 16), F32)
V6 = ("contiguous", (6,), F32)
V8 = ("contiguous", (8,), F32)
V16 = ("contiguous", (16,), F32)
I3 = ("contiguous", ("b", "s", 8), torch.int64)

# (op, args, kwargs): a spec is a fake tensor, "b"/"s" in a list are the symbols
CASES = [
    (aten.relu.default, [C4], {}),
    (aten.relu.default, [CL4], {}),
    (aten.gelu.default, [C3], {"approximate": "tanh"}),
    (aten.hardtanh.default, [CL4, 0.0, 6.0], {}),
    (aten.hardtanh_.default, [C4, 0.0, 6.0], {}),
    (aten.relu_.default, [CL4], {}),
    (aten.sigmoid.default, [C3], {}),
    (aten.rsqrt.default, [C3], {}),
    (aten.pow.Tensor_Scalar, [C3, 2], {}),
    (aten.clamp.default, [C3, 0.0], {}),
    (aten.clone.default, [C4], {}),
    (aten.clone.default, [T3], {"memory_format": torch.contiguous_format}),
    (aten._softmax.default, [C3, -1, False], {}),
    (aten._log_softmax.default, [C3, 1, False], {}),
    (aten._native_batch_norm_legit_no_training.default, [C4, V6, V6, V6, V6, 0.1, 1e-5], {}),
    (aten._native_batch_norm_legit_no_training.default, [CL4, V6, V6, V6, V6, 0.1, 1e-5], {}),
    (aten.native_layer_norm.default, [C3, [8], V8, V8, 1e-5], {}),
    (aten.addmm.default, [V16, C2, WT], {}),
    (aten.mean.dim, [C4, [2, 3], True], {}),
    (aten.mean.dim, [C3, [-1]], {}),
    (aten.add.Tensor, [C3, C3], {}),
    (aten.add.Tensor, [C3, V8], {"alpha": 2}),
    (aten.add.Tensor, [CL4, CL4], {}),
    (aten.add.Tensor, [C3, ("contiguous", ("s", 8), F32)], {}),
    (aten.mul.Tensor, [("contiguous", ("b", 1, 8), F32), C3], {}),
    (aten.mul.Tensor, [C3, 0.5], {}),
    (aten.sub.Tensor, [V8, C3], {}),
    (aten.div.Tensor, [C3, C3], {}),
    (aten.view.default, [C3, ["b", "s", 2, 4]], {}),
    (aten.view.default, [C3, ["b", "s", 8, 1]], {}),
    (aten._unsafe_view.default, [C3, ["b", "s", 2, 4]], {}),
    (aten.view.default, [I3, ["b", "s", 2, 4]], {}),
    (aten.view.default, [C3, ["b", -1]], {}),
    (aten.view.default, [C3, [-1, 8]], {}),
    (aten.view.default, [C4, ["b", 2, 3, -1]], {}),
    # multi-head attention: split a dim of a transposed tensor
    (aten.view.default, [T3, ["b", 2, 4, "s"]], {}),
    (aten.view.default, [("transposed", ("b", 4, 6), F32), ["b", 3, 2, 4]], {}),
    (aten.transpose.int, [C3, 0, 1], {}),
    (aten.transpose.int, [T3, -1, 0], {}),
    (aten.permute.default, [C4, [0, 2, 3, 1]], {}),
    (aten.permute.default, [CL4, [0, 3, 1, 2]], {}),
    (aten.unsqueeze.default, [C3, 1], {}),
    (aten.unsqueeze.default, [T3, -1], {}),
    (aten.select.int, [C3, 2, 3], {}),
    (aten.select.int, [T3, 1, -1], {}),  # T3 is (b, 8, s), transposed
    (aten.t.default, [W], {}),
    (aten.t.default, [C2], {}),
    (aten.t.default, [V8], {}),
    (aten.expand.default, [("contiguous", ("b", 1, 8), F32), ["b", "s", 8]], {}),
    (aten.expand.default, [("contiguous", ("b", 1, 8), F32), [-1, 5, -1]], {}),
    (aten.expand.default, [T3, [2, "b", 8, "s"]], {}),  # T3 is (b, 8, s), transposed
    (aten.expand.default, [("contiguous", (1, "s"), F32), [3, "b", "s"]], {}),
    # convolutions and pooling with a symbolic batch and static spatial sizes
    (
        aten.convolution.default,
        [C4, ("contiguous", (3, 6, 3, 3), F32), None, [1], [1], [1], False, [0], 1],
        {},
    ),
    (
        aten.convolution.default,
        [
            C4,
            ("contiguous", (4, 3, 2, 2), F32),
            ("contiguous", (4,), F32),
            [2, 1],
            [0, 1],
            [1, 2],
            False,
            [0, 0],
            2,
        ],
        {},
    ),
    (
        aten.convolution.default,
        [
            ("contiguous", ("b", 6, 9), F32),
            ("contiguous", (5, 6, 3), F32),
            None,
            [2],
            [1],
            [1],
            False,
            [0],
            1,
        ],
        {},
    ),
    (aten.max_pool2d_with_indices.default, [C4, [2, 2], [2, 2]], {}),
    (aten.max_pool2d_with_indices.default, [C4, [3, 3], [2, 2], [1, 1], [1, 1], True], {}),
    (
        aten.max_pool2d_with_indices.default,
        [("contiguous", ("b", 3, 7, 6), F32), [3, 2], [], [1, 0], [1, 1], True],
        {},
    ),
]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.device == b.device
        and a.dim() == b.dim()
        and all(statically_known_true(x == y) for x, y in zip(a.shape, b.shape, strict=True))
        and all(statically_known_true(x == y) for x, y in zip(a.stride(), b.stride(), strict=True))
        and statically_known_true(a.storage_offset() == b.storage_offset())
    )


def _is_spec(a: object) -> bool:
    return (
        isinstance(a, tuple)
        and len(a) == 3
        and a[0] in ("contiguous", "channels_last", "transposed")
    )


def _run(pair: Pair, mode: FakeTensorMode, op, template, kwargs, direct: bool = False):
    def arg(a: object) -> object:
        if _is_spec(a):
            return pair.tensor(mode, a)
        if isinstance(a, list):
            return [pair.b if d == "b" else pair.s if d == "s" else d for d in a]
        return a

    args = tuple(arg(a) for a in template)
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if direct:  # the kernel itself, to prove it answers rather than passing to torch
        return tensors, _KERNELS[op](mode, args, kwargs)
    with mode:
        return tensors, op(*args, **kwargs)


@pytest.mark.parametrize(("op", "args", "kwargs"), CASES, ids=lambda v: str(v)[:40])
def test_kernel_matches_torch(op, args, kwargs) -> None:
    pair = Pair()
    _, expected = _run(pair, pair.plain, op, args, kwargs)
    inputs, answered = _run(pair, pair.ours, op, args, kwargs, direct=True)
    assert answered is not NotImplemented, f"{op} passed this case to torch"
    expected = expected if isinstance(expected, tuple) else (expected,)
    answered = answered if isinstance(answered, tuple) else (answered,)
    assert len(answered) == len(expected)
    for got, want in zip(answered, expected, strict=True):
        assert _same(got, want), (
            f"{op}: got {tuple(got.shape)} {got.stride()} {got.dtype}, "
            f"torch gives {tuple(want.shape)} {want.stride()} {want.dtype}"
        )
    if op._schema.name.endswith("_") or op in (aten.hardtanh_.default, aten.relu_.default):
        assert answered[0] is inputs[0]  # in place: the input itself
    if op in (
        aten.view.default,
        aten.transpose.int,
        aten.permute.default,
        aten.unsqueeze.default,
        aten.select.int,
        aten.expand.default,
        aten.t.default,
    ):
        assert StorageWeakRef(answered[0].untyped_storage()) == StorageWeakRef(
            inputs[0].untyped_storage()
        )


# what the kernels must hand to torch: results they cannot name in one line
DECLINED = [
    (aten.relu.default, [I3], {}),  # integer dtypes
    (aten.view.default, [T3, ["b", "s", 8]], {}),  # a view of a non-contiguous tensor
    (aten.view.default, [T3, ["b", -1]], {}),  # no view exists: torch raises its error
    (aten.view.default, [("contiguous", ("b", 6), F32), [-1, 4]], {}),  # 6b/4: a guard
    (aten.add.Tensor, [C3, ("contiguous", ("s", "b", 8), F32)], {}),  # b == s would be a guard
    (aten._log_softmax.default, [T3, 1, False], {}),
    (aten.addmm.default, [V16, C2, ("contiguous", (4, 16), F32)], {}),  # mismatched k
    (aten.expand.default, [C3, ["s", "s", 8]], {}),  # b == s would be a guard
    (aten.select.int, [C3, 1, 0], {}),  # 0 < s would be a guard
    (aten.expand.default, [C3, [-1, "b", "s", 8]], {}),  # a new dim of -1: eager's error
    # a symbolic length: its window arithmetic is torch's
    (
        aten.convolution.default,
        [
            ("contiguous", ("b", 8, "s"), F32),
            ("contiguous", (4, 8, 3), F32),
            None,
            [1],
            [0],
            [1],
            False,
            [0],
            1,
        ],
        {},
    ),
    # channels that don't match the weight: torch raises its error
    (
        aten.convolution.default,
        [C4, ("contiguous", (3, 5, 3, 3), F32), None, [1], [1], [1], False, [0], 1],
        {},
    ),
    (
        aten.convolution.default,
        [C4, ("contiguous", (6, 3, 3, 3), F32), None, [1], [1], [1], True, [0], 1],
        {},
    ),
    (aten.max_pool2d_with_indices.default, [CL4, [2, 2], [2, 2]], {}),
]


@pytest.mark.parametrize(("op", "args", "kwargs"), DECLINED, ids=lambda v: str(v)[:40])
def test_kernel_declines_what_it_cannot_name(op, args, kwargs) -> None:
    pair = Pair()
    _, answered = _run(pair, pair.ours, op, args, kwargs, direct=True)
    assert answered is NotImplemented


def test_mismatched_addmm_still_fails_as_in_torch() -> None:
    pair = Pair()
    with pytest.raises(RuntimeError):
        _run(pair, pair.ours, aten.addmm.default, [V16, C2, ("contiguous", (4, 16), F32)], {})


def test_lean_node_meta_only_within_the_context() -> None:
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(x: torch.Tensor) -> torch.Tensor:
        return x.relu()

    x = torch.randn(2, 3)
    with lean_node_meta():
        lean = make_fx(f)(x)
    full = make_fx(f)(x)
    relu = [n for n in lean.graph.nodes if n.op == "call_function"][0]
    relu_full = [n for n in full.graph.nodes if n.op == "call_function"][0]
    assert relu.meta["tensor_meta"].memory_format is None
    assert relu_full.meta["tensor_meta"].memory_format == torch.contiguous_format
