"""Linear layers on inputs that are not 2-D: the exporter writes ``linear(x, W, b)`` as
Transpose(W) + MatMul + Add (a Gemm needs 2-D), so a pre-transposed weight saves the Transpose:

    linear(x, W, b) = matmul(x, W.T) + b        (x of rank 1 or >= 3)

``W.T`` is a graph op on the original weight (gradients stay comparable); ``const_fold`` bakes it.
2-D linears stay (they are one Gemm), and ``matmul_bias`` only turns 2-D matmuls back into linear,
so the two passes never undo each other.
"""

from __future__ import annotations

from collections import Counter

import torch

from ._graph import call, is_call, state_of, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten


@register
class LinearNdToMatmul(Pass):
    """Misses: ``weight_not_state`` (a computed weight: its transpose would stay a node)."""

    name = "linear_nd"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for node in [n for n in graph.nodes if is_call(n, aten.linear.default)]:
            x, w = node.args[:2]
            b = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
            if val(x).dim() == 2:
                continue
            if state_of(ctx.captured, w) is None:
                stats["miss:weight_not_state"] += 1
                continue
            with graph.inserting_before(node):  # matmul and add compute the linear's value
                wt = call(graph, aten.t.default, (w,))
                out = call(graph, aten.matmul.default, (x, wt), like=node)
                if b is not None:
                    out = call(graph, aten.add.Tensor, (out, b), like=node)
            node.replace_all_uses_with(out)
            graph.erase_node(node)
            stats["rewritten"] += 1
        return PassResult(ctx.gm, modified=stats["rewritten"] > 0, stats=dict(stats))
