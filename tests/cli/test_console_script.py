"""The CLI as a user runs it: ``python -m fxonnx.cli`` and the installed ``fxonnx`` script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, **kw)


def test_python_m_export_and_inspect(tmp_path: Path) -> None:
    out = tmp_path / "mlp.onnx"
    r = _run([sys.executable, "-m", "fxonnx.cli", "export", "mlp", "-o", str(out), "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True and out.is_file()
    r = _run([sys.executable, "-m", "fxonnx.cli", "inspect", str(out), "--json"])
    assert r.returncode == 0 and json.loads(r.stdout)["ops"] == {"Gemm": 1}


def test_python_m_usage_error(tmp_path: Path) -> None:
    r = _run([sys.executable, "-m", "fxonnx.cli", "export", "mpl", "-o", str(tmp_path / "x.onnx")])
    assert r.returncode == 2
    assert r.stderr.startswith("error: unknown model 'mpl'") and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_installed_console_script() -> None:
    exe = shutil.which("fxonnx") or shutil.which("fxonnx", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the fxonnx console script is not installed (pip install -e .)")
    from fxonnx import __version__

    r = _run([exe, "--version"])
    assert r.returncode == 0 and r.stdout.strip() == f"fxonnx {__version__}"
    r = _run([exe, "models", "--json"])
    assert r.returncode == 0 and "mlp" in {m["name"] for m in json.loads(r.stdout)}
