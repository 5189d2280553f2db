"""Zoo models compiled once per test session (functools.cache), shared by the bundle tests."""

from __future__ import annotations

import functools

import pytest

import fxonnx
from fxonnx import models


@functools.cache
def compiled(name: str) -> fxonnx.CompiledModel | fxonnx.UnsupportedOpError:
    """The zoo model compiled on the CPU, or the UnsupportedOpError its compile raised (other
    engineers are still adding lowering rules; any other error fails the test)."""
    model, inputs = models.get(name, batch=2)
    try:
        return fxonnx.compile(
            model, inputs, provider="cpu", batch_dims=models.info(name).batch_dims
        )
    except fxonnx.UnsupportedOpError as e:
        return e


def compiled_or_skip(name: str) -> fxonnx.CompiledModel:
    cm = compiled(name)
    if isinstance(cm, fxonnx.UnsupportedOpError):
        pytest.skip(
            f"{name} does not compile yet (lowering rules still missing): {cm.message.splitlines()[0]}"
        )
    return cm
