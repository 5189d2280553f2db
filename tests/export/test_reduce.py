"""Reductions, arg-extrema, moments, norms, scans, sorting and softmax at two batch sizes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from fn_module import Fn
from torch import nn

from fxonnx._errors import ExportError
from fxonnx.capture import capture
from fxonnx.export import lower


def _x(b: int) -> tuple:
    return (torch.randn(b, 4, 6, generator=torch.Generator().manual_seed(b)),)


def _ints(b: int) -> tuple:
    return (torch.randint(-5, 5, (b, 4, 6), generator=torch.Generator().manual_seed(b)),)


def _masked(b: int) -> tuple:
    x = torch.randn(b, 4, 6, generator=torch.Generator().manual_seed(b))
    x[:, 1] = -float("inf")  # a fully masked row
    x[:, 2, :3] = -float("inf")
    return (x,)


CASES: dict[str, tuple[Callable, Callable[[int], tuple]]] = {
    "max_dim": (lambda x: x.max(1), _x),
    "min_dim_keepdim": (lambda x: x.min(-1, keepdim=True), _x),
    "max_min_all": (lambda x: x.max() - x.min(), _x),
    "max_dim_int": (lambda a: a.max(2), _ints),
    "argmax_dim": (lambda x: x.argmax(1), _x),
    "argmin_keepdim": (lambda x: x.argmin(-1, keepdim=True), _x),
    "argmax_flat": (lambda x: x.argmax(), _x),
    "argmax_flat_keepdim": (lambda x: x.argmax(keepdim=True), _x),
    "argmax_ties_first": (lambda a: a.argmax(2) * 10 + a.argmin(2), _ints),
    "prod": (lambda x: x.prod(1) + x.prod(-1, keepdim=True).sum(), _x),
    "prod_int": (lambda a: a.prod(2), _ints),
    "prod_all": (lambda x: (x * 0.1 + 1).prod(), _x),
    "sum_int_bool": (lambda a: a.sum(2) + (a > 0).sum(-1), _ints),
    "mean_dtype": (lambda x: x.mean(1, dtype=torch.float64), _x),
    "var_default": (lambda x: x.var(), _x),
    "var_correction0": (lambda x: x.var(1, correction=0), _x),
    "var_batch_dim": (lambda x: x.var(0, keepdim=True), _x),
    "std_dims": (lambda x: x.std((0, 2)), _x),
    "std_unbiased_false": (lambda x: x.std(-1, unbiased=False, keepdim=True), _x),
    "var_mean": (lambda x: torch.var_mean(x, 1), _x),
    "std_mean_keep": (lambda x: torch.std_mean(x, -1, keepdim=True, correction=2), _x),
    "norm_2": (lambda x: x.norm(dim=1), _x),
    "norm_all": (lambda x: x.norm(), _x),
    "norm_1_keep": (lambda x: torch.linalg.vector_norm(x, 1, dim=-1, keepdim=True), _x),
    "norm_inf": (lambda x: torch.linalg.vector_norm(x, float("inf"), dim=-1), _x),
    "norm_neg_inf": (lambda x: torch.linalg.vector_norm(x, -float("inf"), dim=-1), _x),
    "norm_0": (lambda x: torch.linalg.vector_norm(x * (x > 0), 0, dim=-1), _x),
    "norm_3": (lambda x: torch.norm(x, p=3, dim=2), _x),
    "linalg_norm_vector": (lambda x: torch.linalg.norm(x, ord=1, dim=-1), _x),
    "linalg_norm_fro": (lambda x: torch.linalg.norm(x, dim=(1, 2)), _x),
    "cumsum": (lambda x: x.cumsum(2) + x.cumsum(0), _x),
    "cumsum_int": (lambda a: a.cumsum(1), _ints),
    "cumsum_bool": (lambda x: (x > 0).cumsum(-1) + (x > 1).cumsum(0), _x),
    "diff": (lambda x: torch.diff(x), _x),
    "diff_prepend": (lambda x: torch.diff(x, dim=-1, prepend=x[:, :, :1] * 2), _x),
    "diff_n2_append_dim1": (lambda x: torch.diff(x, n=2, dim=1, append=x[:, :2]), _x),
    "diff_prepend_append": (lambda x: torch.diff(x, dim=1, prepend=x[:, :1], append=x), _x),
    "diff_n0_ignores_prepend": (lambda x: torch.diff(x, n=0, dim=1, prepend=x), _x),
    "diff_batch_dim": (lambda x: torch.diff(x, dim=0), _x),
    "diff_n3_int": (lambda a: torch.diff(a, n=3, dim=-1), _ints),
    "diff_bool": (lambda x: torch.diff(x > 0, dim=-1, prepend=x[:, :, :1] < 0), _x),
    "diff_packed_positions": (
        lambda a: (torch.diff(a, dim=-1, prepend=a[:, :, :1]) != 1).cumsum(-1),
        _ints,
    ),
    "any_all": (
        lambda x: torch.stack([(x > 0).any(1), (x > -2).all(1), x.any(1), (x > 1).all(1)]),
        _x,
    ),
    "any_all_full": (lambda x: torch.stack([(x > 2).any(), (x > -4).all()]), _x),
    "any_dims": (lambda x: (x > 1).any((0, 2)), _x),
    "logsumexp": (lambda x: torch.logsumexp(x, 1), _x),
    "logsumexp_large": (lambda x: torch.logsumexp(x * 1000, -1, keepdim=True), _x),
    "logsumexp_masked": (lambda x: torch.logsumexp(x, -1), _masked),
    "topk": (lambda x: torch.topk(x, 3), _x),
    "topk_smallest_dim1": (lambda x: torch.topk(x, 2, dim=1, largest=False), _x),
    "sort": (lambda x: torch.sort(x, 1, descending=True), _x),
    "sort_last": (lambda x: torch.sort(x), _x),
    "sort_batch_dim": (lambda x: torch.sort(x, 0), _x),
    "argsort": (lambda x: torch.argsort(x, -1, descending=True), _x),
    "sort_stable": (lambda a: torch.sort(a, dim=2, stable=True), _ints),
    "softmax_dtype": (lambda x: torch.softmax(x, 1, dtype=torch.float64), _x),
    "log_softmax_half_to_float": (
        lambda x: torch.log_softmax(x.half(), -1, dtype=torch.float32),
        _x,
    ),
    "softmax_0d": (lambda x: torch.softmax(x.sum(), 0) + x.sum(), _x),
    "softmin": (lambda x: nn.Softmin(1)(x), _x),
    "safe_softmax": (lambda x: torch.ops.aten._safe_softmax(x, -1), _masked),
}


@pytest.mark.parametrize("name", list(CASES))
def test_reduce_matches_eager(name: str, onnx_matches: Callable) -> None:
    fn, make_inputs = CASES[name]
    onnx_matches(Fn(fn), make_inputs)


def test_safe_softmax_masked_rows_are_zero(onnx_matches: Callable) -> None:
    x = _masked(2)[0]
    expected = torch.ops.aten._safe_softmax(x, -1)
    assert torch.all(expected[:, 1] == 0) and not torch.isnan(expected).any()
    onnx_matches(Fn(lambda x: torch.ops.aten._safe_softmax(x, -1)), _masked)


def test_safe_softmax_keeps_nan_and_inf_rows_as_eager() -> None:
    """A row with a NaN stays NaN, a row with +inf is softmax's NaN, not the masked 0: only an
    all -inf row (its max is -inf) is zeroed."""
    import fxonnx

    def make(b: int) -> tuple:
        (x,) = _masked(b)
        x[:, 3, 0] = float("nan")
        x[:, 0, 5] = float("inf")
        return (x,)

    model = Fn(lambda x: torch.ops.aten._safe_softmax(x, -1))
    compiled = fxonnx.compile(model, make(2), verify=False, provider="cpu")
    for b in (2, 3):
        (x,) = make(b)
        want = model(x)
        assert torch.isnan(want[:, 3]).all() and torch.isnan(want[:, 0]).any()
        torch.testing.assert_close(compiled(x), want, equal_nan=True)


def test_matrix_norm_orders_are_refused() -> None:
    captured = capture(Fn(lambda x: torch.linalg.norm(x, ord=2, dim=(1, 2))), _x(2))
    with pytest.raises(ExportError, match="matrix norm"):
        lower(captured)


class Extremes(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple:
        return (
            torch.amax(x, 0),
            torch.amin(x, 1, keepdim=True),
            x.max(),
            *torch.max(x, 0),
            *x.min(-1),
            torch.argmax(x, 0),
            torch.argmin(x, 1, keepdim=True),
            x.argmax(),
            torch.linalg.vector_norm(x, float("inf"), dim=0),
            torch.linalg.vector_norm(x, -float("inf"), dim=1, keepdim=True),
        )


def test_extremes_propagate_nan_as_torch_does(onnx_matches: Callable) -> None:
    # found by the OpInfo suite (masked.amax/argmax samples with NaN): onnxruntime's ReduceMax
    # and ArgMax skipped NaNs depending on their position
    nan = float("nan")
    base = torch.tensor([[nan, 1.0, 2.0], [3.0, nan, -1.0], [0.0, 5.0, nan], [1.0, 2.0, 3.0]])
    onnx_matches(Extremes(), lambda b: (torch.cat([base, torch.arange(3.0 * b).view(b, 3)]),))


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool])
def test_diff_with_one_prepended_step_is_slice_concat_sub(dtype: torch.dtype) -> None:
    """diff(x, prepend=p) with p one step long along dim: x - concat(p, x[:-1]) (Xor for bool),
    one Slice and one Concat in diff; matches eager at two batches and, with a dynamic length, at two
    lengths."""
    import onnxruntime as ort

    def fn(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype) if dtype != torch.bool else x > 0
        return torch.diff(
            x, dim=-1, prepend=x[:, :1] ^ True if dtype == torch.bool else x[:, :1] - 1
        )

    module = Fn(fn)
    captured = capture(module, (torch.randn(2, 6) * 4,), dynamic_dims={0: {0: "batch", 1: "n"}})
    model = lower(captured)
    ops = [n.op_type for n in model.graph.node]
    # one Slice for the prepend x[:, :1] itself, one in diff (it was three: two in diff)
    assert ops.count("Slice") == 2 and ops.count("Concat") == 1, ops
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in [(2, 6), (3, 9), (1, 1)]:
        x = torch.randn(*shape) * 4
        (got,) = session.run(None, {captured.user_inputs[0].name: x.numpy()})
        np.testing.assert_array_equal(got, module(x).numpy())
