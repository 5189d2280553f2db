"""RMSNorm (aten.rms_norm) against eager at two batch sizes, every constructor option."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from fn_module import Fn
from torch import nn


def _x(b: int) -> tuple:
    return (torch.randn(b, 6, 5, generator=torch.Generator().manual_seed(b)) * 3,)


RMS_NORMS = {
    "last_dim": lambda: nn.RMSNorm(5),
    "two_dims_eps": lambda: nn.RMSNorm((6, 5), eps=1e-3),
    "no_affine": lambda: nn.RMSNorm(5, elementwise_affine=False),
    "eps_none_tiny_input": lambda: nn.RMSNorm(5, eps=None),
}


@pytest.mark.parametrize("name", RMS_NORMS)
def test_rms_norm_matches_eager(name: str, onnx_matches: Callable) -> None:
    module = RMS_NORMS[name]()
    if module.weight is not None:
        with torch.no_grad():
            module.weight.copy_(torch.randn(module.weight.shape))

    def make(b: int) -> tuple:
        (x,) = _x(b)
        return (x * 1e-4 if name == "eps_none_tiny_input" else x,)

    onnx_matches(module, make)


def test_rms_norm_default_eps_is_the_dtype_eps(onnx_matches: Callable) -> None:
    """eps=None means finfo(float32).eps; with inputs of that size a wrong eps shows."""
    fn = Fn(lambda x: nn.functional.rms_norm(x * 1e-4, (5,)))
    onnx_matches(fn, _x)


def test_rms_norm_float64(onnx_matches: Callable) -> None:
    fn = Fn(lambda x: nn.functional.rms_norm(x.double() * 1e-7, (5,)))
    onnx_matches(fn, _x)


def test_rms_norm_half_input_computes_in_float32(onnx_matches: Callable) -> None:
    fn = Fn(lambda x: nn.functional.rms_norm(x.half(), (6, 5), torch.ones(6, 5).half()))
    onnx_matches(fn, _x)
