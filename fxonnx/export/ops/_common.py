"""Helpers shared by rule families (type promotion, axis normalisation)."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from ..._errors import ExportError
from .._ctx import LowerCtx, Value


def result_type(ctx: LowerCtx, *args: Any) -> torch.dtype:
    """torch's promotion over tensors and Python scalars, from the traced example values."""
    vals = [ctx.val(a) for a in args]
    # promotion needs the kind of a symbolic scalar, not its value (int() would guard on it)
    stand_in = {torch.SymInt: 1, torch.SymFloat: 1.0, torch.SymBool: True}
    vals = [stand_in.get(type(v), v) for v in vals]
    tensors = [v for v in vals if isinstance(v, torch.Tensor)]
    if not tensors:
        return (
            torch.result_type(torch.tensor(vals[0]), vals[1])
            if len(vals) > 1
            else ctx.dtype(args[0])
        )
    dtype = tensors[0].dtype
    probe = torch.empty((1,) * tensors[0].dim(), dtype=dtype)
    for v in vals:
        if v is tensors[0]:
            continue
        other = torch.empty((1,) * v.dim(), dtype=v.dtype) if isinstance(v, torch.Tensor) else v
        dtype = torch.result_type(probe, other)
        probe = probe.to(dtype)
    return dtype


def promoted(ctx: LowerCtx, *args: Any, dtype: torch.dtype | None = None) -> list[Value]:
    """Inputs cast to one dtype (``dtype``, else torch's result type): ONNX arithmetic needs
    equal input types where torch promotes."""
    target = dtype if dtype is not None else result_type(ctx, *args)
    return [_scalar_or_tensor(ctx, a, target) for a in args]


def _scalar_or_tensor(ctx: LowerCtx, a: Any, dtype: torch.dtype) -> Value:
    """``a`` as ``dtype``; a SymInt node (a [1] shape value) becomes 0-d, as the Python number
    it stands for, so that ``loss / x.size(0)`` stays 0-d."""
    if isinstance(a, fx.Node) and isinstance(ctx.val(a), (torch.SymInt, torch.SymFloat, int)):
        scalar = ctx.emit("Reshape", ctx.value(a), ctx.const([], torch.int64))
        return ctx.cast(scalar, dtype, ctx.dtype(a))
    return ctx.input_as(a, dtype)


def require_float(ctx: LowerCtx, onnx_op: str, dtype: torch.dtype) -> None:
    """Refuse an integer or bool ``dtype`` for an ONNX op that takes floats only and whose
    integer result no float type computes exactly (sums of products, divisions: an int64 sum
    overflows float64's 53-bit mantissa, a float average rounds where torch truncates)."""
    if dtype.is_floating_point or dtype.is_complex:
        return
    name = str(dtype).removeprefix("torch.")
    raise ExportError(
        f"{ctx.node.name}: {ctx.node.target} on {name} inputs: ONNX {onnx_op} takes floats only "
        f"and no float type computes its {name} result exactly",
        hint=f"cast the input to float32 in the model (x.float() before the op, .to(torch.{name}) "
        "after it) where its values fit",
    )


def axes(dims: Any, rank: int) -> list[int]:
    if dims is None or dims == []:
        return list(range(rank))
    if isinstance(dims, int):
        dims = [dims]
    return [d % rank if rank else 0 for d in dims]
