"""Control flow: ``torch.cond`` as ONNX ``If``, its branches as subgraphs over outer values."""

from __future__ import annotations

import torch

from .._ctx import LowerCtx, Value
from .._registry import lowers


@lowers(torch.ops.higher_order.cond)
def cond(ctx: LowerCtx) -> list[Value]:
    """cond(Tensor pred, GraphModule true_fn, GraphModule false_fn, Tensor[] operands)
    -> Tensor[]: If(pred != 0), each branch lowered as a subgraph whose placeholders read the
    operands (ONNX subgraphs see outer values by name). torch has already checked that pred
    has one element and that both branches return the same dtypes and ranks."""
    pred, true_fn, false_fn, operands = (ctx.arg(i) for i in range(4))
    owner = ctx.node.graph.owning_module
    then_branch, else_branch = (
        ctx.subgraph(getattr(owner, ref.target), list(operands), f"{ctx.node.name}_{label}")
        for label, ref in (("then", true_fn), ("else", false_fn))
    )
    flag = ctx.cast(ctx.value(pred), torch.bool, ctx.dtype(pred))
    n_out = len(ctx.val())
    outs = ctx.emit("If", flag, outputs=n_out, then_branch=then_branch, else_branch=else_branch)
    return list(outs) if n_out > 1 else [outs]
