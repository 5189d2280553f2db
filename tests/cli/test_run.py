"""fxonnx run DIR: .npy in, .npy out, hashes checked, no torch needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fxonnx.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _expected(bundle: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.fixture
def x_npy(tmp_path: Path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((5, 10)).astype(np.float32))
    return path


def test_run_writes_outputs(mlp_bundle: Path, x_npy: Path, tmp_path: Path, capsys) -> None:
    y = tmp_path / "y.npy"
    argv = ["run", str(mlp_bundle), "--input", str(x_npy), "-o", str(y), "--provider", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == f"wrote {y}  (output: float32 [5, 30])"
    np.testing.assert_allclose(np.load(y), _expected(mlp_bundle, np.load(x_npy)), rtol=1e-6)


def test_run_by_name_into_directory_json(mlp_bundle: Path, x_npy: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    argv = ["run", str(mlp_bundle), "--input", f"x={x_npy}", "-o", f"{out}/", "--json"]
    assert main([*argv, "--provider", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outputs"] == [
        {"name": "output", "path": str(out / "output.npy"), "dtype": "float32", "shape": [5, 30]}
    ]
    np.testing.assert_allclose(
        np.load(out / "output.npy"), _expected(mlp_bundle, np.load(x_npy)), rtol=1e-6
    )


def test_run_tampered_bundle_one_line(bundle_copy: Path, x_npy: Path, tmp_path: Path, capsys):
    (bundle_copy / "README.md").write_text("# edited\n")
    y = tmp_path / "y.npy"
    argv = ["run", str(bundle_copy), "--input", str(x_npy), "-o", str(y), "--provider", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bundle file 'README.md' was modified" in err
    assert not y.exists()
    # deliberately overridden: the model file itself is intact, so it runs
    assert main([*argv, "--no-verify-hashes"]) == 0
    captured = capsys.readouterr()
    assert "warning: file hashes not checked (--no-verify-hashes)" in captured.err
    np.testing.assert_allclose(np.load(y), _expected(bundle_copy, np.load(x_npy)), rtol=1e-6)


def test_run_errors(mlp_bundle: Path, x_npy: Path, tmp_path: Path, capsys) -> None:
    y = str(tmp_path / "y.npy")
    assert main(["run", str(tmp_path / "nope"), "--input", str(x_npy), "-o", y]) == 2
    assert "error: bundle directory not found" in capsys.readouterr().err
    assert main(["run", str(mlp_bundle), "--input", str(tmp_path / "x2.npy"), "-o", y]) == 2
    assert f"error: --input file not found: {tmp_path / 'x2.npy'}" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 10), np.float64))
    argv = ["run", str(mlp_bundle), "--input", str(bad), "-o", y, "--provider", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "input 'x' has dtype float64, expected float32" in err and err.count("\n") == 1
    argv = ["run", str(mlp_bundle), "--input", str(x_npy), "-o", y, "-o", y + "2"]
    assert main([*argv, "--provider", "cpu"]) == 1
    assert "the model has 1 output(s) ['output'] but 2 output path(s)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["run", str(mlp_bundle), "-o", y])  # --input is required
    assert e.value.code == 2


TORCH_FREE = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from fxonnx.cli import main
bundle, x, y = sys.argv[1:4]
codes = [
    main(["run", bundle, "--input", x, "-o", y, "--provider", "cpu", "-q"]),
    main(["inspect", bundle, "--json"]),
    main(["verify", bundle, "--provider", "cpu", "--json"]),
]
print(codes, file=sys.stderr)
sys.exit(max(codes))
"""


def test_run_inspect_verify_without_torch(mlp_bundle: Path, x_npy: Path, tmp_path: Path) -> None:
    y = tmp_path / "y.npy"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(mlp_bundle), str(x_npy), str(y)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "[0, 0, 0]"
    inspected, verified = r.stdout.split("\n}\n", 1)
    assert json.loads(inspected + "}")["manifest"]["name"] == "mlp-bundle"
    assert json.loads(verified)["ok"] is True
    np.testing.assert_allclose(np.load(y), _expected(mlp_bundle, np.load(x_npy)), rtol=1e-6)
