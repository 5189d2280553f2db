"""16-bit float outputs judged against a float64 run of the same model.

Eager bfloat16 rounds after every op; onnxruntime computes the ops it lacks 16-bit kernels for
in float32 (one rounding each). Through a deep net the two drift apart further than a bfloat16
tolerance (resnet18: 0.084 of the output's range), while the compiled result is the *closer*
one to the exact answer (0.0066 against eager's 0.0074). So a 16-bit output that misses the
eager tolerance passes when it is at least as close as eager to the model run in float64 on
the same (16-bit) input values, with the dtype's own tolerance as slack.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import nn

from ._compare import tolerance
from ._report import Check

LOW_PRECISION = (torch.bfloat16, torch.float16)
SLACK = 1.25  # "as close as eager" allows this factor on eager's own error


def float64_outputs(model: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The model's outputs computed in float64 from the same input values."""

    def widen(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.dtype.is_floating_point:
            return x.detach().to(torch.float64)
        return x

    exact = copy.deepcopy(model).to(torch.float64).eval()
    a, k = pytree.tree_map(widen, (args, kwargs))
    with torch.no_grad():
        out = exact(*a, **k)
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def against_reference(
    check: Check, eager: torch.Tensor, ours: torch.Tensor, exact: torch.Tensor
) -> Check:
    """``check`` (a failed 16-bit comparison with eager) judged by closeness to ``exact``:
    passes when ``max|ours - exact| <= SLACK * max|eager - exact| + rtol * max|exact|``."""
    ref = exact.detach().cpu().to(torch.float64)
    if ref.shape != ours.shape or not bool(torch.isfinite(ref).all()):
        return check
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    rtol, _ = tolerance(eager.dtype)
    ours_err = float((ours.detach().cpu().to(torch.float64) - ref).abs().max())
    eager_err = float((eager.detach().cpu().to(torch.float64) - ref).abs().max())
    ok = ours_err <= SLACK * eager_err + rtol * scale
    note = (
        f"{eager.dtype} output judged against the model in float64: compiled max err "
        f"{ours_err:.3g}, eager's {eager_err:.3g} (of max |value| {scale:.3g}); "
        f"eager {eager.dtype} itself differs by {check.max_abs:.3g}"
    )
    return Check(check.name, check.kind, ok, ours_err, check.max_rel, rtol, check.atol, note)
