"""Fold eval-mode batch norm into the conv or linear layer that feeds it, as graph ops on the
original parameters (so every parameter's gradient stays comparable; ``const_fold`` bakes them):

    s = gamma / sqrt(var + eps),  w' = w * s (on the output-channel axis),
    b' = (b - mean) * s + beta

The output-channel axis is dim 0 of a conv/linear weight and dim 1 of a transposed conv's.
"""

from __future__ import annotations

import operator
from collections import Counter
from typing import Any

import torch
from torch import fx

from ._graph import call, is_call, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten

# conv op -> (index of the transposed flag or None, index of groups, transposed by definition)
CONVS: dict[Any, tuple[int | None, int, bool]] = {
    aten.conv1d.default: (None, 6, False),
    aten.conv2d.default: (None, 6, False),
    aten.conv3d.default: (None, 6, False),
    aten.conv1d.padding: (None, 6, False),  # padding="same"/"valid"
    aten.conv2d.padding: (None, 6, False),
    aten.conv3d.padding: (None, 6, False),
    aten.convolution.default: (6, 8, False),
    aten.conv_transpose1d.default: (None, 6, True),
    aten.conv_transpose2d.input: (None, 6, True),
    aten.conv_transpose3d.input: (None, 6, True),
}
_GROUP_DEFAULT = 1
BATCH_NORMS = (aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default)
TRAINING_NORMS = (
    aten._native_batch_norm_legit_functional.default,
    aten._native_batch_norm_legit.default,
    aten._native_batch_norm_legit.no_stats,
)


def _arg(node: fx.Node, i: int, name: str, default: Any) -> Any:
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _bn_parts(bn: fx.Node) -> tuple[fx.Node, Any, Any, Any, Any, float] | str:
    """(input, gamma, beta, mean, var, eps) of an eval-mode batch norm, or a miss reason."""
    if bn.target == aten._native_batch_norm_legit.no_stats:
        return "no_running_stats"  # track_running_stats=False: batch statistics, even in eval
    if bn.target in TRAINING_NORMS:
        return "training_mode"
    if bn.target == aten.batch_norm.default:
        x, gamma, beta, mean, var, training, _momentum, eps = bn.args[:8]
        if mean is None or var is None:
            return "no_running_stats"
        if training:
            return "training_mode"
    else:
        x, gamma, beta, mean, var, _momentum, eps = bn.args[:7]
    if mean is None or var is None:
        return "no_running_stats"
    return x, gamma, beta, mean, var, float(eps)


def _bn_output(bn: fx.Node) -> fx.Node | None:
    """The node carrying the normalized tensor (getitem 0 for the tuple-returning op)."""
    if bn.target == aten.batch_norm.default:
        return bn
    outs = [u for u in bn.users if u.target is operator.getitem]
    if len(outs) != len(bn.users) or any(u.args[1] != 0 for u in outs) or len(outs) != 1:
        return None
    return outs[0]


@register
class FoldBatchNorm(Pass):
    """Fold ``batch_norm(conv(x))`` and ``batch_norm(linear(x))`` (2-D) in eval mode. Misses:
    ``training_mode``, ``no_running_stats``, ``not_after_conv_or_linear``,
    ``producer_has_other_users``, ``transposed_groups``
    (grouped transposed conv), ``linear_not_2d`` (BatchNorm1d over a 3-D linear output
    normalizes a different axis), ``bn_output_used_as_tuple``, ``low_precision`` (16-bit
    float weights: folding would round them where eager does not)."""

    name = "fold_bn"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for bn in [n for n in graph.nodes if is_call(n, *BATCH_NORMS, *TRAINING_NORMS)]:
            parts = _bn_parts(bn)
            if isinstance(parts, str):
                stats["miss:" + parts] += 1
                continue
            x, gamma, beta, mean, var, eps = parts
            out = _bn_output(bn)
            if out is None:
                stats["miss:bn_output_used_as_tuple"] += 1
                continue
            if is_call(x, aten.linear.default):
                axis, reason = 0, ("linear_not_2d" if val(x).dim() != 2 else None)
            elif is_call(x, *CONVS):
                flag_i, groups_i, transposed = CONVS[x.target]
                if flag_i is not None:
                    transposed = bool(x.args[flag_i])
                groups = _arg(x, groups_i, "groups", _GROUP_DEFAULT)
                axis = 1 if transposed else 0
                reason = "transposed_groups" if transposed and groups != 1 else None
            else:
                stats["miss:not_after_conv_or_linear"] += 1
                continue
            if reason:
                stats["miss:" + reason] += 1
                continue
            if len(x.users) != 1:
                stats["miss:producer_has_other_users"] += 1
                continue
            if val(x.args[1]).dtype in (torch.bfloat16, torch.float16):
                # folded weights take a 16-bit rounding eager never makes: on a bfloat16
                # resnet18 the output's error against float64 went 0.040 -> 0.063 (folded in
                # float32, rounded once) or 0.079 (folded in bfloat16); eager's is 0.033
                stats["miss:low_precision"] += 1
                continue
            w = x.args[1]
            bias = x.args[2] if len(x.args) > 2 else x.kwargs.get("bias")
            with graph.inserting_before(bn):  # after every input of both the conv and the bn
                w2, b2 = _folded(graph, w, bias, gamma, beta, mean, var, eps, axis)
            args = list(x.args) + [None] * max(0, 3 - len(x.args))
            args[1], args[2] = w2, b2
            kwargs = {k: v for k, v in x.kwargs.items() if k != "bias"}
            with graph.inserting_before(bn):
                new = call(graph, x.target, tuple(args), kwargs, like=x)
            out.replace_all_uses_with(new)
            for dead in dict.fromkeys((out, bn, x)):  # out is bn for aten.batch_norm
                if not dead.users:
                    graph.erase_node(dead)
            stats["folded"] += 1
        return PassResult(ctx.gm, modified=stats["folded"] > 0, stats=dict(stats))


def _folded(
    graph: fx.Graph,
    w: fx.Node,
    b: Any,
    gamma: Any,
    beta: Any,
    mean: Any,
    var: Any,
    eps: float,
    axis: int,
) -> tuple[fx.Node, fx.Node]:
    # all of one dtype (as always outside mixed precision): each new value has the shape and
    # dtype of the one it is computed from, with no type promotion, so no inference is needed
    parts = [p for p in (w, b, gamma, beta, mean, var) if isinstance(p, fx.Node)]
    known = len({val(p).dtype for p in parts}) == 1

    def like(node: fx.Node) -> fx.Node | None:
        return node if known else None

    shifted_var = call(graph, aten.add.Tensor, (var, eps), like=like(var))
    s = call(graph, aten.rsqrt.default, (shifted_var,), like=like(var))
    if gamma is not None:
        s = call(graph, aten.mul.Tensor, (s, gamma), like=like(var))
    shape = [1] * val(w).dim()
    shape[axis] = -1
    scale = call(graph, aten.reshape.default, (s, shape))
    w2 = call(graph, aten.mul.Tensor, (w, scale), like=like(w))
    shifted = call(graph, aten.neg.default, (mean,), like=like(mean)) if b is None else None
    if shifted is None:
        shifted = call(graph, aten.sub.Tensor, (b, mean), like=like(mean))
    b2 = call(graph, aten.mul.Tensor, (shifted, s), like=like(mean))
    if beta is not None:
        b2 = call(graph, aten.add.Tensor, (b2, beta), like=like(mean))
    return w2, b2
