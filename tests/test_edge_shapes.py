"""0-d and zero-size tensors are ordinary inputs: compile (which verifies against eager at a
second batch size) and compare the outputs here too, shape included."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import fxonnx

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU("tanh"),
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "celu": nn.CELU,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "hardtanh": nn.Hardtanh,
    "relu6": nn.ReLU6,
    "mish": nn.Mish,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "softshrink": nn.Softshrink,
    "hardshrink": nn.Hardshrink,
    "tanhshrink": nn.Tanhshrink,
    "logsigmoid": nn.LogSigmoid,
    "threshold": lambda: nn.Threshold(0.1, 2.0),
    "softmax": lambda: nn.Softmax(0),
    "log_softmax": lambda: nn.LogSoftmax(0),
}


def _compiled_matches(model: nn.Module, x: torch.Tensor) -> None:
    model = model.eval()
    cm = fxonnx.compile(model, (x,), provider="cpu")
    got, want = cm(x), model(x).detach()
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_on_a_scalar_keeps_rank_zero(name: str) -> None:
    torch.manual_seed(0)
    _compiled_matches(ACTIVATIONS[name](), torch.tensor(0.7))


def test_session_feeds_a_scalar_as_rank_zero() -> None:
    cm = fxonnx.compile(nn.ReLU(), (torch.tensor(-1.5),), provider="cpu")
    (out,) = cm.session.run_numpy([torch.tensor(2.0).numpy()])
    assert out.shape == ()


ZERO_SIZE: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "batch_norm1d_empty_batch": (lambda: nn.BatchNorm1d(3), (0, 3)),
    "batch_norm2d_empty_height": (lambda: nn.BatchNorm2d(3), (2, 3, 0, 4)),
    "layer_norm_empty_batch": (lambda: nn.LayerNorm(3), (0, 3)),
    "layer_norm_empty_seq": (lambda: nn.LayerNorm(3), (2, 0, 3)),
    "linear_empty_seq": (lambda: nn.Linear(3, 4), (2, 0, 3)),
    "conv2d_empty_batch": (lambda: nn.Conv2d(3, 4, 3), (0, 3, 5, 5)),
    "softmax_empty_dim": (lambda: nn.Softmax(-1), (2, 0)),
}


@pytest.mark.parametrize("name", list(ZERO_SIZE))
def test_zero_size_dims_are_ordinary(name: str) -> None:
    factory, shape = ZERO_SIZE[name]
    torch.manual_seed(0)
    _compiled_matches(factory(), torch.randn(*shape))
