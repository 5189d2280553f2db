"""Instance norm with and without channel information, and eval-mode batch norm without
running statistics (batch statistics by definition), against eager."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import fxonnx
from fxonnx._errors import ExportError
from fxonnx.capture import capture
from fxonnx.export import lower


def _tracked(layer: nn.Module) -> nn.Module:
    """Non-trivial running statistics for a track_running_stats layer."""
    c = layer.num_features
    layer.running_mean.copy_(torch.randn(c))
    layer.running_var.copy_(torch.rand(c) + 0.5)
    return layer


def _affine(layer: nn.Module) -> nn.Module:
    nn.init.normal_(layer.weight)
    nn.init.normal_(layer.bias)
    return layer


Shape = tuple[int, ...]
BATCHED: dict[str, tuple[Callable[[], nn.Module], Shape]] = {
    "instance1d": (lambda: nn.InstanceNorm1d(3), (3, 8)),
    "instance1d_affine": (lambda: _affine(nn.InstanceNorm1d(3, affine=True)), (3, 8)),
    "instance2d": (lambda: nn.InstanceNorm2d(3, eps=1e-3), (3, 5, 6)),
    "instance2d_affine_tracked": (
        lambda: _affine(_tracked(nn.InstanceNorm2d(3, affine=True, track_running_stats=True))),
        (3, 5, 6),
    ),
    "instance3d": (lambda: nn.InstanceNorm3d(2), (2, 3, 4, 5)),
    "instance3d_tracked": (
        lambda: _tracked(nn.InstanceNorm3d(2, track_running_stats=True)),
        (2, 3, 4, 5),
    ),
    "batch1d_batch_stats": (lambda: nn.BatchNorm1d(3, track_running_stats=False), (3,)),
    "batch1d_seq_batch_stats": (
        lambda: _affine(nn.BatchNorm1d(3, track_running_stats=False)),
        (3, 7),
    ),
    "batch2d_batch_stats": (
        lambda: _affine(nn.BatchNorm2d(3, track_running_stats=False)),
        (3, 5, 6),
    ),
    "batch2d_batch_stats_no_affine": (
        lambda: nn.BatchNorm2d(3, affine=False, track_running_stats=False, eps=1e-3),
        (3, 5, 6),
    ),
    "batch3d_batch_stats": (lambda: nn.BatchNorm3d(2, track_running_stats=False), (2, 3, 4, 5)),
}


@pytest.mark.parametrize("name", list(BATCHED))
def test_norm_matches_eager(name: str, onnx_matches: Callable) -> None:
    factory, shape = BATCHED[name]
    torch.manual_seed(0)
    layer = factory()

    def make_inputs(b: int) -> tuple:
        return (3 * torch.randn(b, *shape, generator=torch.Generator().manual_seed(b)) + 1,)

    onnx_matches(layer, make_inputs, batches=(4, 3))


UNBATCHED: dict[str, tuple[Callable[[], nn.Module], Shape]] = {
    "instance1d": (lambda: nn.InstanceNorm1d(3), (3, 8)),
    "instance1d_affine": (lambda: _affine(nn.InstanceNorm1d(3, affine=True)), (3, 8)),
    "instance2d": (lambda: nn.InstanceNorm2d(3), (3, 5, 6)),
    "instance3d": (lambda: nn.InstanceNorm3d(2), (2, 3, 4, 5)),
}


@pytest.mark.parametrize("name", list(UNBATCHED))
def test_unbatched_instance_norm_matches_eager(name: str, onnx_matches: Callable) -> None:
    """Unbatched (C, *spatial): torch unsqueezes a batch of 1 (its own channel check fixes C)."""
    factory, shape = UNBATCHED[name]
    torch.manual_seed(0)
    layer = factory()

    def make_inputs(_: int) -> tuple:
        return (torch.randn(*shape, generator=torch.Generator().manual_seed(1)) + 1,)

    onnx_matches(layer, make_inputs, dynamic=False)


class FunctionalInstanceNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.instance_norm(x, eps=1e-3)


def test_instance_norm_with_a_dynamic_channel_count() -> None:
    """No static channel count: the statistics are written out (InstanceNormalization needs
    (C,) scales)."""
    model = FunctionalInstanceNorm()
    x = torch.randn(2, 3, 8) * 2 + 1
    cm = fxonnx.compile(model, (x,), provider="cpu", dynamic_dims={"x": {0: "batch", 1: "c"}})
    assert "InstanceNormalization" not in {n.op_type for n in cm.onnx_model.graph.node}
    for shape in ((2, 3, 8), (4, 5, 8)):
        x = torch.randn(*shape)
        torch.testing.assert_close(cm(x), model(x), rtol=1e-4, atol=1e-5)


def test_train_mode_batch_norm_with_running_stats_is_still_refused() -> None:
    captured = capture(nn.BatchNorm2d(3).train(), (torch.randn(2, 3, 4, 4),))
    with pytest.raises(ExportError, match="training mode"):
        lower(captured)
