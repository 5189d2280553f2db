"""Capture: dynamic batch without symbolic tracing, library-style code, clear refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxonnx
from fxonnx.capture import capture


class LibraryStyle(nn.Module):
    """Written the way large model libraries write forward(): shape arithmetic in Python,
    item assignment, keyword arguments, a dict output, torch.zeros(x.size(0), ...)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, *, scale: torch.Tensor | None = None) -> dict:
        b, t, c = x.shape
        h = self.proj(x).reshape(b * t, c)
        slots = torch.zeros(x.size(0), 3, c)
        slots[:, 0] = x[:, 0]
        if scale is not None:
            h = h * scale
        return {"hidden": h.view(b, t, c), "slots": slots, "count": t}


def test_library_style_model_runs_at_other_batch_sizes() -> None:
    model = LibraryStyle().eval()
    x, scale = torch.randn(2, 5, 8), torch.tensor(0.5)
    captured = capture(model, (x,), {"scale": scale})
    assert captured.shapes.names == ("batch",)
    assert [s.name for s in captured.user_inputs] == ["x", "scale"]
    assert {s.name for s in captured.outputs} == {"hidden", "slots"}
    for batch in (1, 7):
        xb = torch.randn(batch, 5, 8)
        got = captured.run_torch(xb, scale)
        want = model(xb, scale=scale)
        torch.testing.assert_close(got[0], want["hidden"])
        torch.testing.assert_close(got[1], want["slots"])


def test_compiled_library_style_model_keeps_the_output_structure() -> None:
    model = LibraryStyle().eval()
    x, scale = torch.randn(2, 5, 8), torch.tensor(0.5)
    cm = fxonnx.compile(model, (x,), {"scale": scale}, provider="cpu")
    out = cm(torch.randn(4, 5, 8), scale=scale)
    assert set(out) == {"hidden", "slots", "count"}
    assert out["count"] == 5 and out["hidden"].shape == (4, 5, 8)


class Branchy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent: cannot be one graph
            return x + 1
        return x - 1


def test_data_dependent_control_flow_names_the_line_and_suggests_cond() -> None:
    with pytest.raises(fxonnx.CaptureError) as err:
        capture(Branchy(), (torch.randn(2, 3),))
    message = str(err.value)
    assert "test_capture.py" in message and "if x.sum() > 0" in message
    assert "torch.cond" in message


class HalfBatch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0) // 2, -1)  # not linear in the batch size


def test_batch_arithmetic_that_is_not_linear_stays_dynamic() -> None:
    model = HalfBatch()
    cm = fxonnx.compile(model, (torch.randn(4, 3),), provider="cpu", verify=False)
    assert cm.captured.shapes.names == ("batch",)
    assert cm.captured.outputs[0].shape[0] == "batch//2"
    x = torch.randn(10, 3)
    torch.testing.assert_close(cm(x), model(x))


class FixedBatch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(4, 3) * 2  # the code fixes the batch at 4


def test_a_batch_the_code_fixes_gives_a_static_graph_that_says_so() -> None:
    with pytest.warns(UserWarning, match="fixed to 4"):
        cm = fxonnx.compile(FixedBatch(), (torch.randn(4, 3),), provider="cpu")
    assert not cm.captured.shapes.dynamic
    assert any("fixed to 4" in n and "x.reshape(4, 3)" in n for n in cm.report.notes)
    with pytest.raises(fxonnx.InputError, match=r"input 'x' dim 0 is 6, expected 4"):
        cm(torch.randn(6, 3))


class WithHidden(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + h[0]


def test_batch_dims_found_in_a_hidden_state_shaped_layers_by_batch() -> None:
    captured = capture(WithHidden(), (torch.randn(3, 4), torch.randn(1, 3, 4)))
    assert captured.user_inputs[0].shape == ("batch", 4)
    assert captured.user_inputs[1].shape == (1, "batch", 4)
    assert captured.shapes.symbol("batch").uses == (("x", 0), ("h", 1))


def test_bad_batch_dims_are_refused_with_the_input_names() -> None:
    with pytest.raises(fxonnx.CaptureError, match="inputs are"):
        capture(WithHidden(), (torch.randn(3, 4), torch.randn(1, 3, 4)), batch_dims={"y": 0})
    with pytest.raises(fxonnx.CaptureError, match="dims named 'batch' differ"):
        capture(WithHidden(), (torch.randn(3, 4), torch.randn(1, 3, 4)), batch_dims=(0, 0))


def test_static_capture_on_request() -> None:
    captured = capture(WithHidden(), (torch.randn(3, 4), torch.randn(1, 3, 4)), dynamic=False)
    assert not captured.shapes.dynamic
    assert captured.user_inputs[0].shape == (3, 4)


def test_non_module_is_refused() -> None:
    with pytest.raises(fxonnx.CaptureError, match="expected an nn.Module"):
        capture(lambda x: x, (torch.randn(2),))  # type: ignore[arg-type]


class InPlace(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        y.relu_()
        y.add_(1)
        return y


def test_in_place_ops_on_fresh_tensors_become_functional() -> None:
    captured = capture(InPlace(), (torch.randn(2, 3),))
    targets = {str(n.target) for n in captured.gm.graph.nodes if n.op == "call_function"}
    assert not any(t.endswith("_.default") or t.endswith("_.Tensor") for t in targets), targets
    x = torch.randn(5, 3)
    torch.testing.assert_close(captured.run_torch(x)[0], InPlace()(x))


class MutatesInput(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x[:, 0] = 0  # mutation of a graph input through a view: torch's functionalization
        return x * 2


def test_view_mutations_use_torchs_functionalization() -> None:
    captured = capture(MutatesInput(), (torch.randn(2, 3),))
    x = torch.randn(4, 3)
    want = MutatesInput()(x.clone())
    torch.testing.assert_close(captured.run_torch(x.clone())[0], want)


def test_an_output_named_like_an_input_gets_a_distinct_onnx_name() -> None:
    """``{"a": a + 1}`` made two ONNX values named ``a`` (onnxruntime: duplicate definition)."""

    class EchoKeys(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"a": a + 1, "b": b * 2, "c": a - b}

    a, b = torch.randn(2, 3), torch.randn(2, 3)
    compiled = fxonnx.compile(EchoKeys(), (a, b))
    assert [o.name for o in compiled.onnx_model.graph.output] == ["a.output", "b.output", "c"]
    out = compiled(a, b)
    assert list(out) == ["a", "b", "c"]
    torch.testing.assert_close(out["a"], a + 1)
    torch.testing.assert_close(out["c"], a - b)
