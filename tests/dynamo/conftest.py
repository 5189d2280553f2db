"""A fresh dynamo state and fresh backend counters per test."""

from __future__ import annotations

import pytest
import torch

import fxonnx.dynamo as fd


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch and counts its own sessions."""
    fd.register()
    torch._dynamo.reset()
    fd.reset_stats()
    yield
    torch._dynamo.reset()
