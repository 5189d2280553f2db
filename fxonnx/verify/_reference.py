"""16-bit float outputs judged against a float64 run of the same model.

Eager bfloat16 rounds after every op; onnxruntime computes the ops it lacks 16-bit kernels for
in float32 (one rounding each). Through a deep net the two drift apart further than a bfloat16
tolerance, while each stays about as close to the exact answer (bf16 resnet18: 0.094 apart,
eager 0.033 and compiled 0.040 from the float64 run, outputs up to 11.2; vit_tiny: eager 0.013,
compiled 0.0092). So a 16-bit output that misses the eager tolerance passes when it is as close
as eager (within ``SLACK``) to the model run in float64 on the same (16-bit) weights and input
values, with the dtype's rtol of the output's range as slack.
"""

from __future__ import annotations

import torch

from ._compare import tolerance
from ._report import Check

LOW_PRECISION = (torch.bfloat16, torch.float16)
SLACK = 1.25  # "as close as eager" allows this factor on eager's own error


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
