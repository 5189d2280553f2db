"""Fuzzed models are traced under the op budget, so none can hang the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fuzzing import bounded_tracing


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    with bounded_tracing():
        yield
