"""run_bundle_cli: .npy files in, .npy files out, exit codes for the CLI to pass on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fxonnx
from fxonnx.bundle import run_bundle_cli


def test_run_writes_outputs_to_files_and_directories(bundle: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((3, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    want = fxonnx.load(bundle)(x)["output"]
    assert run_bundle_cli(bundle, [tmp_path / "x.npy"], [tmp_path / "y.npy"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    assert run_bundle_cli(bundle, [f"x={tmp_path / 'x.npy'}"], str(tmp_path / "outs") + "/") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "outs" / "output.npy"), want)


def test_run_reports_errors_as_one_line(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 1, 16, 16), np.float64))
    assert run_bundle_cli(bundle, [tmp_path / "x.npy"], [tmp_path / "y.npy"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fxonnx: error: input 'x' has dtype float64") and err.count("\n") == 1
    assert not (tmp_path / "y.npy").exists()
    assert run_bundle_cli(bundle, [tmp_path / "missing.npy"], tmp_path) == 1
    assert "could not read input" in capsys.readouterr().err
