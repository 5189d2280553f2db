"""Replace hand-written GELU (erf and tanh forms) and attention with the single ATen op that
lowers to one compact ONNX form:

    0.5 * x * (1 + erf(x / sqrt(2)))                               -> gelu(x)
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))      -> gelu(x, approximate="tanh")
    softmax(q @ k.transpose(-2, -1) * s, -1) @ v                   -> scaled_dot_product_attention

Attention is fused only when the exporter turns it into ONNX's single ``Attention`` op (opset 23,
[B, H, L, E] inputs): below that the exporter writes it out as the same MatMul/Softmax/MatMul
chain plus a scale, so fusing would not make the model smaller.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import fx

from ._graph import call, erase_dead, is_call, only_user, scalar_operand, val
from ._infra import Pass, PassContext, PassResult, register
from ._match import lowerable, other, plus, scaled
from .transpose import PERMUTES, permutation

aten = torch.ops.aten


def _half_x_times(one_plus: fx.Node, x: fx.Node) -> fx.Node | None:
    """The node computing ``0.5 * x * one_plus`` in any of the usual association orders."""
    m1 = only_user(one_plus)
    if not is_call(m1, aten.mul.Tensor):
        return None
    half = other(m1, one_plus)
    if isinstance(half, fx.Node) and scaled(half, 0.5) is x:
        return m1  # (0.5 * x) * (1 + f)
    if half is x:  # (x * (1 + f)) * 0.5
        m2 = only_user(m1)
        return m2 if m2 is not None and scaled(m2, 0.5) is m1 else None
    if scaled(m1, 0.5) is one_plus:  # x * ((1 + f) * 0.5)
        m2 = only_user(m1)
        return m2 if is_call(m2, aten.mul.Tensor) and other(m2, m1) is x else None
    return None


def _tanh_input(node: fx.Node) -> fx.Node | None:
    """x when ``node`` is ``sqrt(2/pi) * (x + 0.044715 * x**3)``."""
    inner = scaled(node, math.sqrt(2 / math.pi))
    if not is_call(inner, aten.add.Tensor):
        return None
    for x, cube in (inner.args[:2], inner.args[1::-1]):
        p = scaled(cube, 0.044715) if isinstance(cube, fx.Node) else None
        if is_call(p, aten.pow.Tensor_Scalar) and p.args[0] is x and p.args[1] == 3:
            return x
    return None


@register
class FuseGelu(Pass):
    """Misses: ``intermediate_has_other_users`` (the erf/tanh or its ``1 +`` is used elsewhere),
    ``not_gelu`` (an erf/tanh that starts but does not complete the pattern)."""

    name = "fuse_gelu"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for f in [n for n in graph.nodes if is_call(n, aten.erf.default, aten.tanh.default)]:
            if f.target == aten.erf.default:
                x, approximate = scaled(f.args[0], 1 / math.sqrt(2)), "none"
            else:
                x, approximate = _tanh_input(f.args[0]), "tanh"
            user = only_user(f)
            if x is None or (user is not None and plus(user, 1.0) is not f):
                if x is not None:
                    stats["miss:not_gelu"] += 1
                continue
            if user is None or len(user.users) != 1:
                stats["miss:intermediate_has_other_users"] += 1
                continue
            out = _half_x_times(user, x)
            if out is None:
                stats["miss:not_gelu"] += 1
                continue
            with graph.inserting_before(out):
                new = call(graph, aten.gelu.default, (x,), {"approximate": approximate})
            out.replace_all_uses_with(new)
            erase_dead(out)
            stats["fused"] += 1
        return PassResult(ctx.gm, modified=stats["fused"] > 0, stats=dict(stats))


def _scores(node: fx.Node) -> tuple[fx.Node, float | None] | None:
    """(q @ k^T node, scale) for ``mm * s``, ``mm / s`` or ``mm``."""
    if is_call(node, aten.mul.Tensor, aten.div.Tensor):
        op = scalar_operand(node)
        if op is None or op[1] == 0:
            return None
        mm, c = op
        return mm, (1.0 / c if node.target == aten.div.Tensor else c)
    return node, None


@register
class FuseAttention(Pass):
    """Misses: ``softmax_not_last_dim``, ``no_kt`` (the key is not transposed in its last two
    dims), ``scores_have_other_users``, ``rank_or_dtype`` (q, k, v of different ranks or dtypes,
    or not 4-D), ``no_attention_op`` (the target opset is below 23 or unknown: the exporter would
    decompose it again), ``no_lowering`` (the exporter has no scaled_dot_product_attention rule)."""

    name = "fuse_attention"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        softmaxes = (aten.softmax.int, aten._softmax.default)
        for sm in [n for n in graph.nodes if is_call(n, *softmaxes)]:
            pv = only_user(sm)
            if not is_call(pv, aten.matmul.default) or pv.args[0] is not sm:
                continue
            parsed = _scores(sm.args[0])
            if parsed is None or not is_call(parsed[0], aten.matmul.default):
                continue
            qk, scale = parsed
            q, kt = qk.args
            v = pv.args[1]
            rank = val(sm).dim()
            if sm.args[1] % rank != rank - 1:
                stats["miss:softmax_not_last_dim"] += 1
                continue
            p = permutation(kt) if is_call(kt, *PERMUTES) else None
            if p is None or p != [*range(rank - 2), rank - 1, rank - 2]:
                stats["miss:no_kt"] += 1
                continue
            k = kt.args[0]
            if any(len(n.users) != 1 for n in {qk, sm.args[0]}):
                stats["miss:scores_have_other_users"] += 1
                continue
            vals = [val(t) for t in (q, k, v)]
            if len({t.dim() for t in vals}) != 1 or len({t.dtype for t in vals}) != 1 or rank != 4:
                stats["miss:rank_or_dtype"] += 1
                continue
            if ctx.opset is None or ctx.opset < 23:
                stats["miss:no_attention_op"] += 1
                continue
            if not lowerable(aten.scaled_dot_product_attention.default):
                stats["miss:no_lowering"] += 1
                continue
            kwargs = {"scale": 1.0 if scale is None else scale}
            with graph.inserting_before(pv):
                new = call(graph, aten.scaled_dot_product_attention.default, (q, k, v), kwargs)
            pv.replace_all_uses_with(new)
            erase_dead(pv)
            stats["fused"] += 1
        return PassResult(ctx.gm, modified=stats["fused"] > 0, stats=dict(stats))
