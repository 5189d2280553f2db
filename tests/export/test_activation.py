"""Activations on integer and bool inputs: torch promotes sigmoid/tanh/rsqrt to float and keeps
relu integer; each is compared with eager and the model is standard ONNX."""

from __future__ import annotations

import onnx
import pytest
import torch
from fn_module import Fn

import fxonnx

FNS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "rsqrt": torch.rsqrt,
    "tanhshrink": torch.nn.functional.tanhshrink,
}
INPUTS = {
    torch.int64: torch.tensor([-3, 0, 1, 2, 7, 40]),
    torch.int32: torch.tensor([-3, 0, 1, 2, 7, 40], dtype=torch.int32),
    torch.bool: torch.tensor([True, False, True, True, False, False]),
}


# torch refuses tanhshrink on bool (it subtracts a float from a bool)
CASES = [(n, d) for n in FNS for d in INPUTS if (n, d) != ("tanhshrink", torch.bool)]


@pytest.mark.parametrize(("name", "dtype"), CASES, ids=str)
def test_float_activation_of_integers_matches_eager(name: str, dtype: torch.dtype) -> None:
    fn, x = FNS[name], INPUTS[dtype]
    cm = fxonnx.compile(Fn(fn), (x,), provider="cpu")  # verified: float32 tolerance, inf too
    want = fn(x)
    got = cm(x)
    assert got.dtype == want.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)  # rsqrt(-3)
    onnx.checker.check_model(cm.onnx_model, full_check=True)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int8])
def test_integer_relu_is_exact(dtype: torch.dtype) -> None:
    x = torch.tensor([-(2**62), -1, 0, 1, 2**62]) if dtype == torch.int64 else INPUTS[torch.int32]
    x = x.to(dtype)
    cm = fxonnx.compile(Fn(torch.relu), (x,), provider="cpu")
    assert torch.equal(cm(x), torch.relu(x))
    assert "Relu" not in {n.op_type for n in cm.onnx_model.graph.node}
