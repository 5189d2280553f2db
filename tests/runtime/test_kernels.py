"""Models in dtypes onnxruntime's CPU kernels lack: bfloat16 runs (missing kernels in float32
between Casts, verified at bfloat16's tolerance), float64 without a kernel is refused with one
error naming the ops, the dtype and the fix."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import fxonnx
from fxonnx._errors import RuntimeSessionError


def _cnn(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, groups=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
            nn.Hardtanh(0, 6),
        )
        .eval()
        .to(dtype)
    )


def test_bfloat16_cnn_runs_and_matches_eager(tmp_path) -> None:  # noqa: ANN001
    model, x = _cnn(torch.bfloat16), torch.randn(2, 3, 12, 12, dtype=torch.bfloat16)
    cm = fxonnx.compile(model, (x,), provider="cpu")  # verified at bf16 tolerance, batch 2 and 1
    assert any(n.startswith("Conv x2 computed in float32") for n in cm.report.notes)
    assert any("cross into onnxruntime as float32" in n for n in cm.report.notes)
    x5 = torch.randn(5, 3, 12, 12, dtype=torch.bfloat16)
    got = cm(x5)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, model(x5).detach(), rtol=1.6e-2, atol=1e-2)
    # the saved file keeps bfloat16 I/O and loads in onnxruntime as it is
    cm.save(tmp_path / "bf16.onnx")
    saved = onnx.load(tmp_path / "bf16.onnx")
    assert saved.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    ort.InferenceSession(str(tmp_path / "bf16.onnx"), providers=["CPUExecutionProvider"])


def test_float16_cnn_needs_no_widening() -> None:
    model, x = _cnn(torch.float16), torch.randn(2, 3, 12, 12, dtype=torch.float16)
    cm = fxonnx.compile(model, (x,), provider="cpu")
    assert not any("computed in float32" in n for n in cm.report.notes)


def test_float64_cnn_is_refused_naming_op_dtype_and_fix() -> None:
    model, x = _cnn(torch.float64), torch.randn(2, 3, 12, 12, dtype=torch.float64)
    with pytest.raises(RuntimeSessionError) as e:
        fxonnx.compile(model, (x,), provider="cpu")
    assert e.value.message.startswith("onnxruntime has no cpu kernel for Conv (float64)")
    assert "ONNXRuntimeError" not in str(e.value)
    assert "model.float()" in e.value.hint


def test_float64_model_with_kernels_runs_in_float64() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    cm = fxonnx.compile(model, (x,), provider="cpu")  # fp64 tolerance
    assert not any("float32" in n for n in cm.report.notes)
    torch.testing.assert_close(cm(x), model(x).detach(), rtol=1e-7, atol=1e-9)


class PermuteLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.transpose(0, 1))  # (S, N, E) -> (N, S, E), as after a GRU


def test_bfloat16_transpose_into_a_widened_matmul_loads() -> None:
    """Transpose(bf16) -> Cast -> MatMul crashes onnxruntime 1.31 (segfault at level ALL): the
    cast goes before a float32 copy of the Transpose instead."""
    torch.manual_seed(0)
    model = PermuteLinear().to(torch.bfloat16).eval()
    x = torch.randn(5, 2, 32, dtype=torch.bfloat16)
    cm = fxonnx.compile(model, (x,), provider="cpu")
    assert any(n.startswith("MatMul x1 computed in float32") for n in cm.report.notes)
    ops = [(n.op_type, n.input[0]) for n in cm.onnx_model.graph.node]
    transposes = {n.output[0]: n for n in cm.onnx_model.graph.node if n.op_type == "Transpose"}
    casts = [n for n in cm.onnx_model.graph.node if n.op_type == "Cast"]
    assert not any(c.input[0] in transposes for c in casts), ops
    torch.testing.assert_close(cm(x), model(x).detach(), rtol=1.6e-2, atol=1e-2)
