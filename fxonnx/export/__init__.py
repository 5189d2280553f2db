"""Captured ATen graph -> ONNX: the lowering table and model assembly."""

import sys
import types
from typing import Any

from ._ctx import LowerCtx
from ._fallback import require_torch_onnx
from ._fold import fold_initializer_nodes
from ._fuse_activation import fuse_activations
from ._lower import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, check_supported, lower
from ._registry import lowers, one_to_one, registered
from ._save import save_model

__all__ = [
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MIN_OPSET",
    "LowerCtx",
    "check_supported",
    "fold_initializer_nodes",
    "fuse_activations",
    "lower",
    "lowers",
    "one_to_one",
    "registered",
    "require_torch_onnx",
    "save_model",
]


class _CallableModule(types.ModuleType):
    """``fxonnx.export`` is both this subpackage and the public ``fxonnx.export(model, ...)``
    function: Python binds a subpackage to its parent's attribute on first import, so the
    package itself forwards calls to the function rather than depend on import order."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .._compile import export

        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
