"""Fold scalar multiplies and adds into the conv/linear next to them, as graph ops on the
original weights (``const_fold`` bakes them):

    linear(x, W, b) * c = linear(x, W*c, b*c)      linear(x, W, b) + c = linear(x, W, b + c)
    linear(x * c, W, b) = linear(x, W*c, b)        (the same for conv: zero padding is linear)
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx

from ._graph import call, is_call, scalar_operand, val
from ._infra import Pass, PassContext, PassResult, register
from .fold_bn import CONVS

aten = torch.ops.aten
LAYERS = (aten.linear.default, *CONVS)
_MUL = {aten.mul.Tensor: False, aten.div.Tensor: True}
_ADD = {aten.add.Tensor: 1.0, aten.sub.Tensor: -1.0}


def _with(graph: fx.Graph, layer: fx.Node, w: fx.Node, b: fx.Node | None) -> fx.Node:
    args = list(layer.args) + [None] * max(0, 3 - len(layer.args))
    args[1], args[2] = w, b
    kwargs = {k: v for k, v in layer.kwargs.items() if k != "bias"}
    return call(graph, layer.target, tuple(args), kwargs)


@register
class FoldScalars(Pass):
    """Misses: ``layer_has_other_users``, ``no_bias`` (an added scalar needs a bias to go into),
    ``changes_dtype`` (the scalar promotes the result)."""

    name = "scalar_fold"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for node in [n for n in graph.nodes if is_call(n, *_MUL, *_ADD)]:
            if node.graph is not graph:
                continue
            op = scalar_operand(node)
            if op is None:
                continue
            x, c = op
            if is_call(x, *LAYERS):
                layer, consumer = x, None
            elif node.target in _MUL and any(
                is_call(u, *LAYERS) and u.args[0] is node for u in node.users
            ):
                layer, consumer = next(iter(node.users)), node
                if len(node.users) != 1:
                    stats["miss:layer_has_other_users"] += 1
                    continue
            else:
                continue
            if val(node).dtype != val(x).dtype:
                stats["miss:changes_dtype"] += 1
                continue
            if consumer is None and len(layer.users) != 1:
                stats["miss:layer_has_other_users"] += 1
                continue
            w = layer.args[1]
            b = layer.args[2] if len(layer.args) > 2 else layer.kwargs.get("bias")
            if node.target in _MUL and _MUL[node.target]:
                c = 1.0 / c
            with graph.inserting_before(layer if consumer else node):
                if node.target in _ADD:
                    if b is None:
                        stats["miss:no_bias"] += 1
                        continue
                    b = call(graph, aten.add.Tensor, (b, c * _ADD[node.target]))
                else:
                    w = call(graph, aten.mul.Tensor, (w, c))
                    if consumer is None and b is not None:
                        b = call(graph, aten.mul.Tensor, (b, c))
                if consumer is not None:
                    new = _with(graph, layer, w, b)
                    new.update_arg(0, x)
                    layer.replace_all_uses_with(new)
                    graph.erase_node(layer)
                    graph.erase_node(node)
                else:
                    new = _with(graph, layer, w, b)
                    node.replace_all_uses_with(new)
                    graph.erase_node(node)
                    graph.erase_node(layer)
            stats["folded"] += 1
        return PassResult(ctx.gm, modified=stats["folded"] > 0, stats=dict(stats))
