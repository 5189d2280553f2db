"""fuse_activation: Conv/Gemm + activation into onnxruntime's FusedConv/FusedGemm on the lowered
model, for the CPU provider; outputs still equal eager, one miss case per reason."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from pass_helpers import randn
from torch import nn

import fxonnx
from fxonnx._errors import PassError
from fxonnx.capture import capture
from fxonnx.export import fuse_activations, lower
from fxonnx.verify import compare


class ConvAct(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class LinearAct(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


CONV_ACTS = {
    "Relu": nn.ReLU(),
    "Tanh": nn.Tanh(),
    "Sigmoid": nn.Sigmoid(),
    "LeakyRelu": nn.LeakyReLU(0.2),
    "Clip": nn.ReLU6(),
    "HardSigmoid": nn.Hardsigmoid(),
}
GEMM_ACTS = {
    "Relu": nn.ReLU(),
    "Tanh": nn.Tanh(),
    "Sigmoid": nn.Sigmoid(),
    "LeakyRelu": nn.LeakyReLU(),
}
CASES = [(ConvAct(a), (3, 7, 7), "FusedConv", n) for n, a in CONV_ACTS.items()]
CASES += [(LinearAct(a), (6,), "FusedGemm", n) for n, a in GEMM_ACTS.items()]


def _stats(cm: fxonnx.CompiledModel) -> dict | None:
    return next((p["stats"] for p in cm.report.passes if p["name"] == "fuse_activation"), None)


@pytest.mark.parametrize(
    ("module", "shape", "fused_op", "act"), CASES, ids=[f"{c[2]}-{c[3]}" for c in CASES]
)
def test_fuses_and_matches_eager(module: nn.Module, shape: tuple, fused_op: str, act: str) -> None:
    torch.manual_seed(0)
    make = randn(*shape)
    # verified at batch 2 and 1
    cm = fxonnx.compile(module.eval(), make(2), provider="cpu", runtime_ops=True)
    (node,) = cm.onnx_model.graph.node
    assert (node.domain, node.op_type) == ("com.microsoft", fused_op)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["activation"] == act.encode()
    assert _stats(cm) == {"fused": 1}
    x = make(5)
    with torch.no_grad():
        check = compare("out@5", module(*x), cm(*x))
    assert check.ok, check


def test_default_skip_none_and_export_leave_the_model_portable() -> None:
    module, make = ConvAct(nn.ReLU()).eval(), randn(3, 7, 7)
    for kw in ({}, {"skip": ["fuse_activation"], "runtime_ops": True}, {"passes": "none"}):
        cm = fxonnx.compile(module, make(2), provider="cpu", **kw)
        assert [n.op_type for n in cm.onnx_model.graph.node] == ["Conv", "Relu"]
        assert _stats(cm) == ({"miss:runtime_ops_off": 1} if not kw else None)
    exported = fxonnx.export(module, make(2))
    assert [n.op_type for n in exported.graph.node] == ["Conv", "Relu"]
    chosen = fxonnx.compile(
        module, make(2), provider="cpu", passes=["fuse_activation"], runtime_ops=True
    )
    assert [n.op_type for n in chosen.onnx_model.graph.node] == ["FusedConv"]


def test_naming_fuse_activation_without_runtime_ops_is_refused() -> None:
    module, make = ConvAct(nn.ReLU()).eval(), randn(3, 7, 7)
    with pytest.raises(PassError, match="runtime_ops=True"):
        fxonnx.compile(module, make(2), provider="cpu", passes=["fuse_activation"])


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, torch.relu(y)


def _lowered(module: nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    return lower(capture(module.eval(), (x,)))


def test_holds_back_once_per_reason() -> None:
    x = torch.randn(2, 3, 7, 7)
    model = _lowered(ConvAct(nn.ReLU()), x)
    assert fuse_activations(model, "cuda") == {"miss:no_fused_kernel_on_cuda": 1}
    assert fuse_activations(_lowered(TwoOutputs(), x), "cpu") == {
        "miss:producer_has_other_users": 1
    }
    doubles = _lowered(LinearAct(nn.ReLU()).double(), torch.randn(2, 6, dtype=torch.float64))
    assert fuse_activations(doubles, "cpu") == {"miss:not_float32_initializer_weight": 1}
    gemm_clip = _lowered(LinearAct(nn.ReLU6()), torch.randn(2, 6))
    assert fuse_activations(gemm_clip, "cpu") == {"miss:activation_not_fused_into_gemm": 1}
    for m in (model, doubles, gemm_clip):  # nothing rewritten
        assert all(n.domain == "" for n in m.graph.node)


def test_clip_with_bounds_from_an_input_is_left_alone() -> None:
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Clip", ["c", "lo"], ["y"]),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 2, 2]),
            helper.make_tensor_value_info("lo", onnx.TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    assert fuse_activations(model, "cpu") == {"miss:clip_bounds_not_constant": 1}
    assert [n.op_type for n in model.graph.node] == ["Conv", "Clip"]
