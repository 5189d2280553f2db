"""Training graphs in ONNX: ``export_training`` (needs torch) and ``TrainingSession`` (numpy and
onnxruntime only; importing this package does not import torch)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TrainingSession", "export_training"]

_LAZY = {
    "export_training": "fxonnx.training._export",
    "TrainingSession": "fxonnx.training._session",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fxonnx.training' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
