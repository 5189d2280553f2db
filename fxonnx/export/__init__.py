"""Captured ATen graph -> ONNX: the lowering table and model assembly."""

from ._ctx import LowerCtx
from ._lower import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, check_supported, lower
from ._registry import lowers, one_to_one, registered
from ._save import save_model

__all__ = [
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MIN_OPSET",
    "LowerCtx",
    "check_supported",
    "lower",
    "lowers",
    "one_to_one",
    "registered",
    "save_model",
]
