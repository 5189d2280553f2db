"""Each backward-op lowering against the native ATen op, in float64 where onnxruntime's CPU
kernels have it (its Conv, ConvTranspose and Erf are float32 only: those run in float32)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.utils._pytree as pytree
from torch.fx.experimental.proxy_tensor import make_fx

from fxonnx.capture import Captured, Shapes, TensorSpec
from fxonnx.export import lower
from fxonnx.export.ops.backward import TRAINING_META

aten = torch.ops.aten
F64 = torch.float64


def run_lowered(fn: Callable, *args: torch.Tensor) -> list[np.ndarray]:
    """Trace ``fn(*args)`` (a direct ATen call), lower it and run it in onnxruntime. Nodes are
    marked as export_training marks them (train-mode batch norm lowers only there)."""
    gm = make_fx(fn)(*args)
    for node in gm.graph.nodes:
        node.meta[TRAINING_META] = True
    outs = pytree.tree_leaves(fn(*args))
    empty = pytree.tree_flatten(())[1]
    captured = Captured(
        gm=gm,
        inputs=tuple(
            TensorSpec(f"in{i}", "input", tuple(a.shape), a.dtype) for i, a in enumerate(args)
        ),
        outputs=tuple(
            TensorSpec(f"out{i}", "output", tuple(o.shape), o.dtype) for i, o in enumerate(outs)
        ),
        state={},
        in_spec=empty,
        leaves=(),
        out_spec=empty,
        out_leaves=(),
        shapes=Shapes(),
        method="test",
    )
    model = lower(captured)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {f"in{i}": a.numpy() for i, a in enumerate(args)})


def assert_matches(fn: Callable, *args: torch.Tensor, rtol: float = 1e-10) -> None:
    want = [t for t in pytree.tree_leaves(fn(*args)) if isinstance(t, torch.Tensor)]
    got = run_lowered(fn, *args)
    assert len(got) == len(want)
    for w, g in zip(want, got, strict=True):
        w = w.to(torch.float64).numpy()
        scale = max(1.0, float(np.abs(w).max()))
        err = float(np.abs(g.astype(np.float64) - w).max()) if w.size else 0.0
        assert err <= rtol * scale, (err, scale)


def rnd(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -- pointwise ----------------------------------------------------------------------------
def test_pointwise_backward() -> None:
    g, x = rnd(3, 5, seed=1), rnd(3, 5, seed=2)
    x[0, 0] = 0.0  # relu's gradient at 0 is 0
    assert_matches(lambda g, x: aten.threshold_backward(g, x, 0.0), g, x)
    assert_matches(lambda g, x: aten.hardtanh_backward(g, x, 0.0, 0.5), g, x)
    assert_matches(lambda g, x: aten.tanh_backward(g, x.tanh()), g, x)
    assert_matches(lambda g, x: aten.sigmoid_backward(g, x.sigmoid()), g, x)
    assert_matches(lambda g, x: aten.silu_backward(g, x), g, x)
    # onnxruntime has no float64 Erf: the exact GELU runs in float32
    assert_matches(lambda g, x: aten.gelu_backward(g, x), g.float(), x.float(), rtol=1e-6)
    assert_matches(lambda g, x: aten.gelu_backward(g, x, approximate="tanh"), g, x)


@pytest.mark.parametrize("dim", [1, 0])
def test_softmax_backward(dim: int) -> None:
    g, x = rnd(4, 6, seed=1), rnd(4, 6, seed=2)
    y, ly = x.softmax(dim), x.log_softmax(dim)
    assert_matches(lambda g, y: aten._softmax_backward_data(g, y, dim, F64), g, y)
    assert_matches(lambda g, y: aten._log_softmax_backward_data(g, y, dim, F64), g, ly)


# -- losses -------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss(reduction: int, weighted: bool) -> None:
    x = rnd(7, 5, seed=1).log_softmax(1)
    t = torch.tensor([0, 4, 2, -100, 1, 4, 3])
    w = rnd(5, seed=3).abs() + 0.5 if weighted else None

    def both(x: torch.Tensor, t: torch.Tensor, *w: torch.Tensor) -> tuple:
        weight = w[0] if w else None
        out, total = aten.nll_loss_forward(x, t, weight, reduction, -100)
        g = torch.ones_like(out) * 1.5
        return out, aten.nll_loss_backward(g, x, t, weight, reduction, -100, total)

    args = (x, t) + ((w,) if w is not None else ())
    assert_matches(both, *args)


def test_nll_loss_unbatched() -> None:
    x, t = rnd(5, seed=1).log_softmax(0), torch.tensor(3)

    def both(x: torch.Tensor, t: torch.Tensor) -> tuple:
        out, total = aten.nll_loss_forward(x, t, None, 1, -100)
        return out, aten.nll_loss_backward(torch.ones_like(out), x, t, None, 1, -100, total)

    assert_matches(both, x, t)


@pytest.mark.parametrize("reduction", [0, 1, 2])
def test_mse_loss(reduction: int) -> None:
    x, t = rnd(4, 3, seed=1), rnd(4, 3, seed=2)

    def both(x: torch.Tensor, t: torch.Tensor) -> tuple:
        out = aten.mse_loss(x, t, reduction)
        return out, aten.mse_loss_backward(torch.ones_like(out) * 0.5, x, t, reduction)

    assert_matches(both, x, t)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_dropout_backward(dtype: torch.dtype) -> None:
    g = rnd(3, 5, seed=1, dtype=dtype)
    g[0, 0] = float("nan")  # dropped or not, torch keeps NaN * 0 = NaN
    mask = rnd(3, 5, seed=2) > 0
    mask[0, 0] = False
    fn = lambda g, m: aten.native_dropout_backward(g, m, 1.0 / 0.7)  # noqa: E731
    want = fn(g, mask)
    (got,) = run_lowered(fn, g, mask)
    assert got.dtype == want.numpy().dtype
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, equal_nan=True)


# -- convolution (float32: onnxruntime has no float64 Conv on the CPU) ----------------------
CONVS = {
    "plain": dict(cin=3, cout=4, k=3, stride=1, pad=0, dil=1, groups=1, size=8),
    "strided_padded": dict(cin=3, cout=4, k=3, stride=2, pad=1, dil=1, groups=1, size=9),
    "stride_drops_rows": dict(cin=2, cout=3, k=3, stride=2, pad=0, dil=1, groups=1, size=8),
    "dilated": dict(cin=2, cout=3, k=3, stride=1, pad=2, dil=2, groups=1, size=9),
    "grouped": dict(cin=4, cout=6, k=3, stride=1, pad=1, dil=1, groups=2, size=7),
    "depthwise_strided": dict(cin=4, cout=4, k=3, stride=2, pad=1, dil=1, groups=4, size=8),
    "pointwise": dict(cin=5, cout=3, k=1, stride=1, pad=0, dil=1, groups=1, size=4),
    # more output channels than positions: the weight gradient as one product over samples
    "deep_small": dict(cin=6, cout=20, k=3, stride=1, pad=1, dil=1, groups=1, size=4),
    "deep_small_strided_grouped": dict(
        cin=4, cout=24, k=3, stride=2, pad=1, dil=1, groups=2, size=6
    ),
}


@pytest.mark.parametrize("case", list(CONVS))
def test_convolution_backward(case: str) -> None:
    c = CONVS[case]
    f32 = torch.float32
    x = rnd(2, c["cin"], c["size"], c["size"], seed=1, dtype=f32)
    w = rnd(c["cout"], c["cin"] // c["groups"], c["k"], c["k"], seed=2, dtype=f32)
    conv = dict(stride=[c["stride"]] * 2, padding=[c["pad"]] * 2, dilation=[c["dil"]] * 2)
    y = aten.convolution(
        x, w, None, conv["stride"], conv["padding"], conv["dilation"], False, [0, 0], c["groups"]
    )
    g = rnd(*y.shape, seed=3, dtype=f32)

    def fn(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> tuple:
        return aten.convolution_backward(
            g,
            x,
            w,
            [c["cout"]],
            conv["stride"],
            conv["padding"],
            conv["dilation"],
            False,
            [0, 0],
            c["groups"],
            [True, True, True],
        )

    assert_matches(fn, g, x, w, rtol=2e-6)


def test_convolution_backward_1d() -> None:
    f32 = torch.float32
    x, w = rnd(2, 3, 10, seed=1, dtype=f32), rnd(4, 3, 3, seed=2, dtype=f32)
    g = rnd(2, 4, 5, seed=3, dtype=f32)

    def fn(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> tuple:
        return aten.convolution_backward(
            g, x, w, [4], [2], [1], [1], False, [0], 1, [True, True, True]
        )

    assert_matches(fn, g, x, w, rtol=2e-6)


# -- pooling ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kernel,stride,pad,ceil",
    [(2, 2, 0, False), (3, 2, 1, False), (3, 2, 0, True), (3, 1, 1, False)],
)
def test_max_pool_backward(kernel: int, stride: int, pad: int, ceil: bool) -> None:
    x = rnd(2, 3, 9, 9, seed=1)
    y, idx = aten.max_pool2d_with_indices(x, [kernel] * 2, [stride] * 2, [pad] * 2, [1, 1], ceil)
    g = rnd(*y.shape, seed=2)

    def fn(g: torch.Tensor, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return aten.max_pool2d_with_indices_backward(
            g, x, [kernel] * 2, [stride] * 2, [pad] * 2, [1, 1], ceil, idx
        )

    assert_matches(fn, g, x, idx)


@pytest.mark.parametrize(
    "kernel,stride,pad,ceil,include_pad,divisor",
    [
        (2, 2, 0, False, True, None),
        (3, 2, 1, False, True, None),
        (3, 2, 1, False, False, None),
        (3, 2, 1, True, True, None),
        (3, 2, 0, True, False, None),
        (3, 1, 1, False, True, 5),
    ],
)
def test_avg_pool_backward(
    kernel: int, stride: int, pad: int, ceil: bool, include_pad: bool, divisor: int | None
) -> None:
    # the window spread is a ConvTranspose: float32 (onnxruntime has no float64 kernel)
    x = rnd(2, 3, 8, 8, seed=1, dtype=torch.float32)
    args = ([kernel] * 2, [stride] * 2, [pad] * 2, ceil, include_pad, divisor)
    y = aten.avg_pool2d(x, *args)
    g = rnd(*y.shape, seed=2, dtype=torch.float32)
    assert_matches(lambda g, x: aten.avg_pool2d_backward(g, x, *args), g, x, rtol=1e-6)


@pytest.mark.parametrize("out", [1, 2, 4])
def test_adaptive_avg_pool_backward(out: int) -> None:
    x = rnd(2, 3, 8, 8, seed=1, dtype=torch.float32)
    g = rnd(2, 3, out, out, seed=2, dtype=torch.float32)
    assert_matches(lambda g, x: aten._adaptive_avg_pool2d_backward(g, x), g, x, rtol=1e-6)


# -- normalisation ------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 3)])
def test_batch_norm_train_forward(shape: tuple[int, ...]) -> None:
    x, w, b = rnd(*shape, seed=1) * 2 + 1, rnd(3, seed=2), rnd(3, seed=3)
    rm, rv = rnd(3, seed=4), rnd(3, seed=5).abs() + 0.5
    fn = lambda x, w, b, rm, rv: aten._native_batch_norm_legit_functional(  # noqa: E731
        x, w, b, rm, rv, True, 0.1, 1e-5
    )
    assert_matches(fn, x, w, b, rm, rv)


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_backward(train: bool) -> None:
    x, w = rnd(4, 3, 5, 5, seed=1) * 2 + 1, rnd(3, seed=2)
    rm, rv = rnd(3, seed=4), rnd(3, seed=5).abs() + 0.5
    _, mean, invstd = aten.native_batch_norm(x, w, None, rm.clone(), rv.clone(), train, 0.1, 1e-5)
    g = rnd(4, 3, 5, 5, seed=6)

    def fn(*a: torch.Tensor) -> tuple:
        return aten.native_batch_norm_backward(*a, train, 1e-5, [True, True, True])

    assert_matches(fn, g, x, w, rm, rv, mean, invstd, rtol=1e-9)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(
    "mask", [[True, False, False], [False, True, False], [False, False, True], [True, False, True]]
)
def test_batch_norm_backward_computes_what_the_mask_asks(train: bool, mask: list[bool]) -> None:
    """Each output alone and in pairs, without a weight (scale 1), on a 3-D input."""
    x = rnd(4, 3, 7, seed=1) * 2 + 1
    rm, rv = rnd(3, seed=4), rnd(3, seed=5).abs() + 0.5
    _, mean, invstd = aten.native_batch_norm(
        x, None, None, rm.clone(), rv.clone(), train, 0.1, 1e-5
    )
    g = rnd(4, 3, 7, seed=6)

    def fn(g: torch.Tensor, x: torch.Tensor, *a: torch.Tensor) -> tuple:
        rm, rv, mean, invstd = a
        out = aten.native_batch_norm_backward(g, x, None, rm, rv, mean, invstd, train, 1e-5, mask)
        return tuple(o for o in out if o is not None)

    assert_matches(fn, g, x, rm, rv, mean, invstd, rtol=1e-9)


def test_layer_norm_backward() -> None:
    x, w, b = rnd(3, 4, 6, seed=1), rnd(6, seed=2), rnd(6, seed=3)
    _, mean, rstd = aten.native_layer_norm(x, [6], w, b, 1e-5)
    g = rnd(3, 4, 6, seed=4)

    def fn(
        g: torch.Tensor,
        x: torch.Tensor,
        mean: torch.Tensor,
        rstd: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor,
    ) -> tuple:
        return aten.native_layer_norm_backward(g, x, [6], mean, rstd, w, b, [True, True, True])

    assert_matches(fn, g, x, mean, rstd, w, b)


# -- indexing -----------------------------------------------------------------------------
@pytest.mark.parametrize("padding_idx", [-1, 2])
def test_embedding_backward(padding_idx: int) -> None:
    g = rnd(3, 4, 5, seed=1)
    idx = torch.tensor([[0, 2, 2, 7], [1, 1, 1, 0], [9, 2, 3, 3]])
    fn = lambda g, i: aten.embedding_dense_backward(g, i, 10, padding_idx, False)  # noqa: E731
    assert_matches(fn, g, idx)


def test_select_and_slice_backward() -> None:
    g = rnd(3, 5, seed=1)
    assert_matches(lambda g: aten.select_backward(g, [3, 4, 5], 1, -1), g)
    assert_matches(lambda g: aten.slice_backward(g, [3, 7, 5], 1, 2, 9, 1), rnd(3, 5, 5, seed=2))


# -- issue 11: segmentation losses, transposed convolutions, resampling --------------------
@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss2d(reduction: int, weighted: bool) -> None:
    x = rnd(2, 4, 3, 5, seed=1).log_softmax(1)
    t = torch.randint(0, 4, (2, 3, 5), generator=torch.Generator().manual_seed(2))
    t[0, 1, 2] = -100
    w = rnd(4, seed=3).abs() + 0.5 if weighted else None

    def both(x: torch.Tensor, t: torch.Tensor, *w: torch.Tensor) -> tuple:
        weight = w[0] if w else None
        out, total = aten.nll_loss2d_forward(x, t, weight, reduction, -100)
        g = torch.ones_like(out) * 1.5
        return out, aten.nll_loss2d_backward(g, x, t, weight, reduction, -100, total)

    assert_matches(both, x, t, *((w,) if w is not None else ()))


TRANSPOSED = {
    "plain": dict(cin=3, cout=4, k=3, stride=1, pad=0, out_pad=0, dil=1, groups=1, size=5),
    "strided": dict(cin=4, cout=2, k=2, stride=2, pad=0, out_pad=0, dil=1, groups=1, size=4),
    "padded_out_pad": dict(cin=2, cout=3, k=3, stride=2, pad=1, out_pad=1, dil=1, groups=1, size=5),
    "grouped_dilated": dict(
        cin=4, cout=6, k=3, stride=1, pad=1, out_pad=0, dil=2, groups=2, size=6
    ),
}


@pytest.mark.parametrize("case", list(TRANSPOSED))
def test_transposed_convolution_backward(case: str) -> None:
    c = TRANSPOSED[case]
    f32 = torch.float32
    x = rnd(2, c["cin"], c["size"], c["size"], seed=1, dtype=f32)
    w = rnd(c["cin"], c["cout"] // c["groups"], c["k"], c["k"], seed=2, dtype=f32)
    hyper = ([c["stride"]] * 2, [c["pad"]] * 2, [c["dil"]] * 2, True, [c["out_pad"]] * 2)
    y = aten.convolution(x, w, None, *hyper, c["groups"])
    g = rnd(*y.shape, seed=3, dtype=f32)

    def fn(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> tuple:
        return aten.convolution_backward(
            g, x, w, [c["cout"]], *hyper, c["groups"], [True, True, True]
        )

    assert_matches(fn, g, x, w, rtol=2e-6)


UPSAMPLE = {
    "bilinear": (aten.upsample_bilinear2d_backward, (2, 3, 4, 5), [8, 10], [False, None, None]),
    "bilinear_corners": (
        aten.upsample_bilinear2d_backward,
        (2, 3, 4, 5),
        [7, 9],
        [True, None, None],
    ),
    "bilinear_down": (aten.upsample_bilinear2d_backward, (1, 2, 8, 6), [3, 4], [False, None, None]),
    "bicubic": (aten.upsample_bicubic2d_backward, (1, 2, 4, 5), [8, 7], [False, None, None]),
    "nearest2d": (aten.upsample_nearest2d_backward, (2, 3, 4, 5), [8, 15], [None, None]),
    "nearest_exact2d": (
        aten._upsample_nearest_exact2d_backward,
        (1, 2, 5, 4),
        [7, 9],
        [None, None],
    ),
    "linear1d": (aten.upsample_linear1d_backward, (2, 3, 6), [13], [False, None]),
    "nearest1d": (aten.upsample_nearest1d_backward, (2, 3, 6), [12], [None]),
    "trilinear": (
        aten.upsample_trilinear3d_backward,
        (1, 2, 3, 4, 5),
        [6, 5, 8],
        [False] + [None] * 3,
    ),
}


@pytest.mark.parametrize("case", list(UPSAMPLE))
def test_upsample_backward(case: str) -> None:
    op, size, out, extra = UPSAMPLE[case]
    g = rnd(*size[:2], *out, seed=4)
    assert_matches(lambda g: op(g, out, list(size), *extra), g)
