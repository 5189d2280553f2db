"""The sentinel-batch scan: which scalars force a second trace."""

from __future__ import annotations

import pytest

from fxonnx.capture._batch import SENTINEL, _suspicious


@pytest.mark.parametrize(
    "value", [0, 1, 6, 512, -1, 2**62, 6.0, 0.5, 1e-5, 1e-6, 1e-12, -999.0, 4096]
)
def test_ordinary_scalars_are_not_suspicious(value: float) -> None:
    assert not _suspicious(value, SENTINEL)


@pytest.mark.parametrize(
    "value",
    [SENTINEL // 2, SENTINEL + 1, SENTINEL * SENTINEL, 1 / SENTINEL, 3 / SENTINEL, 1e4, 50257],
)
def test_scalars_that_may_hide_batch_arithmetic_are(value: float) -> None:
    assert _suspicious(value, SENTINEL)


def test_plain_multiples_of_the_sentinel_are_clean() -> None:
    assert not _suspicious(8 * SENTINEL, SENTINEL)


def test_batch_expressions_read_back_and_resolve() -> None:
    from fxonnx.capture import BatchInfo, resolve_dim

    info = BatchInfo(True, 2, (0,), sentinel=SENTINEL)
    assert info.dim_of(SENTINEL) == "batch"
    assert info.dim_of(8 * SENTINEL) == "batch*8"
    assert info.dim_of(SENTINEL - 1) == "batch-1"
    assert info.dim_of(2 * SENTINEL + 3) == "batch*2+3"
    assert info.dim_of(512) == 512
    assert [resolve_dim(d, 5) for d in ("batch", "batch*8", "batch-1", "batch*2+3", 7)] == [
        5,
        40,
        4,
        13,
        7,
    ]
    assert resolve_dim("seq", 5) is None and resolve_dim("batch", None) is None


def test_a_shifted_batch_output_gets_a_symbolic_dim() -> None:
    import torch
    from torch import nn

    import fxonnx

    class Shift(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[1:] - x[:-1]

    cm = fxonnx.compile(Shift(), (torch.randn(4, 3),), provider="cpu")
    assert cm.captured.outputs[0].shape == ("batch-1", 3)
    assert cm(torch.randn(6, 3)).shape == (5, 3)
