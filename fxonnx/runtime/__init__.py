"""onnxruntime sessions: provider choice, input validation, torch/numpy I/O, CUDA I/O binding."""

from ._providers import cuda_status, resolve
from ._session import IOSpec, Session, aborting_ops, session_options

__all__ = ["IOSpec", "Session", "aborting_ops", "cuda_status", "resolve", "session_options"]
