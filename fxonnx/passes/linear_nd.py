"""Linear layers on inputs that are not 2-D: the exporter writes ``linear(x, W, b)`` as
Transpose(W) + MatMul + Add when it cannot make it one Gemm between Reshapes (see
``gemm_reshapes``), so a pre-transposed weight saves the Transpose:

    linear(x, W, b) = matmul(x, W.T) + b        (x of rank 1, or >= 3 with dynamic sizes)

``W.T`` is a graph op on the original weight (gradients stay comparable); ``const_fold`` bakes it.
2-D linears stay (they are one Gemm), and ``matmul_bias`` only turns 2-D matmuls back into linear,
so the two passes never undo each other.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from ._graph import call, is_call, state_of, static_shape, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten


def gemm_reshapes(
    x_shape: tuple[int | None, ...], w_shape: tuple[int | None, ...]
) -> tuple[list[int], list[int]] | None:
    """The Reshape targets that put a linear over an input of rank >= 3 into one 2-D Gemm,
    ``[rows, in]`` and back, or None when constant targets cannot say it. onnxruntime does
    this itself for static shapes (MatMul + Add become Reshape, Gemm, Reshape); with a
    dynamic leading dim it keeps MatMul and a separate Add over the output, so one dynamic
    leading dim may become the -1 of the targets, unless a zero size makes -1 ambiguous.
    Targets may hold zeros: the exporter's Reshape sets ``allowzero``."""
    *lead, k = x_shape
    n = w_shape[0] if len(w_shape) == 2 else None
    if not lead or k is None or n is None or lead.count(None) > 1:
        return None
    if None not in lead:
        return [math.prod(lead), k], [*lead, n]
    if 0 in (k, n, *lead):
        return None
    return [-1, k], [-1 if d is None else d for d in lead] + [n]


@register
class LinearNdToMatmul(Pass):
    """Misses: ``weight_not_state`` (a computed weight: its transpose would stay a node).
    ``kept:one_gemm`` counts linears the exporter makes one Gemm, which beats MatMul + Add."""

    name = "linear_nd"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for node in [n for n in graph.nodes if is_call(n, aten.linear.default)]:
            x, w = node.args[:2]
            b = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
            if val(x).dim() == 2:
                continue
            if val(x).dim() > 2 and gemm_reshapes(static_shape(x), static_shape(w)):
                stats["kept:one_gemm"] += 1
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
