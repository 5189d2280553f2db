"""Indexing, gathers, scatters and item assignment against eager at two batch sizes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from fn_module import Fn
from torch import nn

from fxonnx._errors import CaptureError, ExportError
from fxonnx.capture import capture
from fxonnx.export import lower


def _x(b: int) -> torch.Tensor:
    return torch.randn(b, 4, 8, generator=torch.Generator().manual_seed(b))


def _long(*values: object) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def _zassign(x: torch.Tensor) -> torch.Tensor:
    z = torch.zeros(x.size(0), 3, 8)
    z[:, 0] = x[:, 0]
    return z


def _zero_slice(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[:, 1:3] = 0
    return x


def _idx_add(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[_long(0, -1)] += 1
    return x


def _idx_add_inner(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[:, _long(1, 1, 3), _long(0, 2, -1)] += 1.5
    return x


def _step_assign(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[..., ::2] = x[..., 1::2] * 10
    return out


def _step_assign_input(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = torch.cat([x, x], 2)
    out[..., ::2] = y
    return out


def _put_columns(x: torch.Tensor, i: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[:, i] = v
    return x


def _neg_slice_assign(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[:, -3:-1] = 7.0
    out[:, :, 5:] = out[:, :, :3]
    return out


def _batch_slice_assign(x: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    out[1:] = x[:-1] * 2  # the batch dim itself
    out[-1] = 0
    return out


def _mask_assign(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[x > 0.5] = 0.5
    x[x < -1] = torch.tensor(3.0)
    return x


def _row_mask_assign(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[x[:, :, 0] > 0] = torch.arange(8.0)
    return x


CASES: dict[str, tuple[Callable, Callable[[int], tuple]]] = {
    "zeros_then_select_assign": (_zassign, lambda b: (_x(b),)),
    "slice_assign_zero": (_zero_slice, lambda b: (_x(b),)),
    "index_add_assign": (_idx_add, lambda b: (_x(b),)),
    "index_add_assign_inner": (_idx_add_inner, lambda b: (_x(b),)),
    "step_slice_assign": (_step_assign, lambda b: (_x(b),)),
    "step_slice_assign_input": (
        _step_assign_input,
        lambda b: (_x(b), torch.randn(b, 4, 8)),
    ),
    "negative_slice_assign": (_neg_slice_assign, lambda b: (_x(b),)),
    "batch_dim_slice_assign": (_batch_slice_assign, lambda b: (_x(b),)),
    "mask_assign": (_mask_assign, lambda b: (_x(b),)),
    "row_mask_assign": (_row_mask_assign, lambda b: (_x(b),)),
    "index_one": (lambda x, i: x[:, i], lambda b: (_x(b), _long(0, 3, -1))),
    "index_first": (lambda x: x[_long(1, 0, -1)], lambda b: (_x(b),)),
    "index_two_adjacent": (
        lambda x, i, j: x[:, i, j],
        lambda b: (_x(b), _long(0, 2, 1), _long(1, -1, 7)),
    ),
    "index_two_split": (
        lambda x, i, j: x[i, :, j],
        lambda b: (_x(b), _long(0, 1), _long(5, 2)),
    ),
    "index_broadcast": (
        lambda x, i, j: x[:, i[:, None], j],
        lambda b: (_x(b), _long(0, 2, 1), _long(1, 4)),
    ),
    "index_2d_index": (lambda x: x[:, :, _long(0, 1, 2, 3).view(2, 2)], lambda b: (_x(b),)),
    "index_int32": (lambda x, i: x[:, :, i], lambda b: (_x(b), _long(3, 1).int())),
    "pick_per_row": (
        lambda x, labels: x[torch.arange(x.size(0)), :, labels],
        lambda b: (_x(b), torch.randint(0, 8, (b,))),
    ),
    "index_put_columns": (_put_columns, lambda b: (_x(b), _long(3, 0), torch.randn(2, 8))),
    "index_put_per_row": (
        lambda x, labels: x.index_put((torch.arange(x.size(0)), labels), torch.tensor(9.0)),
        lambda b: (_x(b), torch.randint(0, 4, (b,))),
    ),
    "index_select": (lambda x, i: x.index_select(2, i), lambda b: (_x(b), _long(7, 0, 0))),
    "gather": (
        lambda x, i: x.gather(2, i),
        lambda b: (_x(b), torch.randint(0, 8, (b, 4, 3))),
    ),
    "gather_smaller_index": (
        lambda x, i: x.gather(1, i),
        lambda b: (_x(b), torch.randint(0, 4, (b, 2, 5))),
    ),
    "take_along_dim": (
        lambda x, i: torch.take_along_dim(x, i, 2),
        lambda b: (_x(b), torch.randint(0, 8, (1, 4, 3))),
    ),
    "take_along_flat": (
        lambda x: torch.take_along_dim(x, _long(0, 5, 31)),
        lambda b: (_x(b),),
    ),
    "scatter_src": (
        lambda x, i, s: x.scatter(2, i, s),
        lambda b: (_x(b), torch.arange(3).repeat(b, 4, 1), torch.randn(b, 4, 5)),
    ),
    "scatter_value": (
        lambda x, i: x.scatter(1, i, -2.0),
        lambda b: (_x(b), torch.randint(0, 4, (b, 1, 8))),
    ),
    "scatter_add": (
        lambda x, i, s: x.scatter_add(2, i, s),
        lambda b: (_x(b), torch.randint(0, 8, (b, 4, 6)), torch.randn(b, 4, 6)),
    ),
    "scatter_reduce_amax": (
        lambda x, i, s: x.scatter_reduce(2, i, s, "amax"),
        lambda b: (_x(b), torch.randint(0, 8, (b, 4, 6)), torch.randn(b, 4, 6)),
    ),
    "index_put_accumulate": (
        lambda x, i, v: x.index_put((i,), v, accumulate=True),
        lambda b: (_x(b), _long(0, 0, 1), torch.randn(8)),
    ),
    "index_put_inner": (
        lambda x, i, v: x.index_put((i[None], i), v),
        lambda b: (_x(b), _long(0, 1), torch.randn(2, 8)),
    ),
    "masked_fill_scalar": (lambda x: x.masked_fill(x > 0, 3.0), lambda b: (_x(b),)),
    "masked_fill_tensor": (
        lambda x, v: x.masked_fill(x[:, :1] > 0, v),
        lambda b: (_x(b), torch.tensor(-4.0)),
    ),
    "masked_fill_int": (
        lambda x: (x * 10).long().masked_fill(x < 0, -1),
        lambda b: (_x(b),),
    ),
    "tril": (lambda x: torch.tril(x, 1), lambda b: (_x(b),)),
    "triu": (lambda x: torch.triu(x, -1) + torch.triu(x), lambda b: (_x(b),)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_index_matches_eager(name: str, onnx_matches: Callable) -> None:
    fn, make_inputs = CASES[name]
    onnx_matches(Fn(fn), make_inputs, dynamic=name not in STATIC_BY_TORCH)


# torch's C++ kernel of take_along_dim reads the input sizes as ints while fake tensors compute
# its output shape, which fixes a symbolic batch: capture says so and keeps the graph static
STATIC_BY_TORCH = {"take_along_dim"}


def test_a_kernel_that_fixes_the_batch_gives_a_static_graph_with_a_note() -> None:
    fn, make_inputs = CASES["take_along_dim"]
    with pytest.warns(UserWarning, match="fixed to 2"):
        captured = capture(Fn(fn), make_inputs(2))
    assert not captured.shapes.dynamic
    assert any("'batch') is fixed to 2" in n for n in captured.notes)


def test_boolean_mask_read_is_refused() -> None:
    with pytest.raises(ExportError, match="data-dependent output shape"):
        lower(capture(Fn(lambda x: x[x > 0]), (_x(2),)))


def test_mask_assign_per_element_values_is_refused() -> None:
    def fn(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return x.index_put((x[:, :, 0] > 0,), v)

    with pytest.raises((ExportError, CaptureError), match="data-dependent"):
        lower(capture(Fn(fn), (_x(2), torch.randn(3, 8))))


class ScatterReduce(nn.Module):
    def __init__(self, reduce: str) -> None:
        super().__init__()
        self.reduce = reduce

    def forward(self, x: torch.Tensor, i: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x.scatter_reduce(0, i, u, self.reduce)


@pytest.mark.parametrize("reduce", ["sum", "prod", "amax", "amin"])
def test_bool_scatter_reduce_is_or_and(reduce: str) -> None:
    """onnxruntime reduces no bools; in uint8, sum would wrap at 256 Trues: exactly 256 land
    in column 0, so a wrapping add would say False there."""
    import fxonnx

    x = torch.zeros(3, 2, dtype=torch.bool)
    i = torch.zeros(256, 2, dtype=torch.int64)
    i[:, 1] = torch.arange(256) % 3
    u = torch.ones(256, 2, dtype=torch.bool)
    u[::7, 1] = False
    model = ScatterReduce(reduce)
    cm = fxonnx.compile(model, (x, i, u), dynamic_dims=None, provider="cpu")
    assert torch.equal(cm(x, i, u), model(x, i, u))
