"""Replace LayerNorm and RMSNorm written out by hand with the single ATen op:

    (x - mean(x)) / sqrt(var(x) + eps) * w + b   -> layer_norm(x, shape, w, b, eps)
    x * rsqrt(mean(x**2) + eps) * w              -> rms_norm(x, shape, w, eps)

over the last dims (mean and var over ``[-1]``, ``[-2, -1]``, ...; var as ``mean((x - m)**2)``
or ``var(x, correction=0)``; ``/ sqrt`` or ``* rsqrt``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import fx

from ..capture import static_dim
from ._graph import call, erase_dead, is_call, only_user, scalar_operand, val
from ._infra import Pass, PassContext, PassResult, register
from ._match import lowerable, other

aten = torch.ops.aten


def _last_dims(node: Any, x: fx.Node) -> list[int] | None:
    """The normalized shape when ``node`` is ``mean(x, last dims, keepdim=True)``."""
    if not is_call(node, aten.mean.dim) or node.args[0] is not x:
        return None
    dims, keep = node.args[1], (node.args[2] if len(node.args) > 2 else False)
    rank = val(x).dim()
    if (
        not keep
        or dims is None
        or sorted(d % rank for d in dims) != list(range(rank - len(dims), rank))
    ):
        return None
    shape = [static_dim(s) for s in val(x).shape[rank - len(dims) :]]
    return None if None in shape else shape  # type: ignore[return-value]


def _squared(node: Any) -> fx.Node | None:
    if is_call(node, aten.pow.Tensor_Scalar) and node.args[1] == 2:
        return node.args[0]
    if is_call(node, aten.mul.Tensor) and node.args[0] is node.args[1]:
        return node.args[0]
    return None


def _inv_std(norm: fx.Node, centered: Any) -> tuple[fx.Node, float, fx.Node] | None:
    """(variance node, eps, root node) when ``norm`` is ``centered / sqrt(var + eps)`` or ``* rsqrt``."""
    if is_call(norm, aten.div.Tensor) and norm.args[0] is centered:
        root, fn = norm.args[1], aten.sqrt.default
    elif is_call(norm, aten.mul.Tensor) and other(norm, centered) is not None:
        root, fn = other(norm, centered), aten.rsqrt.default
    else:
        return None
    if not is_call(root, fn) or not is_call(root.args[0], aten.add.Tensor):
        return None
    op = scalar_operand(root.args[0])
    return None if op is None else (op[0], op[1], root)


def _affine(ctx: PassContext, out: fx.Node, shape: list[int]) -> tuple[fx.Node, Any, Any]:
    """Extend ``out`` by ``* w`` and ``+ b`` with tensors of the normalized shape."""

    def fits(t: Any) -> bool:
        return isinstance(t, fx.Node) and list(val(t).shape) == shape

    w = b = None
    user = only_user(out)
    if is_call(user, aten.mul.Tensor) and fits(other(user, out)):
        out, w = user, other(user, out)
        user = only_user(out)
    if is_call(user, aten.add.Tensor) and not user.kwargs and fits(other(user, out)):
        out, b = user, other(user, out)
    return out, w, b


@register
class FuseNorms(Pass):
    """Misses: ``not_last_dims`` (statistics over other dims), ``intermediate_has_other_users``,
    ``no_lowering`` (rms_norm without an exporter rule)."""

    name = "fuse_layer_norm"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for node in [n for n in graph.nodes if is_call(n, aten.div.Tensor, aten.mul.Tensor)]:
            if node._erased:
                continue
            found = self._match(node)
            if found is None:
                continue
            if isinstance(found, str):
                stats["miss:" + found] += 1
                continue
            kind, x, shape, eps, inner = found
            pattern = {node, *inner}
            if any(not set(n.users) <= pattern for n in inner):
                stats["miss:intermediate_has_other_users"] += 1
                continue
            out, w, b = _affine(ctx, node, shape)
            if kind == "rms_norm" and not lowerable(aten.rms_norm.default):
                stats["miss:no_lowering"] += 1
                continue
            with graph.inserting_before(out):
                if kind == "layer_norm":
                    new = call(graph, aten.layer_norm.default, (x, shape, w, b, eps))
                else:
                    if b is not None:  # rms_norm has no bias: keep the add
                        out = out.args[0] if out.args[1] is b else out.args[1]
                    new = call(graph, aten.rms_norm.default, (x, shape, w, eps))
            out.replace_all_uses_with(new)
            erase_dead(out)
            stats[kind] += 1
        modified = stats["layer_norm"] + stats["rms_norm"] > 0
        return PassResult(ctx.gm, modified=modified, stats=dict(stats))

    @staticmethod
    def _match(norm: fx.Node) -> tuple | str | None:
        for centered in norm.args[:2]:
            if not isinstance(centered, fx.Node):
                continue
            parts = _inv_std(norm, centered)
            if parts is None:
                continue
            var, eps, root = parts
            if not isinstance(var, fx.Node) or var.op != "call_function" or not var.args:
                continue  # rsqrt(running_var + eps) of a batch-norm fold: a parameter, no stats
            inner = [root, root.args[0], var, var.args[0]]
            if is_call(centered, aten.sub.Tensor) and is_call(centered.args[1], aten.mean.dim):
                x, mean = centered.args[:2]
                shape = _last_dims(mean, x)
                sq = _squared(var.args[0]) if is_call(var, aten.mean.dim) else None
                if sq is not centered or shape is None or _last_dims(var, var.args[0]) != shape:
                    return "not_last_dims"
                return "layer_norm", x, shape, eps, [*inner, centered, mean]
            if is_call(var, aten.mean.dim) and _squared(var.args[0]) is centered:
                shape = _last_dims(var, var.args[0])
                if shape is None:
                    return "not_last_dims"
                return "rms_norm", centered, shape, eps, inner
        return None
