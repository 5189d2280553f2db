"""Library functions whose only data-dependent step is an input-validation check.

``F.gaussian_nll_loss`` raises when ``var`` has a negative entry, which needs the values
(``if torch.any(var < 0)``) and so stops capture. ``without_value_checks()`` is a torch function
mode, active while tracing, that runs the same math without that check: the exported graph
computes what eager computes for every valid input (for a negative ``var`` eager raises, the
graph clamps it to ``eps`` like any other small variance).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


def _gaussian_nll_loss(
    input: torch.Tensor,  # noqa: A002 (torch's own argument name)
    target: torch.Tensor,
    var: torch.Tensor | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> torch.Tensor:
    """torch.nn.functional.gaussian_nll_loss (torch 2.13) minus the negative-``var`` check."""
    if not isinstance(var, torch.Tensor):
        return F.gaussian_nll_loss(input, target, var, full=full, eps=eps, reduction=reduction)
    if var.size() != input.size():
        if input.size()[:-1] == var.size():
            var = torch.unsqueeze(var, -1)
        elif not (
            input.ndim == var.ndim
            and sum(y for x, y in zip(input.size(), var.size(), strict=True) if x != y) == 1
        ):
            raise ValueError("var is of incorrect size")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(reduction + " is not valid")
    var = var.clone()
    with torch.no_grad():
        var.clamp_(min=eps)
    loss = 0.5 * (torch.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


_REPLACEMENTS = {F.gaussian_nll_loss: _gaussian_nll_loss}


class without_value_checks(TorchFunctionMode):  # noqa: N801 (used as a context manager)
    """Swap the functions in ``_REPLACEMENTS`` for their check-free versions."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        replacement = _REPLACEMENTS.get(func, func)
        return replacement(*args, **(kwargs or {}))
