"""expand_as, broadcast_tensors and repeat_interleave against eager at two batch sizes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from fn_module import Fn


def _x(b: int) -> tuple:
    return (torch.randn(b, 6, 5, generator=torch.Generator().manual_seed(b)),)


def _ints(b: int) -> tuple:
    return (torch.randint(-9, 9, (b, 3, 4), generator=torch.Generator().manual_seed(b)),)


CASES: dict[str, tuple[Callable, Callable[[int], tuple]]] = {
    "expand_as": (lambda x: x[:, :1].expand_as(x), _x),
    "expand_as_rank_up": (lambda x: x[0, 0].expand_as(x) * x, _x),
    "broadcast_tensors": (lambda x: torch.broadcast_tensors(x, x[0, :, :1]), _x),
    "broadcast_tensors_static": (lambda x: torch.broadcast_tensors(x[0], x[0, :1, :]), _x),
    "repeat_interleave_dim": (lambda x: x.repeat_interleave(2, dim=1), _x),
    "repeat_interleave_last": (lambda x: x.repeat_interleave(3, dim=-1), _x),
    "repeat_interleave_flat": (lambda x: x.repeat_interleave(3), _x),
    "repeat_interleave_batch": (lambda x: x.repeat_interleave(2, dim=0), _x),
    "repeat_interleave_int_dtype": (lambda a: a.repeat_interleave(2, dim=2), _ints),
    "repeat_interleave_by_size": (lambda x: x.repeat_interleave(x.shape[0], dim=1), _x),
    "repeat_interleave_tensor": (
        lambda x: x.repeat_interleave(torch.tensor([1, 2, 0, 3, 1]), dim=-1, output_size=7),
        _x,
    ),
    "repeat_interleave_tensor_flat": (
        lambda x: x[:, 0].repeat_interleave(torch.tensor(2), output_size=10 * x.shape[0])[:4],
        _x,
    ),
    "repeat_interleave_indices": (
        lambda x: torch.repeat_interleave(torch.tensor([2, 0, 3, 1]), output_size=6) + x[:, :1, 0],
        _x,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_broadcast_matches_eager(name: str, onnx_matches: Callable) -> None:
    fn, make_inputs = CASES[name]
    onnx_matches(Fn(fn), make_inputs)


def test_gqa_repeat_interleave_heads(onnx_matches: Callable) -> None:
    """Grouped-query attention: 2 key/value heads repeated for 6 query heads."""

    def attend(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        k = k.repeat_interleave(3, dim=1)
        return torch.softmax(q @ k.transpose(-1, -2), -1) @ k

    def make(b: int) -> tuple:
        g = torch.Generator().manual_seed(b)
        return torch.randn(b, 6, 7, 4, generator=g), torch.randn(b, 2, 7, 4, generator=g)

    onnx_matches(Fn(attend), make)
