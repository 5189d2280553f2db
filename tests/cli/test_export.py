"""fxonnx export / inspect / models / verify, called in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fxonnx.cli import main


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for cmd in ("export", "verify", "bench", "inspect", "run", "models"):
        assert cmd in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from fxonnx import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"fxonnx {__version__}"


@pytest.mark.parametrize("cmd", ["export", "verify", "bench", "inspect", "run", "models"])
def test_help_has_examples(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"fxonnx {cmd}" in out
    assert "--debug" in out and "-q" in out


def test_export_summary(mlp_onnx: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", "mlp", "-o", str(out), "--provider", "cpu"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text
    # the default passes fold the mlp's two Linear layers (no activation between) into one Gemm
    assert "1 nodes" in text and "330 parameters" in text
    assert "verified    ok" in text and "x[batch, 10]" in text
    model = onnx.load(out)
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": np.ones((5, 10), np.float32)})
    assert y.shape == (5, 30)


def test_export_static_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.onnx"
    code = main(["export", "mlp", "-o", str(out), "--static", "--batch", "3", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dynamic_dims"] == {} and data["ok"] is True and data["verified"] is True
    assert data["inputs"] == [{"name": "x", "shape": [3, 10], "dtype": "float32"}]
    assert data["parameters"] == 330 and data["nodes"] == 1
    assert data["timings_ms"]["total"] > 0


def test_export_model_file_with_input_spec_and_no_verify(model_file: Path, tmp_path, capsys):
    out = tmp_path / "net.onnx"
    ref = f"{model_file}:make_module_only"
    assert main(["export", ref, "-o", str(out), "--input", "3x4:float32", "--no-verify"]) == 0
    assert "not verified" in capsys.readouterr().out
    assert out.is_file()


def test_export_factory_with_inputs_and_npy(model_file: Path, tmp_path, capsys):
    npy = tmp_path / "x.npy"
    np.save(npy, np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32))
    out = tmp_path / "net.onnx"
    code = main(["export", f"{model_file}:make", "-o", str(out), "--input", str(npy), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["inputs"][0]["shape"] == ["batch", 4]


def test_export_module_factory(tmp_path: Path, monkeypatch, capsys) -> None:
    pkg = tmp_path / "clipkg_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(
        "import torch\n\ndef build():\n    return torch.nn.Linear(2, 2), torch.randn(3, 2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "lin.onnx"
    assert main(["export", "clipkg_demo.nets:build", "-o", str(out), "-q"]) == 0
    assert out.is_file()


def test_inspect(mlp_onnx: Path, capsys) -> None:
    assert main(["inspect", str(mlp_onnx)]) == 0
    text = capsys.readouterr().out
    assert "[batch, 10]" in text and "Gemm" in text and "dims        batch >= 1" in text
    assert main(["inspect", str(mlp_onnx), "--json", "--batch", "4"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ops"] == {"Gemm": 1}  # Linear 10->20->30 folded by the default passes
    assert data["parameters"] == 330 and data["parameter_bytes"] == 330 * 4
    # one 10x30 Gemm: 2 * 10 * 30 FLOPs per sample
    assert data["flops_batch1"] == 2 * 10 * 30
    assert data["flops_batch"] == {"batch": 4, "flops": 4 * 2 * 10 * 30}
    assert data["inputs"][0]["shape"] == ["batch", 10]
    assert data["opset"]["ai.onnx"] >= 17 and data["producer"].startswith("fxonnx")


def test_inspect_conv_flops(tmp_path: Path, capsys) -> None:
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, groups=1)
    out = tmp_path / "conv.onnx"
    import fxonnx

    fxonnx.export(conv, (torch.randn(2, 3, 16, 16),), out)
    assert main(["inspect", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["flops_batch1"] == 2 * (8 * 16 * 16) * (3 * 3 * 3)


def test_inspect_counts_fused_conv_and_gemm_like_the_plain_ops(tmp_path: Path, capsys) -> None:
    """--ort-ops writes onnxruntime's FusedConv/FusedGemm; ONNX shape inference does not
    know them, so the FLOP estimate must still see a Conv and a Gemm."""
    out = tmp_path / "cnn.onnx"
    assert main(["export", "simple_cnn", "-o", str(out), "--provider", "cpu", "--ort-ops"]) == 0
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert "FusedConv" in ops
    plain = tmp_path / "plain.onnx"
    assert main(["export", "simple_cnn", "-o", str(plain), "--provider", "cpu"]) == 0
    assert "FusedConv" not in {n.op_type for n in onnx.load(plain).graph.node}
    capsys.readouterr()
    flops = []
    for path in (out, plain):
        assert main(["inspect", str(path), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert not data["flops_unknown_nodes"]
        flops.append(data["flops_batch1"])
    assert flops[0] == flops[1] > 0


def test_models(capsys) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    mlp = next(r for r in rows if r["name"] == "mlp")
    assert mlp["parameters"] == 850
    assert mlp["inputs"] == [{"name": "x", "shape": ["N", 10], "dtype": "float32", "batch_dim": 0}]
    assert main(["models", "--tag", "tutorial"]) == 0
    text = capsys.readouterr().out
    assert "mlp" in text and "x: Nx10 float32" in text and "resnet18" not in text


def test_verify_model(capsys) -> None:
    assert main(["verify", "mlp", "--json", "--provider", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["compared_with_eager"]
    assert [c["name"] for c in data["checks"]] == ["output", "output @batch=1"]


def test_verify_onnx_against_model(mlp_onnx: Path, capsys) -> None:
    assert main(["verify", str(mlp_onnx), "--model", "mlp", "--batch", "4"]) == 0
    text = capsys.readouterr().out
    assert "vs eager PyTorch" in text and "output @batch=1" in text
    assert "verification ok (3 checks" in text


def test_verify_onnx_against_wrong_model_fails(mlp_onnx: Path, capsys) -> None:
    # same signature, different weights: every output check must fail, exit code 1
    assert main(["verify", str(mlp_onnx), "--model", "mlp", "--json"]) == 0
    capsys.readouterr()
    other = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 30))
    import fxonnx

    path = mlp_onnx.parent / "other.onnx"
    fxonnx.export(other, (torch.randn(2, 10),), path)
    assert main(["verify", str(path), "--model", "mlp", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert not data["ok"]
    assert [c["ok"] for c in data["checks"]] == [True, False, False]


def test_verify_bare_onnx(mlp_onnx: Path, capsys) -> None:
    assert main(["verify", str(mlp_onnx)]) == 0
    text = capsys.readouterr().out
    assert "could not compare with eager" in text and "ran, shape [2, 30]" in text


def test_verify_broken_onnx_fails_checker(tmp_path: Path, capsys) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["nope"], ["y"])], "g", [x], [y])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph), path)
    assert main(["verify", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["checks"][0]["name"] == "onnx.checker" and not data["checks"][0]["ok"]


def test_verbose_logs_to_stderr_and_restores_logger(capsys) -> None:
    import logging

    logger = logging.getLogger("fxonnx")
    before = (logger.level, list(logger.handlers), logger.propagate)
    assert main(["verify", "mlp", "-vv", "--json"]) == 0
    captured = capsys.readouterr()
    assert "DEBUG fxonnx." in captured.err  # capture logs its node count at debug level
    assert json.loads(captured.out)["ok"]
    assert (logger.level, list(logger.handlers), logger.propagate) == before


def test_export_with_named_dynamic_dims(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bert.onnx"
    code = main(
        [
            "export",
            "bert_tiny",
            "-o",
            str(out),
            "--provider",
            "cpu",
            "--dynamic",
            "input_ids:0=batch,1=seq",
            "--dynamic",
            "attention_mask:0=batch,1=seq",
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["dynamic_dims"]) == {"batch", "seq"}
    assert data["inputs"][0]["shape"] == ["batch", "seq"]
    assert any(
        "@batch=" in c["name"] and "seq=" in c["name"] for c in data["verification"]["checks"]
    )
    assert main(["inspect", str(out)]) == 0
    assert "dims        batch >= 1; seq >= 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dynamic", "input_ids"], "is not INPUT:DIM=NAME"),
        (["--dynamic", "input_ids:x=seq"], "is not DIM=NAME"),
        (["--dynamic", "all", "--dynamic", "input_ids:0=batch"], "cannot be combined"),
        (["--dynamic", "nope:0=batch"], "unknown input 'nope'"),
        (["--static", "--dynamic", "all"], "contradict"),
    ],
)
def test_bad_dynamic_specs_are_usage_errors(
    args: list, message: str, tmp_path: Path, capsys
) -> None:
    code = main(["export", "bert_tiny", "-o", str(tmp_path / "x.onnx"), *args])
    assert code != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_the_readme_main_job_writes_standard_onnx(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """`fxonnx export resnet18 -o resnet18.onnx --provider cpu` (the README's main job), and a
    bundle: only standard-domain ops, so any ONNX runtime can load the files."""
    out, bundle = tmp_path / "resnet18.onnx", tmp_path / "bundle"
    argv = ["export", "resnet18", "-o", str(out), "--provider", "cpu", "--bundle", str(bundle)]
    assert main(argv) == 0
    capsys.readouterr()
    for path in (out, *bundle.rglob("*.onnx")):
        model = onnx.load(path)
        assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, path
        assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}, path
        assert "Conv" in {n.op_type for n in model.graph.node}


def test_factory_example_resized_by_batch(tmp_path: Path, capsys) -> None:
    factory = tmp_path / "fac.py"
    factory.write_text(
        "import torch\nfrom torch import nn\n\n"
        "def make():\n    torch.manual_seed(0)\n    return nn.Linear(4, 2), (torch.randn(3, 4),)\n"
    )
    out = tmp_path / "fac.onnx"
    code = main(["export", f"{factory}:make", "-o", str(out), "--batch", "5", "--json"])
    assert code == 0, capsys.readouterr().err
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["inputs"][0]["shape"] == ["batch", 4]
    assert data["verification"]["checks"][0]["name"] == "output"
    from fxonnx.cli._load import load_model

    (x,) = load_model(f"{factory}:make", None, 5).args
    assert x.shape == (5, 4)
