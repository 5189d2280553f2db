"""Remove ops that return their input unchanged: clone/contiguous/alias/detach, eval-mode dropout,
``x * 1``, ``x + 0``, ``x - 0``, ``x / 1``, casts, copies and expands to the same dtype and shape,
and views/reshapes to the input's own shape."""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx

from ..capture import same_shape
from ._graph import is_call, same_meta, scalar_operand, squeezes_dynamic_dim, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten

_ALWAYS = {
    aten.clone.default,
    aten.contiguous.default,
    aten.alias.default,
    aten.detach.default,
    aten.lift_fresh_copy.default,
}
_SAME_SHAPE = {
    aten._to_copy.default,
    aten.to.dtype,
    aten.to.dtype_layout,
    aten.to.device,
    aten.type_as.default,
    aten.expand.default,
    aten.expand_as.default,
    aten.view.default,
    aten.reshape.default,
    aten._unsafe_view.default,
    aten.flatten.using_ints,
    aten.squeeze.dim,
    aten.squeeze.dims,
    aten.squeeze.default,
    aten.view_as.default,
    aten.reshape_as.default,
}
_NEUTRAL = {
    aten.mul.Tensor: 1.0,
    aten.mul.Scalar: 1.0,
    aten.div.Tensor: 1.0,
    aten.div.Scalar: 1.0,
    aten.add.Tensor: 0.0,
    aten.add.Scalar: 0.0,
    aten.sub.Tensor: 0.0,
    aten.sub.Scalar: 0.0,
    aten.pow.Tensor_Scalar: 1.0,
}


def _identity_input(node: fx.Node) -> fx.Node | str:
    """The node's input when it is a no-op, else the reason it is not."""
    t = node.target
    if t in _ALWAYS:
        x = node.args[0]
        if not same_meta(node, x):
            return "changes_dtype_or_shape"
        if t == aten.contiguous.default and not val(x).is_contiguous():
            return "not_contiguous"  # later views in torch rely on the copy's layout
        return x
    if t == aten.dropout.default:
        train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train", False)
        return node.args[0] if not train else "train_mode_dropout"
    if t in _SAME_SHAPE:
        x = node.args[0]
        vx, vn = val(x), val(node)
        if vx is None or vn is None:
            return "no_metadata"
        if vx.dtype != vn.dtype:
            return "changes_dtype"
        if not same_shape(vx.shape, vn.shape):
            return "changes_shape"
        if squeezes_dynamic_dim(node):
            return (
                "squeeze_of_dynamic_dim"  # its rank depends on the runtime size: lowering says so
            )
        if t in (aten._to_copy.default, aten.to.device) and vx.device != vn.device:
            return "changes_device"
        return x
    if t in _NEUTRAL:
        op = scalar_operand(node)
        if op is None or op[1] != _NEUTRAL[t]:
            return "not_neutral"
        return op[0] if same_meta(node, op[0]) else "changes_dtype_or_shape"
    return "not_a_noop"


# reasons that just mean "a real op" (most views change the shape): not counted as misses
_NOT_CANDIDATES = {"not_a_noop", "not_neutral", "changes_shape", "changes_dtype", "no_metadata"}


@register
class RemoveNoOps(Pass):
    """Reroute the users of identity ops to their input. Misses: ``changes_dtype_or_shape`` (a
    clone-like op or ``x * 1`` whose result differs in dtype, e.g. an int tensor times 1.0),
    ``train_mode_dropout``, ``not_contiguous`` (a ``contiguous`` that copies: torch views after
    it need the layout). ``detach`` goes too: outputs are unchanged, but gradients through it
    differ, so this pass is for inference graphs (what the exporter sees)."""

    name = "noops"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        targets = _ALWAYS | _SAME_SHAPE | set(_NEUTRAL) | {aten.dropout.default}
        for node in list(ctx.gm.graph.nodes):
            if not is_call(node, *targets):
                continue
            x = _identity_input(node)
            if isinstance(x, str):
                if x not in _NOT_CANDIDATES:
                    stats["miss:" + x] += 1
                continue
            node.replace_all_uses_with(x)
            ctx.gm.graph.erase_node(node)
            stats["removed"] += 1
        return PassResult(ctx.gm, modified=stats["removed"] > 0, stats=dict(stats))
