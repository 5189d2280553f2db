"""Choosing onnxruntime execution providers without a wall of errors.

onnxruntime-gpu lists CUDAExecutionProvider even where CUDA 13 / cuDNN 9 are missing, and a
session asking for it then logs pages of loader errors before falling back. So CUDA is probed
once per process on a one-node model with onnxruntime's logging turned down, and the verdict
(with the reason) is cached.
"""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Literal

import onnxruntime as ort
from onnx import TensorProto, helper

from .._errors import RuntimeSessionError

log = logging.getLogger(__name__)

Provider = Literal["cpu", "cuda", "auto"]
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_warned_fallback = False


@functools.cache
def cuda_status() -> tuple[bool, str]:
    """(usable, reason): whether a CUDA session really runs here, and why not if it doesn't."""
    if CUDA not in ort.get_available_providers():
        return False, f"this onnxruntime build ({ort.__version__}) has no CUDA provider"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    previous = 2
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(model.SerializeToString(), opts, providers=[CUDA, CPU])
    except Exception as e:  # noqa: BLE001 - any failure means "not usable"
        return False, f"creating a CUDA session failed: {str(e).splitlines()[0][:200]}"
    finally:
        ort.set_default_logger_severity(previous)
    if CUDA not in session.get_providers():
        return False, (
            "the CUDA provider failed to load (onnxruntime-gpu "
            f"{ort.__version__} needs an NVIDIA GPU with CUDA 13 and cuDNN 9)"
        )
    return True, "ok"


def resolve(provider: str) -> list[str]:
    """onnxruntime provider list for ``provider`` ("cpu", "cuda" or "auto")."""
    global _warned_fallback
    if provider == "cpu":
        return [CPU]
    if provider not in ("cuda", "auto"):
        raise RuntimeSessionError(
            f"unknown provider {provider!r}", hint="use provider='cpu', 'cuda' or 'auto'"
        )
    usable, reason = cuda_status()
    if usable:
        return [CUDA, CPU]
    if provider == "cuda":
        raise RuntimeSessionError(
            f"provider='cuda' was asked for but CUDA is not usable: {reason}",
            hint="use provider='auto' to fall back to the CPU, or provider='cpu'",
        )
    if CUDA in ort.get_available_providers() and not _warned_fallback:
        _warned_fallback = True
        warnings.warn(f"fxonnx: running on the CPU, {reason}", RuntimeWarning, stacklevel=3)
    return [CPU]
