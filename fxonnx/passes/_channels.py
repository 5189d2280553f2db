"""Channel chains for structured pruning: ``conv -> [batch_norm] -> [act] -> conv`` and
``linear -> [act] -> linear``, and their rewrite to a subset of the channels as graph ops
(``index_select`` on the original weights; ``const_fold`` bakes them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from .._dimexpr import evaluate
from ..capture import size_hint
from ._graph import (
    add_constant,
    call,
    erase_dead,
    is_call,
    only_user,
    placeholder_specs,
    state_of,
    val,
)
from ._infra import PassContext

aten = torch.ops.aten

PLAIN_CONVS = {  # non-transposed convs: op -> index of groups
    aten.conv1d.default: 6,
    aten.conv2d.default: 6,
    aten.conv3d.default: 6,
    aten.conv1d.padding: 6,
    aten.conv2d.padding: 6,
    aten.conv3d.padding: 6,
}
# activations with f(0) == 0, so a channel that is zero stays zero through them
ZERO_KEEPING = {
    aten.relu.default,
    aten.relu6.default,
    aten.hardtanh.default,
    aten.gelu.default,
    aten.silu.default,
    aten.tanh.default,
    aten.leaky_relu.default,
    aten.elu.default,
    aten.hardswish.default,
    aten.mish.default,
}


def keeps_zero(act: fx.Node) -> bool:
    """Whether the activation maps 0 to 0 (hardtanh only when its range contains 0)."""
    if act.target not in ZERO_KEEPING:
        return False
    if act.target == aten.hardtanh.default:
        lo = act.args[1] if len(act.args) > 1 else act.kwargs.get("min_val", -1.0)
        hi = act.args[2] if len(act.args) > 2 else act.kwargs.get("max_val", 1.0)
        return lo <= 0 <= hi
    return True


OTHER_ACTS = {aten.sigmoid.default, aten.softplus.default, aten.hardsigmoid.default}


PRUNED = "fxonnx.pruned"  # node.meta key: this layer's output channels were already pruned


@dataclass
class Chain:
    producer: fx.Node
    norm: fx.Node | None
    act: fx.Node | None
    consumer: fx.Node

    @property
    def weight(self) -> fx.Node:
        return self.producer.args[1]

    @property
    def bias(self) -> Any:
        p = self.producer
        return p.args[2] if len(p.args) > 2 else p.kwargs.get("bias")


def weight_value(ctx: PassContext, node: Any) -> torch.Tensor | None:
    """A weight's value: a state tensor, or an ``index_select`` of one (an earlier prune)."""
    value = state_of(ctx.captured, node)
    if value is not None or not is_call(node, aten.index_select.default):
        return value
    source, index = weight_value(ctx, node.args[0]), state_of(ctx.captured, node.args[2])
    if source is None or index is None:
        return None
    return source.index_select(node.args[1], index)


def weight_name(ctx: PassContext, node: Any) -> str | None:
    """The state name behind a weight (through ``index_select``), e.g. ``"fc1.weight"``."""
    while is_call(node, aten.index_select.default):
        node = node.args[0]
    for n, spec in placeholder_specs(ctx.captured).items():
        if n is node:
            return spec.name
    return None


def _plain(node: Any) -> bool:
    if is_call(node, aten.linear.default):
        return True
    if not is_call(node, *PLAIN_CONVS):
        return False
    i = PLAIN_CONVS[node.target]
    return (node.args[i] if len(node.args) > i else node.kwargs.get("groups", 1)) == 1


def match_chain(ctx: PassContext, producer: fx.Node) -> Chain | str:
    """The chain starting at ``producer`` or why there is none."""
    if not _plain(producer):
        return "grouped_conv"
    if weight_value(ctx, producer.args[1]) is None:
        return "weight_not_state"
    linear = producer.target == aten.linear.default
    node, norm, act = producer, None, None
    user = only_user(node)
    if not linear and is_call(user, aten.batch_norm.default) and user.args[0] is node:
        if user.args[5]:
            return "training_mode"
        node = norm = user
        user = only_user(node)
    if is_call(user, *ZERO_KEEPING, *OTHER_ACTS) and user.args[0] is node:
        node = act = user
        user = only_user(node)
    if user is None:
        return "has_other_users"
    same_kind = is_call(user, aten.linear.default) if linear else is_call(user, *PLAIN_CONVS)
    if not same_kind or user.args[0] is not node or not _plain(user):
        return "consumer_not_simple"
    if weight_value(ctx, user.args[1]) is None:
        return "weight_not_state"
    return Chain(producer, norm, act, user)


def keep_channels(ctx: PassContext, chain: Chain, keep: torch.Tensor) -> fx.Node:
    """Rewrite the chain to use only the output channels ``keep`` (sorted int64 indices)."""
    graph = ctx.gm.graph
    idx = add_constant(ctx.captured, keep, f"keep_{chain.producer.name}")

    def sel(t: Any, dim: int) -> Any:
        return None if t is None else call(graph, aten.index_select.default, (t, dim, idx))

    with graph.inserting_before(chain.consumer):
        p = chain.producer
        args = list(p.args) + [None] * max(0, 3 - len(p.args))
        args[1], args[2] = sel(chain.weight, 0), sel(chain.bias, 0)
        kwargs = {k: v for k, v in p.kwargs.items() if k != "bias"}
        x = call(graph, p.target, tuple(args), kwargs)
        x.meta[PRUNED] = True
        if chain.norm is not None:
            n = chain.norm
            stats = [sel(t, 0) for t in n.args[1:5]]
            x = call(graph, n.target, (x, *stats, *n.args[5:]), dict(n.kwargs))
        if chain.act is not None:
            a = chain.act
            x = call(graph, a.target, (x, *a.args[1:]), dict(a.kwargs))
        c = chain.consumer
        new = call(graph, c.target, (x, sel(c.args[1], 1), *c.args[2:]), dict(c.kwargs))
    c.replace_all_uses_with(new)
    erase_dead(c)
    return new


def param_count(ctx: PassContext) -> int:
    """Parameters of conv/linear/batch-norm layers as the exporter will see them."""
    total = 0
    for node in ctx.gm.graph.nodes:
        if is_call(node, aten.linear.default, aten.batch_norm.default, *PLAIN_CONVS):
            total += sum(
                size_hint(val(a).numel()) for a in node.args[1:3] if isinstance(a, fx.Node)
            )
    return total


def flops(ctx: PassContext) -> int:
    """Multiply-adds x 2 of conv/linear layers at batch 1 (other dynamic dims at their example
    size)."""
    total = 0
    for node in ctx.gm.graph.nodes:
        if not is_call(node, aten.linear.default, *PLAIN_CONVS):
            continue
        out = 1
        for d in val(node).shape:
            out *= _size_at_batch_1(ctx, d)
        w = val(node.args[1])
        total += 2 * out * (w[0].numel() if w.dim() > 1 else 1)
    return total


def _size_at_batch_1(ctx: PassContext, d: Any) -> int:
    """A traced size with the dim named "batch" at 1 and every other name at its example."""
    dim = ctx.captured.shapes.dim(d)
    if isinstance(dim, int):
        return dim
    sizes = {s.name: 1 if s.name == "batch" else s.example for s in ctx.captured.shapes.symbols}
    value = evaluate(dim, sizes)
    return value if value is not None else size_hint(d)
