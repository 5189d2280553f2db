"""nn.Module + example inputs -> Captured (an ATen-level fx.GraphModule with shapes and names)."""

from ._captured import BatchInfo, Captured, ConstantLeaf, TensorSpec, resolve_dim, user_source
from ._trace import capture

__all__ = [
    "BatchInfo",
    "Captured",
    "ConstantLeaf",
    "TensorSpec",
    "capture",
    "resolve_dim",
    "user_source",
]
