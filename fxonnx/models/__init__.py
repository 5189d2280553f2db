"""The model zoo: seeded, eval-mode modules with example inputs, addressed by name.

`get(name, batch, seed)` returns `(module, inputs)`; `info(name)` describes a model (input names,
shapes with "N" for the batch dimension, dtypes, parameter count, tags) and `names()` lists them.
"""

from __future__ import annotations

from fxonnx.models._registry import ModelInfo, get, info, names

__all__ = ["ModelInfo", "get", "info", "names"]
