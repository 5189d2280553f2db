"""matmul + bias add -> linear (one Gemm): ``matmul(x, W) + b`` with a 2-D input, a 2-D weight
and a bias over its columns becomes ``linear(x, W.T, b)`` (the transpose is a graph op on the
original weight; ``const_fold`` bakes it)."""

from __future__ import annotations

from collections import Counter

import torch
from torch import fx

from ._graph import call, is_call, state_of, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten
MATMULS = (aten.matmul.default, aten.mm.default)


@register
class MatmulBiasToLinear(Pass):
    """Misses: ``input_not_2d`` (only a 2-D linear is a Gemm), ``matmul_has_other_users``, ``weight_not_state`` (a computed right operand, e.g.
    attention scores), ``weight_not_2d``, ``bias_not_vector`` (the added tensor is not a 1-D
    parameter/constant of the output width), ``changes_dtype``."""

    name = "matmul_bias"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for add in [n for n in graph.nodes if is_call(n, aten.add.Tensor)]:
            if add.kwargs.get("alpha", 1) != 1 or len(add.args) != 2:
                continue
            a, b = add.args
            mm, bias = (a, b) if is_call(a, *MATMULS) else (b, a)
            if not is_call(mm, *MATMULS) or not isinstance(bias, fx.Node):
                continue
            x, w = mm.args
            if len(mm.users) != 1:
                stats["miss:matmul_has_other_users"] += 1
                continue
            if state_of(ctx.captured, w) is None:
                stats["miss:weight_not_state"] += 1
                continue
            vw, vb, vx = val(w), val(bias), val(x)
            if vw.dim() != 2:
                stats["miss:weight_not_2d"] += 1
                continue
            if vx.dim() != 2:  # no Gemm: the exporter would add a Transpose (see linear_nd)
                stats["miss:input_not_2d"] += 1
                continue
            if state_of(ctx.captured, bias) is None or tuple(vb.shape) != (vw.shape[1],):
                stats["miss:bias_not_vector"] += 1
                continue
            if not (vx.dtype == vw.dtype == vb.dtype == val(add).dtype):
                stats["miss:changes_dtype"] += 1
                continue
            with graph.inserting_before(add):
                wt = call(graph, aten.t.default, (w,))
                new = call(graph, aten.linear.default, (x, wt, bias))
            add.replace_all_uses_with(new)
            graph.erase_node(add)
            graph.erase_node(mm)
            stats["fused"] += 1
        return PassResult(ctx.gm, modified=stats["fused"] > 0, stats=dict(stats))
