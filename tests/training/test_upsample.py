"""training/_upsample: F.interpolate in a training step keeps the batch symbolic, the joint graph
has the ATen up-sampling ops and their backward ops, and the step matches eager at two batch
sizes from one export."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from training_helpers import assert_step_matches

import fxonnx
from fxonnx.training import TrainingSession
from fxonnx.training._joint import trace_joint

aten = torch.ops.aten

# name -> (spatial size, F.interpolate keyword arguments, the ATen op it must become)
CASES: dict[str, tuple[tuple[int, ...], dict[str, Any], str]] = {
    "nearest1d": ((6,), {"scale_factor": 2, "mode": "nearest"}, "upsample_nearest1d"),
    "nearest2d": ((4, 5), {"scale_factor": (2, 3), "mode": "nearest"}, "upsample_nearest2d"),
    "nearest3d": ((2, 3, 4), {"scale_factor": 2, "mode": "nearest"}, "upsample_nearest3d"),
    "nearest_exact2d": (
        (4, 5),
        {"size": (7, 9), "mode": "nearest-exact"},
        "_upsample_nearest_exact2d",
    ),
    "linear1d": ((6,), {"scale_factor": 2, "mode": "linear"}, "upsample_linear1d"),
    "bilinear": ((4, 5), {"scale_factor": 2, "mode": "bilinear"}, "upsample_bilinear2d"),
    "bilinear_corners": (
        (4, 5),
        {"scale_factor": 2, "mode": "bilinear", "align_corners": True},
        "upsample_bilinear2d",
    ),
    "bilinear_size": ((4, 5), {"size": (7, 9), "mode": "bilinear"}, "upsample_bilinear2d"),
    "bilinear_fraction": (
        (4, 6),
        {"scale_factor": 1.5, "mode": "bilinear"},
        "upsample_bilinear2d",
    ),
    "bilinear_recompute": (
        (5, 6),
        {"scale_factor": 1.5, "mode": "bilinear", "recompute_scale_factor": True},
        "upsample_bilinear2d",
    ),
    "bicubic": ((4, 5), {"scale_factor": 2, "mode": "bicubic"}, "upsample_bicubic2d"),
    "trilinear": ((2, 3, 4), {"scale_factor": 2, "mode": "trilinear"}, "upsample_trilinear3d"),
}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class Up(nn.Module):
    """conv -> F.interpolate -> conv: both convs' gradients pass through the up-sampling."""

    def __init__(self, rank: int, call: Any) -> None:
        super().__init__()
        self.a, self.b = _CONV[rank](2, 3, 1), _CONV[rank](3, 2, 1)
        self.call = call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.call(self.a(x)))


def _data(spatial: tuple[int, ...], model: nn.Module, batch: int) -> tuple:
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 2, *spatial, generator=g)
    with torch.no_grad():
        y = torch.randn(model(x).shape, generator=g)
    return x, y


@pytest.mark.parametrize("case", list(CASES))
def test_interpolate_step_at_two_batches(case: str, tmp_path) -> None:  # noqa: ANN001
    spatial, kwargs, op = CASES[case]
    model = Up(len(spatial), lambda t: F.interpolate(t, **kwargs))
    x, y = _data(spatial, model, 2)
    joint = trace_joint(model, F.mse_loss, (x,), (y,), None)
    assert [s.name for s in joint.shapes.symbols] == ["batch"]
    targets = {n.target for n in joint.gm.graph.nodes if n.op == "call_function"}
    assert getattr(aten, op).default in targets
    assert getattr(aten, f"{op}_backward").default in targets
    assert not any("fxonnx" in str(t) for t in targets)  # upsample_grad was rewritten
    path = tmp_path / f"{case}.onnx"
    onnx_model = fxonnx.export_training(model, F.mse_loss, x, y, path)
    assert onnx_model.graph.input[-2].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = TrainingSession(path)
    for batch in (2, 3):
        xs, ys = _data(spatial, model, batch)
        assert_step_matches(session, model, F.mse_loss, (xs,), (ys,))


def test_nn_upsample_and_direct_vec_call(tmp_path) -> None:  # noqa: ANN001
    """nn.Upsample goes through F.interpolate; torch._C._nn's vec form is routed too."""
    calls = {
        "module": nn.Upsample(scale_factor=2, mode="bilinear"),
        "vec": lambda t: torch._C._nn.upsample_bilinear2d(t, None, False, [2.0, 2.0]),
    }
    for name, call in calls.items():
        model = Up(2, call)
        x, y = _data((3, 4), model, 2)
        path = tmp_path / f"{name}.onnx"
        fxonnx.export_training(model, F.mse_loss, x, y, path)
        session = TrainingSession(path)
        for batch in (2, 5):
            xs, ys = _data((3, 4), model, batch)
            assert_step_matches(session, model, F.mse_loss, (xs,), (ys,))


def test_other_modes_run_unchanged() -> None:
    """area (adaptive pooling) is not routed: it traces as before, batch symbolic."""
    model = Up(2, lambda t: F.interpolate(t, size=(2, 2), mode="area"))
    x, y = _data((4, 4), model, 2)
    joint = trace_joint(model, F.mse_loss, (x,), (y,), None)
    targets = {n.target for n in joint.gm.graph.nodes if n.op == "call_function"}
    assert aten._adaptive_avg_pool2d.default in targets
    assert [s.name for s in joint.shapes.symbols] == ["batch"]
