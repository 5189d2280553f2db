"""onnxruntime sessions: provider choice, input validation, torch/numpy I/O, CUDA I/O binding."""

from ._kernels import as_session_dtypes, fit_kernels, fit_schema, float32_boundary
from ._providers import cuda_status, resolve
from ._session import IOSpec, Session, aborting_ops, session_options

__all__ = [
    "IOSpec",
    "Session",
    "aborting_ops",
    "as_session_dtypes",
    "cuda_status",
    "fit_kernels",
    "fit_schema",
    "float32_boundary",
    "resolve",
    "session_options",
]
