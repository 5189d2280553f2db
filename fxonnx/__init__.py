"""fxonnx: PyTorch -> torch.fx -> ONNX -> onnxruntime, checked against eager at every step.

``import fxonnx`` does not import torch: the names that need it load on first use, so a
serving process with only onnxruntime and numpy can load bundles.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._errors import (
    CaptureError,
    ExportError,
    FxonnxError,
    InputError,
    PassError,
    RuntimeSessionError,
    UnsupportedOpError,
    VerificationError,
)
from ._version import __version__

_LAZY = {
    "compile": "fxonnx._compile",
    "CompiledModel": "fxonnx._compile",
    "verify": "fxonnx.verify",
    "Report": "fxonnx.verify",
    "Check": "fxonnx.verify",
    "models": "fxonnx.models",
    "load": "fxonnx.bundle",
    "check_gradients": "fxonnx.verify._gradients",
    "export_training": "fxonnx.training",
    "TrainingSession": "fxonnx.training",
}

__all__ = [
    "CaptureError",
    "Check",
    "CompiledModel",
    "ExportError",
    "FxonnxError",
    "InputError",
    "PassError",
    "Report",
    "RuntimeSessionError",
    "TrainingSession",
    "UnsupportedOpError",
    "VerificationError",
    "__version__",
    "check_gradients",
    "compile",
    "export",
    "export_training",
    "load",
    "models",
    "verify",
]


def __getattr__(name: str) -> Any:
    if name == "export":  # the subpackage fxonnx.export is callable: it forwards to the function
        return importlib.import_module("fxonnx.export")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fxonnx' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name == "models" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
