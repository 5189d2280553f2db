"""Gradient ops left to torch on the CPU (``_torch_kernels``): convolution weight gradients and
max-pool gradients run in torch, everything else of the backward in onnxruntime, and the
step matches eager."""

from __future__ import annotations

import pytest
import torch
from dynamo_helpers import sgd_step_matches
from torch import nn

import fxonnx.dynamo as fd
import fxonnx.dynamo._torch_kernels as torch_kernels
from fxonnx import FxonnxError


class ConvNet(nn.Module):
    """A stem conv without bias (its input needs no grad: only the weight gradient is asked
    for), a conv with bias and batch norm, max pooling, a depthwise conv, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(self.stem(x).relu())).relu()
        y = self.depthwise(self.pool(y)).relu()
        return self.fc(y.mean((2, 3)))


class Conv1d3d(nn.Module):
    """A 1-D and a 3-D convolution (the rewrite keeps every argument as it is)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c3 = nn.Conv1d(4, 8, 5, padding=2), nn.Conv3d(4, 8, 3, stride=2)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.c1(x).relu().mean(-1) + self.c3(v).relu().mean((2, 3, 4))


def _backward_record() -> fd.GraphRecord:
    (record,) = [g for g in fd.stats().graphs if g.name.endswith(".backward")]
    return record


@pytest.fixture
def every_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thresholds at zero: the small test model's gradients qualify like resnet18's."""
    monkeypatch.setattr(torch_kernels, "MIN_POSITIONS", 0)
    monkeypatch.setattr(torch_kernels, "MIN_FLOP", 0)
    monkeypatch.setattr(torch_kernels, "MIN_DEPTHWISE_FLOP", 0)
    monkeypatch.setattr(torch_kernels, "MIN_POOL_GRAD", 0)


@pytest.mark.parametrize("pool_in_torch", [True, False])
def test_weight_and_pool_gradients_run_in_torch_and_the_step_matches(
    every_size: None, monkeypatch: pytest.MonkeyPatch, pool_in_torch: bool
):
    """The three weight gradients (the stem's alone, the conv's split from its input and
    bias gradients, the depthwise one's) run in torch, the rest in one partition; the max-pool
    gradient, in the middle of the backward, splits it in two."""
    if not pool_in_torch:
        monkeypatch.setattr(torch_kernels, "MIN_POOL_GRAD", 1 << 40)
    sgd_step_matches(ConvNet(), (torch.randn(2, 3, 16, 16),))
    record = _backward_record()
    assert record.torch_nodes == (4 if pool_in_torch else 3)
    assert len(record.partitions) == (2 if pool_in_torch else 1)


def test_1d_and_3d_weight_gradients_run_in_torch_and_the_step_matches(every_size: None):
    sgd_step_matches(Conv1d3d(), (torch.randn(2, 4, 32), torch.randn(2, 4, 9, 9, 9)))
    record = _backward_record()
    assert record.torch_nodes == 2 and len(record.partitions) == 1


def test_a_dynamic_batch_moves_the_same_gradients(every_size: None):
    """Sizes are judged at the example's batch when dynamo makes it symbolic."""
    x = torch.randn(3, 3, 16, 16)
    torch._dynamo.mark_dynamic(x, 0)
    sgd_step_matches(ConvNet(), (x,))
    assert _backward_record().torch_nodes == 4


def test_without_torch_kernels_the_whole_backward_is_one_partition(every_size: None):
    sgd_step_matches(ConvNet(), (torch.randn(2, 3, 16, 16),), options={"torch_kernels": False})
    record = _backward_record()
    assert record.torch_nodes == 0 and len(record.partitions) == 1


def test_small_gradients_stay_in_onnxruntime():
    """At the default thresholds this model is too small for torch's per-call cost to pay."""
    sgd_step_matches(ConvNet(), (torch.randn(2, 3, 16, 16),))
    assert _backward_record().torch_nodes == 0


def test_torch_kernels_takes_a_bool():
    with pytest.raises(FxonnxError, match="torch_kernels"):
        fd.Options.parse({"torch_kernels": "yes"})
