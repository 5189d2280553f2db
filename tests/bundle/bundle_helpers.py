"""Zoo models compiled once per test session (functools.cache), shared by the bundle tests."""

from __future__ import annotations

import functools

import fxonnx
from fxonnx import models


@functools.cache
def compiled(name: str) -> fxonnx.CompiledModel:
    """The zoo model compiled on the CPU (every zoo model compiles; an error fails the test)."""
    model, inputs = models.get(name, batch=2)
    return fxonnx.compile(model, inputs, provider="cpu", batch_dims=models.info(name).batch_dims)
