"""Fake parameters and buffers (``capture.fake_weights``): the metadata torch's ``from_tensor``
gives, and shared storage kept where weights share it."""

from __future__ import annotations

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from fxonnx.capture import fake_weights


def _mode() -> FakeTensorMode:
    return FakeTensorMode(allow_non_fake_inputs=True)


def test_plain_weights_have_from_tensors_metadata() -> None:
    tensors = [
        nn.Parameter(torch.randn(8, 3, 3, 3)),
        nn.Parameter(torch.randn(4, 6).t(), requires_grad=False),  # transposed strides
        torch.randn(5, dtype=torch.float64),
        torch.zeros((), dtype=torch.int64),
    ]
    ours, theirs = fake_weights(_mode(), tensors), [_mode().from_tensor(t) for t in tensors]
    for a, b in zip(ours, theirs, strict=True):
        assert isinstance(a, FakeTensor)
        assert (a.shape, a.stride(), a.dtype, a.device) == (b.shape, b.stride(), b.dtype, b.device)
        assert (a.requires_grad, a.is_leaf, a.storage_offset()) == (b.requires_grad, True, 0)
        assert isinstance(a, nn.Parameter) == isinstance(b, nn.Parameter)


def test_weights_that_share_storage_still_share_it() -> None:
    base = torch.randn(10)
    tied = nn.Parameter(torch.randn(3, 4))
    fakes = fake_weights(_mode(), [base, base[2:], tied, tied])
    assert fakes[1].storage_offset() == 2
    assert fakes[0].untyped_storage()._cdata == fakes[1].untyped_storage()._cdata
    assert fakes[2] is fakes[3]
