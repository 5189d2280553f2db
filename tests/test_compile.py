"""The public API of the core pipeline, as the README promises it."""

from __future__ import annotations

import sys

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import fxonnx
from fxonnx.export import _registry

aten = torch.ops.aten


def test_the_readme_walkthrough(tmp_path) -> None:
    model, inputs = fxonnx.models.get("simple_cnn")
    cm = fxonnx.compile(model, inputs)
    y = cm(*inputs)
    torch.testing.assert_close(y, model(*inputs).detach(), rtol=1e-4, atol=1e-5)
    y16 = cm(torch.randn(16, 3, 56, 56))
    assert y16.shape == (16, 10)
    assert isinstance(cm.onnx_model, onnx.ModelProto)
    assert cm.report.ok and {"capture", "lower", "session", "verify"} <= set(cm.report.stages)
    cm.save(tmp_path / "cnn.onnx")
    proto = fxonnx.export(model, inputs, tmp_path / "cnn2.onnx")
    assert isinstance(proto, onnx.ModelProto)
    for path in ("cnn.onnx", "cnn2.onnx"):
        sess = ort.InferenceSession(str(tmp_path / path), providers=["CPUExecutionProvider"])
        (out,) = sess.run(None, {"x": inputs[0].numpy()})
        torch.testing.assert_close(torch.from_numpy(out), y, rtol=1e-4, atol=1e-5)


