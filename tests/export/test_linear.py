"""Matrix products on integers (no integer Gemm in onnxruntime: MatMul + Add), bool outer
products, and einsum equations onnxruntime does not take as torch writes them, against eager."""

from __future__ import annotations

from collections.abc import Callable

import onnx
import pytest
import torch
import torch.nn.functional as F
from fn_module import Fn

import fxonnx


def _ints(*shape: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    return torch.randint(-50, 50, shape, generator=torch.Generator().manual_seed(sum(shape)))


INTEGER_PRODUCTS: dict[str, tuple[Callable, tuple[tuple[int, ...], ...]]] = {
    "linear": (lambda x, w, b: F.linear(x, w, b), ((4, 3), (5, 3), (5,))),
    "linear_3d": (lambda x, w, b: F.linear(x, w, b), ((2, 4, 3), (5, 3), (5,))),
    "addmm": (lambda c, a, b: torch.addmm(c, a, b), ((4, 5), (4, 3), (3, 5))),
    "addmm_scaled": (lambda c, a, b: torch.addmm(c, a, b, beta=2, alpha=3), ((5,), (4, 3), (3, 5))),
}


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("name", list(INTEGER_PRODUCTS))
def test_integer_products_are_exact(name: str, dtype: torch.dtype) -> None:
    fn, shapes = INTEGER_PRODUCTS[name]
    inputs = tuple(_ints(*s).to(dtype) for s in shapes)
    cm = fxonnx.compile(Fn(fn), inputs, dynamic_dims=None, provider="cpu")
    assert "Gemm" not in {n.op_type for n in cm.onnx_model.graph.node}
    assert torch.equal(cm(*inputs), fn(*inputs))


def test_bool_outer_product_is_and() -> None:
    a = torch.tensor([True, False, True])
    b = torch.tensor([False, True, True, True])
    cm = fxonnx.compile(Fn(torch.outer), (a, b), dynamic_dims=None, provider="cpu")
    got = cm(a, b)
    assert got.dtype == torch.bool and torch.equal(got, torch.outer(a, b))
    onnx.checker.check_model(cm.onnx_model, full_check=True)  # standard ONNX: no bool Mul


EINSUM = {
    "ellipsis_uneven": ("...ik,...j->ij", ((1, 2, 3), (3,))),
    "ellipsis_broadcast": ("...ik,...kj", ((4, 2, 3), (3, 5))),
    "ellipsis_only": ("...", ((2, 3),)),
    "ellipsis_summed": ("i...->...", ((3, 2, 4),)),
    "implicit_upper": ("bAc,cD", ((2, 3, 4), (4, 5))),
    "implicit_transpose": ("ba", ((2, 3),)),
    "trace": ("ii", ((3, 3),)),
}


@pytest.mark.parametrize("name", list(EINSUM))
def test_einsum_matches_eager(name: str) -> None:
    equation, shapes = EINSUM[name]
    g = torch.Generator().manual_seed(0)
    inputs = tuple(torch.randn(*s, generator=g) for s in shapes)
    model = Fn(lambda *t: torch.einsum(equation, *t))
    cm = fxonnx.compile(model, inputs, dynamic_dims=None, verify=False, provider="cpu")
    torch.testing.assert_close(cm(*inputs), model(*inputs), rtol=1e-5, atol=1e-5)


FLOAT_LINEARS = {
    # name: (input shape, dynamic dims of the input, expected matrix-product op)
    "3d_dynamic_batch": ((3, 5, 6), {0: "batch"}, "Gemm"),
    "4d_dynamic_middle": ((2, 3, 4, 6), {1: "rows"}, "Gemm"),
    "3d_static": ((3, 5, 6), None, "Gemm"),
    "3d_two_dynamic": ((3, 5, 6), {0: "batch", 1: "seq"}, "MatMul"),
    "3d_zero_rows": ((3, 0, 6), None, "Gemm"),
    "3d_zero_rows_dynamic_batch": ((3, 0, 6), {0: "batch"}, "MatMul"),
}


@pytest.mark.parametrize("name", list(FLOAT_LINEARS))
def test_nd_float_linear_is_one_gemm_when_reshapes_are_constant(name: str) -> None:
    """An N-D linear is Reshape, Gemm (bias inside), Reshape when at most one leading dim is
    dynamic: what onnxruntime makes of static shapes, which it cannot do with a dynamic one."""
    shape, dims, product = FLOAT_LINEARS[name]
    layer = torch.nn.Linear(6, 4)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    cm = fxonnx.compile(layer, (x,), dynamic_dims=None if dims is None else {0: dims})
    ops = [n.op_type for n in cm.onnx_model.graph.node]
    assert product in ops and ({"Gemm", "MatMul"} - {product}).isdisjoint(ops)
    sizes = [shape] + [tuple(s + 2 if i in (dims or {}) else s for i, s in enumerate(shape))]
    for size in sizes:
        x = torch.randn(size, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(cm(x), layer(x), rtol=1e-5, atol=1e-5)


OUTER_PRODUCTS = {
    "bmm": (torch.bmm, (3, 4, 1), (3, 1, 5)),
    "matmul_broadcast": (torch.matmul, (1, 4, 1), (3, 1, 5)),
    "mm": (torch.mm, (4, 1), (1, 5)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
@pytest.mark.parametrize("name", list(OUTER_PRODUCTS))
def test_an_inner_dim_of_one_is_a_broadcast_mul(name: str, dtype: torch.dtype) -> None:
    """[..., M, 1] @ [..., 1, N] (rotary tables' inv_freq @ positions): one product per
    element, so a Mul gives eager's values bit for bit."""
    fn, sa, sb = OUTER_PRODUCTS[name]
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(s, generator=gen).mul(8).to(dtype) for s in (sa, sb))
    cm = fxonnx.compile(Fn(fn), (a, b), dynamic_dims=None, provider="cpu")
    assert [n.op_type for n in cm.onnx_model.graph.node] == ["Mul"]
    assert torch.equal(cm(a, b), fn(a, b))
