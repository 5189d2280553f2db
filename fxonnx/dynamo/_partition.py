"""Split a dynamo/aot ATen graph: nodes with an fxonnx lowering go to onnxruntime, the rest
stays in torch (torch's ``CapabilityBasedPartitioner``, with fxonnx's lowering table as the
capability)."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner, Partition
from torch.fx.passes.operator_support import OperatorSupportBase

from ..export import ops  # noqa: F401  (registers the rules)
from ..export._dtypes import onnx_dtype
from ..export._lower import _SKIP
from ..export._registry import rule_for

aten = torch.ops.aten

# Ops that compute nothing on their own: a partition made only of these stays in torch (an
# onnxruntime call to reshape one tensor costs more than it saves, and torch keeps the view).
_NO_COMPUTE = {
    operator.getitem,
    aten.view.default,
    aten._unsafe_view.default,
    aten.reshape.default,
    aten.t.default,
    aten.transpose.int,
    aten.permute.default,
    aten.expand.default,
    aten.unsqueeze.default,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.squeeze.default,
    aten.detach.default,
    aten.alias.default,
    aten.clone.default,
    aten.slice.Tensor,
    aten.select.int,
    aten.sym_size.int,
    aten.sym_numel.default,
    aten.sym_stride.int,
}


def _onnx_typed(val: Any) -> bool:
    """Whether a traced value can cross into onnxruntime: a tensor of an ONNX dtype that
    numpy also holds (bfloat16 tensors stay in torch), a SymInt/int, or a tuple of those."""
    if isinstance(val, (tuple, list)):
        return all(v is None or _onnx_typed(v) for v in val)
    if isinstance(val, torch.Tensor):
        if val.dtype in (torch.bfloat16, torch.complex64, torch.complex128):
            return False
        if val.layout != torch.strided or val.device.type not in ("cpu", "cuda"):
            return False
        try:
            onnx_dtype(val.dtype)
        except Exception:
            return False
        return True
    return isinstance(val, (int, bool, torch.SymInt, torch.SymBool))


def op_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", str(target))


class LoweringSupport(OperatorSupportBase):
    """A node is supported when the table has a rule for its op and its inputs and outputs
    are values onnxruntime takes; ``exclude`` names nodes whose rule refused them."""

    def __init__(self, exclude: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.exclude = exclude

    def is_node_supported(self, submodules: Mapping[str, torch.nn.Module], node: fx.Node) -> bool:
        if node.op != "call_function" or node.target in _SKIP or node.name in self.exclude:
            return False
        if node.target is operator.getitem and isinstance(node.args[0], fx.Node):
            # an output of a node left to torch stays with it: on its own it would be a
            # partition the region around its producer cannot merge with (the path through
            # the producer reads as a cycle), which split resnet18's backward in two
            return self.is_node_supported(submodules, node.args[0])
        if rule_for(node.target) is None:
            return False
        if not _onnx_typed(node.meta.get("val")):
            return False
        return all(_onnx_typed(a.meta.get("val")) for a in node.all_input_nodes)


def unsupported_ops(gm: fx.GraphModule) -> list[str]:
    """The ops of ``gm`` that stay in torch because fxonnx has no rule for them (sorted)."""
    return sorted(
        {
            op_name(n.target)
            for n in gm.graph.nodes
            if n.op == "call_function" and n.target not in _SKIP and rule_for(n.target) is None
        }
    )


@dataclass(frozen=True)
class Split:
    """The graph after partitioning: its fused submodule names, in graph order, and how many
    compute nodes went to onnxruntime and stayed in torch."""

    gm: fx.GraphModule
    partitions: tuple[str, ...]
    onnx_nodes: int
    torch_nodes: int
    unsupported: tuple[str, ...]


def split(gm: fx.GraphModule, exclude: frozenset[str] = frozenset()) -> Split:
    """Fuse the supported regions of ``gm`` into ``fused_<i>`` submodules (in place)."""
    unsupported = tuple(unsupported_ops(gm))
    partitioner = CapabilityBasedPartitioner(
        gm, LoweringSupport(exclude), allows_single_node_partition=True
    )
    proposed: list[Partition] = [
        p for p in partitioner.propose_partitions() if any(_computes(n) for n in p.nodes)
    ]
    onnx_nodes = sum(1 for p in proposed for n in p.nodes if _computes(n))
    total = sum(1 for n in gm.graph.nodes if n.op == "call_function" and _computes(n))
    fused = partitioner.fuse_partitions(proposed) if proposed else gm
    names = tuple(
        n.target
        for n in fused.graph.nodes
        if n.op == "call_module" and n.target.startswith("fused_")
    )
    return Split(fused, names, onnx_nodes, total - onnx_nodes, unsupported)


def _computes(node: fx.Node) -> bool:
    return node.target not in _NO_COMPUTE and node.target not in _SKIP
