"""nn.Module + example inputs -> Captured (an ATen-level fx.GraphModule with shapes and names)."""

from ._captured import Captured, ConstantLeaf, DimSymbol, Shapes, TensorSpec, user_source
from ._fake_weights import fake_weights
from ._parallel import unwrap_parallel
from ._symbolic import same_dim, same_shape, size_hint, static_dim
from ._trace import capture

__all__ = [
    "Captured",
    "ConstantLeaf",
    "DimSymbol",
    "Shapes",
    "TensorSpec",
    "capture",
    "fake_weights",
    "same_dim",
    "same_shape",
    "size_hint",
    "static_dim",
    "unwrap_parallel",
    "user_source",
]
