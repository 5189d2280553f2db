"""Views, joins, factories, data movement and matrix products at two batch sizes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from fn_module import Fn

from fxonnx._errors import ExportError
from fxonnx.capture import capture
from fxonnx.export import lower


def _g(b: int) -> torch.Generator:
    return torch.Generator().manual_seed(b)


def _x(b: int) -> tuple:
    return (torch.randn(b, 4, 6, generator=_g(b)),)


def _sq(b: int) -> tuple:
    return (torch.randn(b, 5, 5, generator=_g(b)),)


def _mats(b: int) -> tuple:
    g = _g(b)
    return torch.randn(b, 4, 6, generator=g), torch.randn(b, 6, 3, generator=g)


CASES: dict[str, tuple[Callable, Callable[[int], tuple]]] = {
    # views and reshapes
    "view_batch": (lambda x: x.view(x.size(0), -1) + x.reshape(-1, 24), _x),
    "view_merge_batch": (lambda x: x.reshape(-1, 6).sum(0), _x),
    "flatten_unflatten": (lambda x: x.flatten(1).unflatten(1, (2, 12)), _x),
    "flatten_all": (lambda x: x.flatten().sum(), _x),
    "permute_transpose_t": (lambda x: x.permute(2, 0, 1).transpose(0, 2)[..., 0].t(), _x),
    "squeeze_unsqueeze": (lambda x: x.unsqueeze(1).unsqueeze(-1).squeeze(-1).squeeze(1), _x),
    "expand": (lambda x: x[:, :1].expand(-1, 4, 6) + x[:1].expand(x.size(0), 4, 6), _x),
    "repeat": (lambda x: x.repeat(1, 2, 1) + x.repeat(1, 2, 1), _x),
    "cat_stack_promote": (
        lambda x: (
            torch.cat([x, (x > 0).float()], 1).sum(1) + torch.stack([x, x * 2], -1).sum((1, 3))
        ),
        _x,
    ),
    "split_chunk_unbind": (
        lambda x: sum(x.split(2, 1)) + sum(x.chunk(3, 2)).sum() + sum(x.unbind(1)).sum(),
        _x,
    ),
    "split_sizes": (lambda x: x.split([1, 5], -1)[1] * 2, _x),
    "select_slice_narrow": (
        lambda x: x[:, 1, 2:5] + x.narrow(2, 1, 3)[:, -1] + x[-1, 0, ::2].sum(),
        _x,
    ),
    "slice_batch": (lambda x: x[1:] - x[:-1], _x),
    # factories
    "zeros_ones_full": (
        lambda x: (
            torch.zeros(x.size(0), 4, 6) + torch.ones_like(x) * torch.full((x.size(0), 1, 6), 2.0)
        ),
        _x,
    ),
    "new_factories": (
        lambda x: x.new_zeros(x.shape) + x.new_ones((x.size(0), 1, 1)) + x.new_full((6,), 3.0),
        _x,
    ),
    "arange_batch": (lambda x: x + torch.arange(x.size(0)).view(-1, 1, 1), _x),
    "arange_static": (lambda x: x * torch.arange(6.0) + torch.arange(2, 14, 2), _x),
    "full_like_fill": (lambda x: torch.full_like(x, 7) + x.clone().fill_(2.0), _x),
    # movement
    "flip": (lambda x: torch.flip(x, [1, 2]) + x.flip(0), _x),
    "roll": (lambda x: torch.roll(x, 2, 1) + torch.roll(x, (-1, 7), (2, 1)), _x),
    "roll_batch_dim": (lambda x: torch.roll(x, 1, 0), _x),
    "roll_flat": (lambda x: torch.roll(x, 5), _x),
    "diagonal": (
        lambda x: torch.diagonal(x, 0, 1, 2).sum(-1) + torch.diagonal(x, 1, -1, -2).sum(-1),
        _sq,
    ),
    "diagonal_with_batch": (lambda x: torch.diagonal(x, -2, 2, 1), _x),
    "diag": (
        lambda x: torch.diag(x[0, 0]) + torch.diag(x[0, 1, :4], 1) + torch.diag(x[0, 2, :4], -1),
        _sq,
    ),
    "diag_of_matrix": (lambda x: torch.diag(x[0], 1) + torch.diag(x[1], -2).sum(), _sq),
    # matrix products
    "matmul": (lambda a, b: a @ b, _mats),
    "bmm_baddbmm": (
        lambda a, b: (
            torch.baddbmm(torch.ones(1, 4, 3), a, b, beta=0.5, alpha=2.0) + torch.bmm(a, b)
        ),
        _mats,
    ),
    "baddbmm_beta0": (lambda a, b: torch.baddbmm(a[:, :, :3] * float("nan"), a, b, beta=0), _mats),
    "mv_dot_outer": (
        lambda a, b: (
            torch.mv(a[0], b[0, :, 0]).sum()
            + torch.dot(a[0, 0], a[1, 0])
            + torch.outer(a[0, 0], b[0, 0]).sum()
            + a
        ),
        _mats,
    ),
    "addmv": (
        lambda a, b: torch.addmv(a[0, :, 0], a[0], b[0, :, 1], beta=2.0, alpha=0.5) + a.sum(-1),
        _mats,
    ),
    "addmm": (lambda a, b: torch.addmm(b[0, 0], a[0], b[0], beta=0.5) + a.sum(), _mats),
    "broadcast_to": (lambda x: torch.broadcast_to(x[:, None, :1], (-1, 2, 4, 6)), _x),
    "einsum_batched_matmul": (lambda a, b: torch.einsum("bij,bjk->bik", a, b), _mats),
    "einsum_ellipsis": (lambda a, b: torch.einsum("...ij,...jk->...ki", a, b), _mats),
    "einsum_reduce_transpose": (lambda a, b: torch.einsum("bij->jb", a), _mats),
    "einsum_outer": (lambda a, b: torch.einsum("bi,bj->bij", a[:, 0], b[:, :, 0]), _mats),
    "einsum_upper_case": (lambda a, b: torch.einsum("BIJ,BJK->BIK", a, b), _mats),
    "einsum_bilinear_form": (
        lambda a, b: torch.einsum("bi,bij,bj->b", a[:, :, 0], a, b[:, :, 0]),
        _mats,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_shape_matches_eager(name: str, onnx_matches: Callable) -> None:
    fn, make_inputs = CASES[name]
    onnx_matches(Fn(fn), make_inputs)


def test_diagonal_over_batch_dim_is_refused() -> None:
    captured = capture(Fn(lambda x: torch.diagonal(x, 0, 0, 1)), _x(2))
    with pytest.raises(ExportError, match="dynamic batch"):
        lower(captured)


def test_a_one_element_strided_constant_is_written() -> None:
    """A one-element view keeps a stride of 2 through .contiguous(): the builder still writes
    it (it used to fail viewing it as bytes)."""
    from fxonnx.export._builder import GraphBuilder

    t = torch.arange(6).reshape(3, 2)[:1, ::2].contiguous()
    assert t.stride() == (2, 2)
    builder = GraphBuilder()
    name = builder.const(t)
    assert [n for n, _ in builder.initializers] == [name]


class HeadSplit(torch.nn.Module):
    """A projection then its head split, as attention blocks write it, and a flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(6, 12)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, _ = x.shape
        return self.proj(x).view(b, s, 3, 4), x.unsqueeze(-1).flatten(2)


def test_reshapes_with_one_dynamic_dim_need_no_shape_arithmetic() -> None:
    """One dynamic dim is -1 in a constant target (no Shape/Concat), and a Reshape of a
    Reshape reads the first one's input: the linear's Reshape back and the head split are one
    node, which onnxruntime does not merge itself once a dim is dynamic."""
    import fxonnx

    model = HeadSplit()
    dims = {0: {0: "batch"}}
    cm = fxonnx.compile(model, _x(2), dynamic_dims=dims, provider="cpu", passes="none")
    ops = [n.op_type for n in cm.onnx_model.graph.node]
    assert ops.count("Reshape") == 3 and {"Shape", "Concat"}.isdisjoint(ops), ops
    for b in (1, 3, 5):
        for got, want in zip(cm(*_x(b)), model(*_x(b)), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
