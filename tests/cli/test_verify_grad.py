"""fxonnx verify MODEL --grad: gradients through fxonnx.check_gradients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fxonnx
from fxonnx.cli import main
from fxonnx.verify import Check, Report


def test_grad_checks_every_parameter_and_input(capsys) -> None:
    argv = ["verify", "mlp", "--grad", "--passes", "none", "--provider", "cpu", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"]
    grads = {c["name"]: c for c in data["checks"] if c["kind"] == "grad"}
    assert set(grads) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "x"}
    assert all(c["ok"] and c["atol"] > 0 for c in grads.values())
    directional = [c["name"] for c in data["checks"] if c["kind"] == "directional"]
    assert directional == ["d0 output", "d1 output"]
    assert {"grad", "directional"} <= set(data["stages_ms"])


def test_grad_table_and_failure_exit_code(monkeypatch, capsys) -> None:
    calls = []

    def fake(model, args, kwargs=None, **kw):  # a wrong backward for fc1.weight
        calls.append(kw)
        bad = Check("fc1.weight", "grad", False, 0.5, 2.0, 1e-4, 1e-5, "")
        return Report(checks=(bad,), notes=("fake gradients",))

    monkeypatch.setattr(fxonnx, "check_gradients", fake)
    argv = ["verify", "mlp", "--grad", "--grad-float64", "--skip", "cse", "--provider", "cpu"]
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert "FAIL │ grad fc1.weight" in text and "note: fake gradients" in text
    assert "verification FAILED: 1 of 3 checks" in text
    assert calls == [
        {"passes": "default", "skip": ["cse"], "dtype": torch.float64, "dynamic_dims": "auto"}
    ]


def test_grad_usage_errors(mlp_onnx: Path, mlp_bundle: Path, capsys) -> None:
    for target in (str(mlp_onnx), str(mlp_bundle)):
        assert main(["verify", target, "--model", "mlp", "--grad"]) == 2
        err = capsys.readouterr().err
        assert "--grad needs the PyTorch MODEL itself" in err and "fxonnx verify mlp --grad" in err
    assert main(["verify", "mlp", "--grad-float64"]) == 2
    assert "--grad-float64 goes with --grad" in capsys.readouterr().err
    assert main(["verify", "mlp", "--grad", "--prune", "0.5"]) == 2
    assert "--grad does not combine with --prune" in capsys.readouterr().err


def test_grad_in_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    assert "--grad" in out and "--grad-float64" in out and "fxonnx verify resnet18 --grad" in out
