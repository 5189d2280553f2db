"""The gradient of a tensor split by ``select`` into all of its parts is those parts' gradients
stacked: ``select_backward(g0, sizes, d, 0) + select_backward(g1, sizes, d, 1) + ...`` is
``stack([g0, g1, ...], d)``.

aot_autograd writes the backward of ``nn.MultiheadAttention``'s packed projection (``q, k, v =
proj[0], proj[1], proj[2]``) that way: each part padded with zeros to the whole [3, seq,
batch, dim] and the three summed, five passes over three times the data where one
concatenation writes it once (transformer_encoder's training step at batch 8: 4 of them).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx

from ._graph import call, erase_dead, is_call
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten


def _summed(root: fx.Node) -> list[fx.Node]:
    """The terms of the sum ``root`` (nested ``add.Tensor``s without ``alpha``, each inner
    one used only by the sum), in any order."""
    terms, stack = [], [root]
    while stack:
        node = stack.pop()
        inner = node is root or (isinstance(node, fx.Node) and len(node.users) == 1)
        if inner and is_call(node, aten.add.Tensor) and not node.kwargs and len(node.args) == 2:
            stack.extend(node.args)
        else:
            terms.append(node)
    return terms


def _stacked_parts(root: fx.Node) -> tuple[list[fx.Node], int] | None:
    """(the gradients in index order, dim) when the sum ``root`` is one select_backward per
    index of one dim of one shape, each used only by the sum; else None."""
    terms = _summed(root)
    if len(terms) < 2 or not all(is_call(t, aten.select_backward.default) for t in terms):
        return None
    sizes, dim = terms[0].args[1], terms[0].args[2]
    rank = len(sizes)
    if any(list(t.args[1]) != list(sizes) or t.args[2] % rank != dim % rank for t in terms):
        return None
    size = sizes[dim % rank]
    if not isinstance(size, int) or size != len(terms) or any(len(t.users) != 1 for t in terms):
        return None
    by_index = {}
    for t in terms:
        index = t.args[3]
        if not isinstance(index, int):
            return None
        by_index[index % size] = t.args[0]
    if sorted(by_index) != list(range(size)):
        return None
    return [by_index[i] for i in range(size)], dim % rank


@register
class StackSelectGrads(Pass):
    """Misses: none counted (a sum that is not every part of one select is left as it is)."""

    name = "stack_select_grads"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for node in reversed(list(graph.nodes)):  # outermost sums first
            if node._erased or not is_call(node, aten.add.Tensor):
                continue
            found = _stacked_parts(node)
            if found is None:
                continue
            parts, dim = found
            with graph.inserting_before(node):
                stacked = call(graph, aten.stack.default, (parts, dim), like=node)
            node.replace_all_uses_with(stacked)
            erase_dead(node)
            stats["stacked"] += 1
        return PassResult(ctx.gm, modified=stats["stacked"] > 0, stats=dict(stats))
