"""Comparing tensors with explicit per-dtype tolerances; never a silent zip truncation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._report import Check

# (rtol, atol) per dtype. fp32 matches the product's promise (1e-4, 1e-5); integers and bools
# must be equal.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (1.6e-2, 1e-2),
}


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    return TOLERANCES.get(dtype, (0.0, 0.0))


def compare(
    name: str,
    want: torch.Tensor,
    got: torch.Tensor,
    *,
    kind: str = "output",
    rtol: float | None = None,
    atol: float | None = None,
) -> Check:
    """``got`` against ``want``: shape and dtype must agree, NaNs must sit in the same places,
    and every element must meet ``|got - want| <= atol + rtol * |want|``."""
    d_rtol, d_atol = tolerance(want.dtype)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol

    def fail(note: str) -> Check:
        return Check(name, kind, False, float("inf"), float("inf"), rtol, atol, note)

    if tuple(got.shape) != tuple(want.shape):
        return fail(f"shape {list(got.shape)}, expected {list(want.shape)}")
    if got.dtype != want.dtype:
        return fail(f"dtype {got.dtype}, expected {want.dtype}")
    want = want.detach().cpu()
    got = got.detach().cpu()
    if want.numel() == 0:
        return Check(name, kind, True, 0.0, 0.0, rtol, atol)
    if not want.dtype.is_floating_point and not want.dtype.is_complex:
        diff = (got.to(torch.float64) - want.to(torch.float64)).abs()
        worst = float(diff.max())
        return Check(name, kind, worst == 0, worst, worst, 0.0, 0.0)
    w, g = want.to(torch.float64), got.to(torch.float64)
    nan_w, nan_g = torch.isnan(w), torch.isnan(g)
    if not torch.equal(nan_w, nan_g):
        return fail(f"NaN in {int((nan_w ^ nan_g).sum())} place(s) where the other has a number")
    finite = ~nan_w
    w, g = w[finite], g[finite]
    inf_mismatch = (torch.isinf(w) | torch.isinf(g)) & (w != g)
    if bool(inf_mismatch.any()):
        return fail(f"inf mismatch in {int(inf_mismatch.sum())} place(s)")
    both = ~torch.isinf(w)
    diff = (g[both] - w[both]).abs()
    if diff.numel() == 0:
        return Check(name, kind, True, 0.0, 0.0, rtol, atol)
    rel = diff / w[both].abs().clamp_min(1e-12)
    ok = bool((diff <= atol + rtol * w[both].abs()).all())
    return Check(name, kind, ok, float(diff.max()), float(rel.max()), rtol, atol)


def compare_all(
    names: Sequence[str],
    want: Sequence[torch.Tensor],
    got: Sequence[torch.Tensor],
    *,
    kind: str = "output",
    suffix: str = "",
) -> list[Check]:
    """Pairwise ``compare``; a missing or extra tensor is a failed check of its own."""
    checks = [
        compare(n + suffix, w, g, kind=kind) for n, w, g in zip(names, want, got, strict=False)
    ]
    n = min(len(want), len(got))
    for i in range(n, len(want)):
        label = names[i] if i < len(names) else f"#{i}"
        checks.append(
            Check(label + suffix, kind, False, float("inf"), float("inf"), 0, 0, "missing")
        )
    for i in range(n, len(got)):
        checks.append(
            Check(f"#{i}{suffix}", kind, False, float("inf"), float("inf"), 0, 0, "extra output")
        )
    return checks