def test_onnx_names_follow_arguments_and_parameters() -> None:
    model, inputs = fxonnx.models.get("gru_lm")
    proto = fxonnx.export(model, inputs, batch_dims=(0, 1))
    assert [i.name for i in proto.graph.input] == ["tokens", "hidden"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 12
    initializers = {t.name for t in proto.graph.initializer}
    assert {"embedding.weight", "decoder.weight"} & initializers or any(
        "weight" in n for n in initializers
    )


class Structured(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
        h = self.a(x)
        return h, [h * 2, {"sum": h + y, "y": y}]


def test_output_structure_matches_eager_with_nested_containers() -> None:
    model = Structured().eval()
    x, y = torch.randn(2, 3), torch.randn(2, 2)
    cm = fxonnx.compile(model, (x,), {"y": y}, provider="cpu")
    got = cm(torch.randn(5, 3), y=torch.randn(5, 2))
    assert isinstance(got, tuple) and isinstance(got[1], list) and isinstance(got[1][1], dict)
    assert set(got[1][1]) == {"sum", "y"} and got[1][1]["sum"].shape == (5, 2)


def test_calling_with_a_different_structure_is_refused() -> None:
    cm = fxonnx.compile(Structured().eval(), (torch.randn(2, 3), torch.randn(2, 2)))
    with pytest.raises(fxonnx.InputError, match="different structure"):
        cm(torch.randn(2, 3))


class Special(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.special.bessel_j0(x)
        return torch.special.bessel_j1(y)


def test_unsupported_ops_are_all_listed_with_source_lines() -> None:
    with pytest.raises(fxonnx.UnsupportedOpError) as err:
        fxonnx.export(Special(), (torch.randn(2, 3),))
    ops = {op.target for op in err.value.ops}
    assert ops == {"aten.special_bessel_j0.default", "aten.special_bessel_j1.default"}
    message = str(err.value)
    assert "test_compile.py" in message and "torch.special.bessel_j0(x)" in message
    assert "fallback='torch.onnx'" in message


def test_fallback_hands_the_graph_to_torch_onnx_and_says_so(monkeypatch) -> None:
    monkeypatch.delitem(_registry.RULES, aten.relu.default)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    with pytest.raises(fxonnx.UnsupportedOpError):
        fxonnx.compile(model, (torch.randn(2, 4),))
    cm = fxonnx.compile(model, (torch.randn(2, 4),), fallback="torch.onnx", provider="cpu")
    assert any("torch.onnx" in note for note in cm.report.notes)
    assert cm.report.ok
    x = torch.randn(6, 4)
    torch.testing.assert_close(cm(x), model(x).detach(), rtol=1e-4, atol=1e-5)


def test_fallback_without_onnxscript_says_what_to_install(monkeypatch) -> None:
    monkeypatch.delitem(_registry.RULES, aten.relu.default)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # find_spec() then reports it missing
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    with pytest.raises(
        fxonnx.ExportError, match=r"needs the onnxscript package.*fxonnx\[torch-onnx\]"
    ):
        fxonnx.compile(model, (torch.randn(2, 4),), fallback="torch.onnx", provider="cpu")


def test_a_wrong_lowering_is_caught_by_verification(monkeypatch) -> None:
    def wrong_relu(ctx):  # a silent miscompile: sigmoid instead of relu
        return ctx.emit("Sigmoid", ctx.input(0))

    monkeypatch.setitem(_registry.RULES, aten.relu.default, wrong_relu)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    with pytest.raises(fxonnx.VerificationError, match="output output: max abs err") as err:
        fxonnx.compile(model, (torch.randn(2, 4),), provider="cpu")
    assert not err.value.report.ok


def test_external_data_mechanism_with_a_small_limit(tmp_path) -> None:
    from fxonnx.export import save_model

    model, inputs = fxonnx.models.get("lenet_cifar")
    proto = fxonnx.export(model, inputs)
    written = save_model(proto, tmp_path / "lenet.onnx", limit=1000)
    assert {p.name for p in written} == {"lenet.onnx", "lenet.onnx.data"}
    assert (tmp_path / "lenet.onnx").stat().st_size < 20_000
    sess = ort.InferenceSession(str(tmp_path / "lenet.onnx"), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"x": inputs[0].numpy()})
    torch.testing.assert_close(torch.from_numpy(out), model(*inputs).detach(), rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".fxonnx-*")), "temporary directory left behind"


def test_failed_save_leaves_no_file(tmp_path, monkeypatch) -> None:
    model, inputs = fxonnx.models.get("mlp")
    proto = fxonnx.export(model, inputs)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", boom)
    with pytest.raises(fxonnx.ExportError, match="could not write .*disk full"):
        fxonnx.export(model, inputs, tmp_path / "mlp.onnx")
    assert list(tmp_path.iterdir()) == []
    assert proto.graph.node


def test_training_mode_model_is_captured_in_eval_mode_and_restored() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    cm = fxonnx.compile(model, (torch.randn(2, 4),), provider="cpu")
    assert model.training
    assert any("training mode" in n for n in cm.report.notes)


def test_opset_is_selectable_and_checked() -> None:
    model, inputs = fxonnx.models.get("mlp")
    proto = fxonnx.export(model, inputs, opset=18)
    assert proto.opset_import[0].version == 18
    with pytest.raises(fxonnx.ExportError, match="opset 9 is not supported"):
        fxonnx.export(model, inputs, opset=9)


def test_import_fxonnx_does_not_import_torch(tmp_path) -> None:
    import subprocess
    import sys

    code = "import sys; sys.modules['torch'] = None; import fxonnx, fxonnx.runtime; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_saved_file_runs_in_the_onnx_reference_evaluator(tmp_path) -> None:  # noqa: ANN001
    """What compile saves by default is standard ONNX: onnx's own reference evaluator runs it
    and matches eager (Conv + Relu and Gemm + Relu would be FusedConv/FusedGemm otherwise)."""
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 5), nn.ReLU()
    ).eval()
    x = torch.randn(2, 3, 8, 8)
    cm = fxonnx.compile(model, (x,), provider="cpu")
    cm.save(tmp_path / "small.onnx")
    ref = ReferenceEvaluator(str(tmp_path / "small.onnx"))
    (got,) = ref.run(None, {cm.input_names[0]: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), model(x).detach(), rtol=1e-4, atol=1e-5)
