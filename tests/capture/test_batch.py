"""The sentinel-batch scan: which scalars force a second trace."""

from __future__ import annotations

import pytest

from fxonnx.capture._batch import SENTINEL, _suspicious


@pytest.mark.parametrize("value", [0, 1, 6, 512, -1, 2**62, 6.0, 0.5, 1e-5, 1e-6, 1e-12, -999.0, 4096])
def test_ordinary_scalars_are_not_suspicious(value: float) -> None:
    assert not _suspicious(value, SENTINEL)


@pytest.mark.parametrize(
    "value", [SENTINEL // 2, SENTINEL + 1, SENTINEL * SENTINEL, 1 / SENTINEL, 3 / SENTINEL, 1e4, 50257]
)
def test_scalars_that_may_hide_batch_arithmetic_are(value: float) -> None:
    assert _suspicious(value, SENTINEL)


def test_plain_multiples_of_the_sentinel_are_clean() -> None:
    assert not _suspicious(8 * SENTINEL, SENTINEL)
