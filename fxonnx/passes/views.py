"""Collapse chains of view-like ops (view, reshape, flatten, unflatten, squeeze, unsqueeze) into
one reshape of the chain's source to the chain's final shape, and give single views whose sizes
are computed from the batch (``view(x, [128, batch * 4, 64])``) a static shape with -1 for the
batch, which the exporter writes as one constant instead of Shape/Gather/Mul/Concat."""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx

from ..capture import static_dim
from ._graph import call, is_call, squeezes_dynamic_dim, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten

VIEWS = (
    aten.view.default,
    aten.reshape.default,
    aten._unsafe_view.default,
    aten.flatten.using_ints,
    aten.unflatten.int,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.squeeze.default,
    aten.unsqueeze.default,
)


SQUEEZES = (aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default)


def _squeezes_dynamic(node: fx.Node) -> bool:
    v = val(node.args[0])
    return (
        is_call(node, *SQUEEZES) and v is not None and any(static_dim(d) is None for d in v.shape)
    )


SIZED = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)


def target_shape(ctx: PassContext, node: fx.Node) -> list | str:
    """The node's output shape as reshape arguments: ints, with -1 for the one dynamic dim; a
    view/reshape with several dynamic dims keeps its own (symbolic) size arguments."""
    v = val(node)
    if not isinstance(v, torch.Tensor):
        return "no_metadata"
    dims = [static_dim(d) for d in v.shape]
    dynamic = [i for i, d in enumerate(dims) if d is None]
    if 0 in dims:
        return "zero_sized"
    if len(dynamic) <= 1:
        return [-1 if d is None else d for d in dims]
    if node.target in (aten.view.default, aten.reshape.default, aten._unsafe_view.default):
        return list(node.args[1])
    return "several_dynamic_dims"


@register
class CollapseViews(Pass):
    """``view(view(x, a), b)`` -> ``reshape(x, b)`` for any pair of view-like ops. Misses:
    ``inner_has_other_users`` (the first view stays, nothing saved), ``several_dynamic_dims``
    (a single view with several batch-sized dims keeps its symbolic sizes, not counted),
    ``zero_sized`` (-1 would be ambiguous), ``no_metadata``, ``squeeze_of_dynamic_dim`` (a
    squeeze's rank depends on a dynamic size: left for lowering to refuse)."""

    name = "views"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for node in list(graph.nodes):
            if node.graph is not graph or not is_call(node, *VIEWS):
                continue
            inner = node.args[0]
            if not is_call(inner, *VIEWS):
                self._static(ctx, node, stats)
                continue
            if len(inner.users) > 1:
                stats["miss:inner_has_other_users"] += 1
                continue
            if any(squeezes_dynamic_dim(n) for n in (node, inner)):
                stats["miss:squeeze_of_dynamic_dim"] += 1  # lowering refuses it, by design
                continue
            shape = target_shape(ctx, node)
            if isinstance(shape, str):
                stats["miss:" + shape] += 1
                continue
            with graph.inserting_before(node):
                new = call(graph, aten.reshape.default, (inner.args[0], shape))
            new.meta = {**node.meta, "val": new.meta["val"]}
            node.replace_all_uses_with(new)
            graph.erase_node(node)
            graph.erase_node(inner)
            stats["collapsed"] += 1
        changed = stats["collapsed"] + stats["made_static"] > 0
        return PassResult(ctx.gm, modified=changed, stats=dict(stats))

    @staticmethod
    def _static(ctx: PassContext, node: fx.Node, stats: Counter[str]) -> None:
        if node.target not in SIZED or not any(isinstance(a, fx.Node) for a in node.args[1]):
            return
        shape = target_shape(ctx, node)
        if isinstance(shape, str) or any(isinstance(d, fx.Node) for d in shape):
            if isinstance(shape, str) and shape != "several_dynamic_dims":
                stats["miss:" + shape] += 1
            return
        node.args = (node.args[0], shape)
        stats["made_static"] += 1
