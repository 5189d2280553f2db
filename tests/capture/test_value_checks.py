"""Capture runs library functions whose only data-dependent step is a value check."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fxonnx.capture import capture
from fxonnx.capture._value_checks import without_value_checks


class Gaussian(nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return F.gaussian_nll_loss(x, t, var, full=True)


def _inputs(b: int) -> tuple:
    g = torch.Generator().manual_seed(b)
    return tuple(torch.rand(b, 4, generator=g) for _ in range(3))


def test_gaussian_nll_loss_captures_without_its_negative_var_check() -> None:
    captured = capture(Gaussian(), _inputs(3))
    targets = {str(n.target) for n in captured.gm.graph.nodes if n.op == "call_function"}
    assert "aten._local_scalar_dense.default" not in targets
    assert "aten.log.default" in targets
    x, t, var = _inputs(4)
    assert torch.allclose(captured.gm(x, t, var)[0], Gaussian()(x, t, var))


def test_the_check_free_version_matches_torch_on_valid_inputs() -> None:
    x, t, var = _inputs(5)
    for kwargs in (dict(), dict(full=True, eps=0.1, reduction="none"), dict(reduction="sum")):
        for v in (var, var[:, 0], var[:, :1], 0.3):
            expected = F.gaussian_nll_loss(x, t, v, **kwargs)
            with without_value_checks():
                got = F.gaussian_nll_loss(x, t, v, **kwargs)
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_eager_keeps_its_checks_outside_capture() -> None:
    x, t, var = _inputs(2)
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(x, t, -var)
    with without_value_checks(), pytest.raises(ValueError, match="incorrect size"):
        F.gaussian_nll_loss(x, t, var[:, :2])  # shape checks stay


def test_other_functions_pass_through_unchanged() -> None:
    x = torch.randn(3, 4)
    with without_value_checks():
        y = F.softmax(x, -1) + torch.relu(x)
    assert torch.equal(y, F.softmax(x, -1) + torch.relu(x))
