"""Batched products as aot_autograd writes ``matmul`` of tensors of rank > 3 (``torch.matmul``
is decomposed before tracing): each operand viewed to 3-D, ``bmm``, the result viewed back.

    view(bmm(view(a, [B, L, D]), view(b, [B, D, S])), [*batch, L, S]) = matmul(a, b)

for ``a`` of shape ``[*batch, L, D]``, ``b`` of shape ``[*batch, D, S]`` and ``B = prod(batch)``
(both operands with the same batch dims). The views are a Reshape each in ONNX, and where an
operand is transposed (attention's ``k.transpose(-2, -1)``) they sit between the Transpose and
the MatMul, which keeps onnxruntime from fusing the two into one ``FusedMatMul``. Pure layout:
training-safe. Run ``noops`` first: aot's ``expand`` + ``clone`` to the same shape between
operand and view are no-ops.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch
from torch import fx

from ..capture import same_dim, same_shape
from ._graph import call, erase_dead, is_call, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten

_VIEWS = (aten.view.default, aten._unsafe_view.default, aten.reshape.default)


def _source(operand: fx.Node) -> tuple[fx.Node, tuple[Any, ...]]:
    """The tensor a bmm operand was viewed from and its batch dims (everything before the
    last two); an operand that is no view is its own source, batch dims ``(B,)``."""
    if is_call(operand, *_VIEWS):
        src = operand.args[0]
        v = val(src)
        if isinstance(src, fx.Node) and isinstance(v, torch.Tensor) and v.dim() >= 3:
            if same_shape(v.shape[-2:], val(operand).shape[-2:]):
                return src, tuple(v.shape[:-2])
    return operand, tuple(val(operand).shape[:1])


@register
class BmmViewsToMatmul(Pass):
    """Misses: ``not_views`` (neither operand is a view of a higher-rank tensor),
    ``batch_mismatch`` (the operands' batch dims differ, or do not multiply to the bmm's)."""

    name = "bmm_views"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for node in [n for n in graph.nodes if is_call(n, aten.bmm.default)]:
            (a, batch_a), (b, batch_b) = _source(node.args[0]), _source(node.args[1])
            if a is node.args[0] and b is node.args[1]:
                stats["miss:not_views"] += 1
                continue
            whole = val(node).shape[0]
            if not same_shape(batch_a, batch_b) or not same_dim(math.prod(batch_a), whole):
                stats["miss:batch_mismatch"] += 1
                continue
            with graph.inserting_before(node):
                product = call(graph, aten.matmul.default, (a, b))
            shape = val(product).shape
            for user in list(node.users):
                if is_call(user, *_VIEWS) and same_shape(val(user).shape, shape):
                    user.replace_all_uses_with(product)
                    graph.erase_node(user)
            if node.users:  # a reader of the 3-D value: one view for it
                with graph.inserting_before(node):
                    flat = call(graph, aten.flatten.using_ints, (product, 0, len(shape) - 3))
                node.replace_all_uses_with(flat)
            erase_dead(node)
            stats["rewritten"] += 1
        return PassResult(ctx.gm, modified=stats["rewritten"] > 0, stats=dict(stats))
