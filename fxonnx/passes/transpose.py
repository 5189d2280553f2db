"""Cancel transpose/permute pairs: two permutations in a row become one, or none when they
compose to the identity."""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx

from ._graph import call, is_call, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten
PERMUTES = (aten.permute.default, aten.transpose.int, aten.t.default)


def permutation(node: fx.Node) -> list[int] | None:
    """The permutation a permute/transpose/t node applies (output dim i = input dim p[i])."""
    x = val(node.args[0])
    if not isinstance(x, torch.Tensor):
        return None
    rank = x.dim()
    if node.target == aten.permute.default:
        return [d % rank for d in node.args[1]] if rank else []
    if node.target == aten.t.default:
        return [1, 0] if rank == 2 else list(range(rank))
    a, b = (d % rank for d in node.args[1:3])
    p = list(range(rank))
    p[a], p[b] = p[b], p[a]
    return p


@register
class CancelTransposes(Pass):
    """``permute(permute(x, p), q)`` -> ``x`` when ``p[q[i]] == i`` for all i, else one permute.
    Misses: ``inner_has_other_users`` (unless the pair cancels), ``no_metadata``."""

    name = "transpose"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for node in list(graph.nodes):
            if node.graph is not graph or not is_call(node, *PERMUTES):
                continue
            inner = node.args[0]
            if not is_call(inner, *PERMUTES):
                continue
            p, q = permutation(inner), permutation(node)
            if p is None or q is None:
                stats["miss:no_metadata"] += 1
                continue
            composed = [p[i] for i in q]
            source = inner.args[0]
            if composed == list(range(len(composed))):
                node.replace_all_uses_with(source)
                graph.erase_node(node)
                if not inner.users:
                    graph.erase_node(inner)
                stats["cancelled"] += 1
                continue
            if len(inner.users) > 1:
                stats["miss:inner_has_other_users"] += 1
                continue
            with graph.inserting_before(node):
                new = call(graph, aten.permute.default, (source, composed))
            node.replace_all_uses_with(new)
            graph.erase_node(node)
            graph.erase_node(inner)
            stats["merged"] += 1
        changed = stats["cancelled"] + stats["merged"] > 0
        return PassResult(ctx.gm, modified=changed, stats=dict(stats))
