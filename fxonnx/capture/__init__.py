"""nn.Module + example inputs -> Captured (an ATen-level fx.GraphModule with shapes and names)."""

from ._captured import BatchInfo, Captured, ConstantLeaf, TensorSpec, user_source
from ._trace import capture

__all__ = ["BatchInfo", "Captured", "ConstantLeaf", "TensorSpec", "capture", "user_source"]
