"""const_fold: subgraphs of parameters/buffers/constants become constants, within a size limit."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

import fxonnx
from fxonnx.export import fold_initializer_nodes, lower

aten = torch.ops.aten


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))
        self.register_buffer("scale", torch.rand(4) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.w * self.scale.unsqueeze(1)).t()
        return x @ w


def test_const_fold_fires_and_keeps_input_gradients() -> None:
    model, make = Scaled(), randn(4)
    before, after, stats = optimize(model, make, ["const_fold", "dce"])
    assert stats["const_fold"]["folded"] == 1
    assert call_targets(after) == [aten.matmul.default]
    assert [s.kind for s in after.state_inputs] == ["constant"]
    assert len(lower(after).graph.node) < len(lower(before).graph.node)
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make, params=False)


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(100))
        self.b = nn.Parameter(torch.randn(100))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ torch.outer(self.a, self.b)  # 10,000 elements from 200


def test_const_fold_holds_back_when_the_result_outgrows_limit_and_inputs() -> None:
    model, make = Outer(), randn(100)
    _, after, stats = optimize(model, make, [FoldSmall()])
    assert stats["const_fold"] == {"miss:too_large": 1}
    assert_outputs_match(model, after, make)
    _, _, stats = optimize(model, make, ["const_fold"])  # default limit 4096 < 10,000
    assert stats["const_fold"] == {"miss:too_large": 1}


def FoldSmall():  # noqa: N802 - reads like the pass
    from fxonnx.passes.const_fold import FoldConstants

    return FoldConstants(limit=16)


class Sized(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.w.new_zeros(self.w.shape[0]) + torch.rand_like(self.w)


def test_const_fold_never_folds_random_ops() -> None:
    make = randn(3)
    _, after, stats = optimize(Sized(), make, ["const_fold"], verify_each=False)
    assert stats["const_fold"].get("miss:nondeterministic") == 1
    assert aten.rand_like.default in call_targets(after)


class NoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3))

    def forward(self) -> torch.Tensor:
        return (self.w * 2).exp()


def test_const_fold_on_a_model_without_inputs() -> None:
    from fxonnx.capture import capture
    from fxonnx.passes import run_passes

    model = NoInputs()
    captured = capture(model, ())
    after, stats = run_passes(captured, ["const_fold", "dce"])
    assert stats[0]["stats"] == {"folded": 1}
    assert [s.kind for s in after.inputs] == ["constant"]
    assert torch.equal(after.run_torch()[0], model())
    assert len(lower(after).graph.node) == 1  # the output Identity of an initializer


def _tiny_model(nodes: list, initializers: dict) -> onnx.ModelProto:
    """y = the last node's output; the graph input x is added to it."""
    graph = helper.make_graph(
        [*nodes, helper.make_node("Add", ["x", nodes[-1].output[0]], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 3])],
        initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_onnx_fold_turns_movement_of_initializers_into_initializers() -> None:
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    model = _tiny_model(
        [
            helper.make_node("Gather", ["w", "rows"], ["g"], axis=0),
            helper.make_node("Transpose", ["g"], ["t"], perm=[1, 0]),
        ],
        {"w": w, "rows": np.array([2, 0, 1], dtype=np.int64)},
    )
    x = np.ones((4, 3), np.float32)
    expected = _run(model, x)
    assert fold_initializer_nodes(model) == 2
    assert [n.op_type for n in model.graph.node] == ["Add"]
    assert [t.name for t in model.graph.initializer] == ["t"]  # w and rows are gone
    onnx.checker.check_model(model, full_check=True)
    np.testing.assert_array_equal(_run(model, x), expected)


def test_onnx_fold_leaves_arithmetic_and_growth_alone() -> None:
    w = np.ones((4, 3), np.float32)
    arithmetic = _tiny_model([helper.make_node("Mul", ["w", "w"], ["m"])], {"w": w})
    half = np.ones((2, 3), np.float32)
    assert fold_initializer_nodes(arithmetic) == 0
    assert [n.op_type for n in arithmetic.graph.node] == ["Mul", "Add"]
    growth = _tiny_model([helper.make_node("Concat", ["h", "h"], ["c"], axis=0)], {"h": half})
    assert fold_initializer_nodes(growth) == 0  # two copies of h would double the weights
    assert [n.op_type for n in growth.graph.node] == ["Concat", "Add"]


def test_const_fold_folds_the_recurrent_gate_reordering_in_the_exported_model() -> None:
    model, inputs = fxonnx.models.get("gru_lm")
    folded = fxonnx.compile(model, inputs, provider="cpu")
    kept = fxonnx.compile(model, inputs, provider="cpu", skip=["const_fold"])
    entry = next(s for s in folded.report.passes if s["name"] == "const_fold")
    assert entry["stats"]["onnx_folded"] > 0
    assert len(folded.onnx_model.graph.node) < len(kept.onnx_model.graph.node)
    ops = [n.op_type for n in folded.onnx_model.graph.node]
    assert ops.count("Gather") == 1  # the embedding lookup; no gate-reordering Gathers
    gru_inputs = next(n for n in folded.onnx_model.graph.node if n.op_type == "GRU").input
    initializers = {t.name for t in folded.onnx_model.graph.initializer}
    assert set(gru_inputs[1:4]) <= initializers  # W, R, B are initializers, reordered once
    for a, b in zip(folded(*inputs), kept(*inputs), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_folding_restores_torchs_thread_count_even_on_errors() -> None:
    from fxonnx.passes.const_fold import _one_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(ZeroDivisionError), _one_thread():
            1 / 0  # noqa: B018 - raises inside the context
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
