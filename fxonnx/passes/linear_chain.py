"""Collapse chains of linear layers with nothing non-linear between them, as graph ops on the
original weights (``const_fold`` bakes them):

    linear(linear(x, W1, b1), W2, b2) = linear(x, W2 @ W1, W2 @ b1 + b2)
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx

from ._graph import call, is_call, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten


def _wb(node: fx.Node) -> tuple[fx.Node, fx.Node | None]:
    bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
    return node.args[1], bias


@register
class CollapseLinearChain(Pass):
    """Merge a linear into the linear that consumes it. Misses: ``inner_has_other_users``,
    ``not_cheaper`` (out*in > mid*in + out*mid: a bottleneck is cheaper as two layers),
    ``weight_not_2d``."""

    name = "linear_chain"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for outer in [n for n in graph.nodes if is_call(n, aten.linear.default)]:
            if outer.graph is not graph:
                continue
            inner = outer.args[0]
            if not is_call(inner, aten.linear.default):
                continue
            if len(inner.users) != 1:
                stats["miss:inner_has_other_users"] += 1
                continue
            (w1, b1), (w2, b2) = _wb(inner), _wb(outer)
            v1, v2 = val(w1), val(w2)
            if v1 is None or v2 is None or v1.dim() != 2 or v2.dim() != 2:
                stats["miss:weight_not_2d"] += 1
                continue
            (mid, n_in), n_out = v1.shape, v2.shape[0]
            if n_out * n_in > mid * n_in + n_out * mid:
                stats["miss:not_cheaper"] += 1
                continue
            with graph.inserting_before(outer):
                w = call(graph, aten.mm.default, (w2, w1))
                b = b2
                if b1 is not None:
                    b = call(graph, aten.mv.default, (w2, b1))
                    if b2 is not None:
                        b = call(graph, aten.add.Tensor, (b, b2))
                new = call(graph, aten.linear.default, (inner.args[0], w, b))
            outer.replace_all_uses_with(new)
            graph.erase_node(outer)
            graph.erase_node(inner)
            stats["collapsed"] += 1
        return PassResult(ctx.gm, modified=stats["collapsed"] > 0, stats=dict(stats))
