"""Every error path: one readable line plus a hint on stderr, the right exit code, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fxonnx.cli import main


def _fails(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_unknown_model_suggests_closest(tmp_path: Path, capsys) -> None:
    err = _fails(["export", "mpl", "-o", str(tmp_path / "x.onnx")], 2, capsys)
    assert "error: unknown model 'mpl'" in err and "did you mean 'mlp'?" in err
    assert not (tmp_path / "x.onnx").exists()


def test_unknown_model_in_bench_and_verify(capsys) -> None:
    assert "did you mean 'resnet18'" in _fails(["bench", "resnet_18"], 2, capsys)
    assert "did you mean 'mlp'" in _fails(["verify", "mlpp"], 2, capsys)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("3xfoo", "bad --input spec '3xfoo'"),
        ("2x10:float99", "unknown dtype 'float99'"),
        ("int64[2,x]", "bad --input spec"),
        ("0x10", "dims must be >= 1"),
    ],
)
def test_bad_input_spec(spec: str, message: str, tmp_path: Path, capsys) -> None:
    err = _fails(["export", "mlp", "-o", str(tmp_path / "x.onnx"), "--input", spec], 2, capsys)
    assert message in err and "hint:" in err


def test_input_wrong_count_for_zoo_model(tmp_path: Path, capsys) -> None:
    argv = ["export", "mlp", "-o", str(tmp_path / "x.onnx"), "--input", "2x10", "--input", "2x10"]
    assert "takes 1 input(s) ['x'], got 2" in _fails(argv, 2, capsys)


def test_missing_files(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.onnx"
    assert f"file not found: {missing}" in _fails(["inspect", str(missing)], 2, capsys)
    assert "file not found" in _fails(["verify", str(missing)], 2, capsys)
    err = _fails(["export", f"{tmp_path}/nope.py:make", "-o", str(tmp_path / "a.onnx")], 2, capsys)
    assert "model file not found" in err
    err = _fails(
        ["export", "mlp", "-o", str(tmp_path / "a.onnx"), "--input", str(tmp_path / "x.npy")],
        2,
        capsys,
    )
    assert "--input file not found" in err
    err = _fails(["export", "mlp", "-o", str(tmp_path / "no" / "dir" / "a.onnx")], 2, capsys)
    assert "does not exist" in err


def test_model_file_with_syntax_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("import torch\n\ndef make(:\n    pass\n")
    err = _fails(["export", f"{bad}:make", "-o", str(tmp_path / "b.onnx")], 2, capsys)
    assert f"{bad}:3: syntax error" in err and "hint:" in err


def test_model_file_missing_factory_suggests(model_file: Path, tmp_path: Path, capsys) -> None:
    err = _fails(["export", f"{model_file}:mak", "-o", str(tmp_path / "b.onnx")], 2, capsys)
    assert "no attribute 'mak'" in err and "did you mean 'make'?" in err


def test_model_without_example_inputs(model_file: Path, tmp_path: Path, capsys) -> None:
    ref = f"{model_file}:make_module_only"
    err = _fails(["export", ref, "-o", str(tmp_path / "b.onnx")], 2, capsys)
    assert "comes with no example inputs" in err and "--input" in err


def test_bad_module_import(tmp_path: Path, capsys) -> None:
    err = _fails(["export", "no_such_pkg_xyz:make", "-o", str(tmp_path / "b.onnx")], 2, capsys)
    assert "cannot import module 'no_such_pkg_xyz'" in err


def test_bad_flags_exit_2(capsys) -> None:
    err = _fails(["export", "mlp"], 2, capsys)  # neither -o nor --bundle
    assert "error: nothing to write: give -o OUT.onnx, --bundle DIR or both" in err
    with pytest.raises(SystemExit) as e:
        main(["bench", "mlp", "--provider", "tpu"])
    assert e.value.code == 2
    assert "--against: unknown competitor 'tvm'" in _fails(
        ["bench", "mlp", "--against", "tvm"], 2, capsys
    )
    assert "--batch '1,x'" in _fails(["bench", "mlp", "--batch", "1,x"], 2, capsys)


def test_wrong_output_suffix(tmp_path: Path, capsys) -> None:
    assert "must end in .onnx" in _fails(["export", "mlp", "-o", str(tmp_path / "m.pb")], 2, capsys)


def test_export_failure_is_one_line_and_debug_shows_traceback(tmp_path, capsys) -> None:
    model = tmp_path / "bad_model.py"
    model.write_text(
        "import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
        "        raise RuntimeError('boom in forward')\n\n"
        "def make():\n    return M(), torch.randn(2, 3)\n"
    )
    argv = ["export", f"{model}:make", "-o", str(tmp_path / "m.onnx")]
    err = _fails(argv, 1, capsys)
    assert "boom in forward" in err and "--debug" in err
    assert main([*argv, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_verification_failure_exit_1_writes_nothing(tmp_path: Path, monkeypatch, capsys):
    import fxonnx.verify._verify as verify_mod
    from fxonnx.verify import Check

    real = verify_mod.compare_all

    def broken(names, want, got, **kw):  # a lowering bug: outputs off by one
        return real(names, want, [g + 1 for g in got], **kw)

    monkeypatch.setattr(verify_mod, "compare_all", broken)
    out = tmp_path / "m.onnx"
    err = _fails(["export", "mlp", "-o", str(out)], 1, capsys)
    assert "differs from eager" in err and "nothing was written" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert main(["verify", "mlp", "--json"]) == 1
    assert Check  # the report's checks come from the same Check type
    assert '"ok": false' in capsys.readouterr().out


def test_tensor_on_disk_pt(tmp_path: Path, capsys) -> None:
    pt = tmp_path / "x.pt"
    torch.save(torch.randn(3, 10), pt)
    assert main(["verify", "mlp", "--input", str(pt), "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out
    bad = tmp_path / "d.pt"
    torch.save({"a": 1}, bad)
    assert "not a tensor" in _fails(["verify", "mlp", "--input", str(bad)], 2, capsys)


def test_unsupported_ops_are_summarised_with_cli_hint(tmp_path: Path, monkeypatch, capsys):
    import fxonnx._compile
    from fxonnx._errors import UnsupportedOp, UnsupportedOpError

    ops = [
        UnsupportedOp("aten.frobnicate.default", f"frob_{i}", f"m.py:{i}: y = f(x)")
        for i in range(10)
    ]

    def fake_compile(*args, **kwargs):
        assert kwargs["fallback"] is None
        raise UnsupportedOpError(ops)

    monkeypatch.setattr(fxonnx._compile, "compile", fake_compile)
    argv = ["export", "mlp", "-o", str(tmp_path / "m.onnx")]
    err = _fails(argv, 1, capsys)
    assert err.startswith("error: 10 node(s) use ops with no ONNX lowering: aten.frobnicate")
    assert "frob_5" in err and "frob_6" not in err and "... 4 more (-v shows all)" in err
    assert "hint: rewrite those lines with supported ops, or pass --fallback torch.onnx" in err
    assert "fallback='torch.onnx'" not in err
    assert "frob_9" in _fails([*argv, "-v"], 1, capsys)


def test_fallback_flag_reaches_compile(tmp_path: Path, monkeypatch, capsys) -> None:
    import fxonnx._compile

    real = fxonnx._compile.compile
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["fallback"])
        return real(*args, **kwargs)

    monkeypatch.setattr(fxonnx._compile, "compile", spy)
    out = tmp_path / "m.onnx"
    assert main(["export", "mlp", "-o", str(out), "--fallback", "torch.onnx", "-q"]) == 0
    assert main(["verify", "mlp", "--fallback", "torch.onnx", "-q"]) == 0
    assert seen == ["torch.onnx", "torch.onnx"] and out.is_file()


def test_onnx_file_with_the_wrong_model_is_a_usage_error(mlp_onnx: Path, capsys) -> None:
    err = _fails(["verify", str(mlp_onnx), "--model", "simple_net"], 2, capsys)
    assert "input 'x' dim 1 is 2, expected 10" in err


def test_provider_cuda(tmp_path: Path, capsys) -> None:
    from fxonnx.runtime import cuda_status

    argv = ["export", "mlp", "-o", str(tmp_path / "m.onnx"), "--provider", "cuda", "--json"]
    if cuda_status()[0]:
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["provider"] == "cuda"
    else:
        err = _fails(argv, 1, capsys)
        assert "CUDA is not usable" in err and "--provider cpu" in err
        assert "provider='" not in err.split("hint:")[1]
