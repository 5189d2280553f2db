"""linspace: numbers known while tracing, 0-d tensor bounds and a bound from a dynamic dim, with
steps 0 and 1, against eager."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import fxonnx
from fxonnx._errors import ExportError


class Bounds(nn.Module):
    def __init__(self, steps: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.steps, self.dtype = steps, dtype

    def forward(self, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        return torch.linspace(start, end, self.steps, dtype=self.dtype)


class Numbers(nn.Module):
    def __init__(self, start: float, end: float, steps: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.args, self.dtype = (start, end, steps), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.linspace(*self.args, dtype=self.dtype)


class ToBatch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.linspace(0, x.size(0), 6)


@pytest.mark.parametrize("steps", [0, 1, 2, 7, 50])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_linspace_of_numbers_is_torchs_own(steps: int, dtype: torch.dtype) -> None:
    model = Numbers(-3, 4.5, steps, dtype)
    x = torch.zeros(steps, dtype=dtype)
    cm = fxonnx.compile(model, (x,), dynamic_dims=None, provider="cpu")
    assert torch.equal(cm(x), model(x))  # bit-identical, integer rounding included


@pytest.mark.parametrize("steps", [0, 1, 2, 7, 50])
def test_linspace_of_tensor_bounds_matches_eager(steps: int) -> None:
    model = Bounds(steps)
    cm = fxonnx.compile(
        model, (torch.tensor(-3), torch.tensor(4.5)), dynamic_dims=None, provider="cpu"
    )
    for start, end in [
        (torch.tensor(-3), torch.tensor(4.5)),
        (torch.tensor(7), torch.tensor(-1e3)),
    ]:
        want = model(start, end)
        got = cm(start, end)
        assert got.shape == want.shape == (steps,)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-4)
        if steps:
            assert got[0] == start.float() and got[-1] == (end.float() if steps > 1 else start)


def test_linspace_to_a_dynamic_dim(onnx_matches: Callable) -> None:
    onnx_matches(ToBatch(), lambda n: (torch.zeros(n, 6),), batches=(2, 5))


def test_integer_linspace_of_tensor_bounds_is_refused() -> None:
    with pytest.raises(ExportError, match="linspace into torch.int64") as e:
        fxonnx.export(Bounds(5, torch.int64), (torch.tensor(-3), torch.tensor(4)))
    assert "dtype=torch.float32" in e.value.hint
