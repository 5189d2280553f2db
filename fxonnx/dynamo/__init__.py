"""``torch.compile(model, backend="fxonnx")``: dynamo graphs partitioned by fxonnx's lowering
table, the supported regions run in onnxruntime, forward and backward (aot_autograd).

The backend is registered through the ``torch_dynamo_backends`` entry point, so an installed
fxonnx needs no import; ``register()`` does the same from a source checkout.
"""

from ._backend import GraphRecord, Stats, backend, compile_graph, register, reset_stats, stats
from ._onnx_module import OnnxPartition, captured_of
from ._options import Options
from ._partition import LoweringSupport, split, unsupported_ops

__all__ = [
    "GraphRecord",
    "LoweringSupport",
    "OnnxPartition",
    "Options",
    "Stats",
    "backend",
    "captured_of",
    "compile_graph",
    "register",
    "reset_stats",
    "split",
    "stats",
    "unsupported_ops",
]
