"""fxonnx export --bundle, inspect DIR and verify DIR, called in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import fxonnx
from fxonnx.cli import main
from fxonnx.cli._common import human


def _fails(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _leftovers(parent: Path) -> list[str]:
    """Temporary directories an interrupted or refused save could leave beside its target."""
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_export_bundle_summary_and_roundtrip(mlp_bundle: Path, capsys) -> None:
    out = mlp_bundle.parent / "again"
    assert main(["export", "mlp", "--bundle", str(out), "--provider", "cpu"]) == 0
    text = capsys.readouterr().out
    assert f"wrote fxonnx bundle {out} (README.md, model.onnx, manifest.json;" in text
    assert "verified    ok" in text and "bundle" in text.split("timings")[1]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "manifest.json", "model.onnx"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "again" and manifest["layout"] == "fxonnx"
    assert manifest["verification"]["ok"] and len(manifest["verification"]["checks"]) == 2
    x = np.random.default_rng(0).standard_normal((5, 10)).astype(np.float32)
    model = fxonnx.load(out)
    eager, _ = fxonnx.models.get("mlp", 2)
    want = eager(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(model(x)[0], want, rtol=1e-4, atol=1e-5)


def test_export_onnx_and_bundle_json(tmp_path: Path, capsys) -> None:
    onnx_out, bundle = tmp_path / "m.onnx", tmp_path / "b"
    argv = ["export", "mlp", "-o", str(onnx_out), "--bundle", str(bundle), "--json"]
    assert main([*argv, "--name", "served-mlp", "--no-verify"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["output"] == str(onnx_out) and onnx_out.is_file()
    b = data["bundle"]
    assert b["path"] == str(bundle) and b["format"] == "fxonnx" and b["name"] == "served-mlp"
    assert set(b["files"]) == {"README.md", "model.onnx", "manifest.json"}
    assert b["bytes"] == sum(p.stat().st_size for p in bundle.iterdir())
    assert (bundle / "model.onnx").read_bytes() == onnx_out.read_bytes()
    assert {"bundle", "save", "total"} <= set(data["timings_ms"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["verification"]["checks"] == []  # --no-verify is recorded as such


def test_export_triton_repository(tmp_path: Path, capsys) -> None:
    repo = tmp_path / "repo"
    assert main(["export", "mlp", "--bundle", str(repo), "--format", "triton", "-q"]) == 0
    assert f"wrote Triton model repository entry {repo / 'mlp'}" in capsys.readouterr().out
    entry = repo / "mlp"
    assert (entry / "1" / "model.onnx").is_file() and (entry / "manifest.json").is_file()
    config = (entry / "config.pbtxt").read_text()
    assert 'name: "mlp"' in config and 'backend: "onnxruntime"' in config
    # commands given the repository find its single model
    assert main(["inspect", str(repo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["layout"] == "triton"


def test_export_bundle_refusals(mlp_bundle: Path, tmp_path: Path, capsys) -> None:
    err = _fails(["export", "mlp", "--bundle", str(mlp_bundle)], 2, capsys)
    assert f"error: --bundle: {mlp_bundle} already exists" in err and "--overwrite" in err
    err = _fails(["export", "mlp", "--bundle", str(tmp_path / "no" / "b")], 2, capsys)
    assert "does not exist" in err
    err = _fails(["export", "mlp", "-o", str(tmp_path / "m.onnx"), "--format", "triton"], 2, capsys)
    assert "--format goes with --bundle DIR" in err
    err = _fails(["export", "mlp", "-o", str(tmp_path / "m.onnx"), "--overwrite"], 2, capsys)
    assert "--overwrite goes with --bundle DIR" in err
    with pytest.raises(SystemExit) as e:
        main(["export", "mlp", "--bundle", str(tmp_path / "b"), "--format", "tar"])
    assert e.value.code == 2
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "b").exists()


def test_export_overwrite_replaces_only_bundles(bundle_copy: Path, tmp_path: Path, capsys) -> None:
    before = json.loads((bundle_copy / "manifest.json").read_text())["created"]
    (bundle_copy / "stale.txt").write_text("from the old bundle")
    argv = ["export", "mlp", "--bundle", str(bundle_copy), "--overwrite", "--no-verify", "-q"]
    assert main(argv) == 0
    capsys.readouterr()
    assert not (bundle_copy / "stale.txt").exists()  # replaced as a whole, not merged
    after = json.loads((bundle_copy / "manifest.json").read_text())
    assert after["verification"]["checks"] == [] and after["created"] >= before
    # an unrelated non-empty directory is never replaced, even with --overwrite
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    err = _fails(["export", "mlp", "--bundle", str(other), "--overwrite", "-q"], 1, capsys)
    assert err.startswith("error: ") and "not a bundle; refusing to replace it" in err
    assert (other / "cat.jpg").read_bytes() == b"meow" and _leftovers(tmp_path) == []


def test_export_interrupted_bundle_leaves_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    from fxonnx.bundle import _write

    def disk_full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_write, "_write_text", disk_full)
    target = tmp_path / "b"
    err = _fails(
        ["export", "mlp", "--bundle", str(target), "-o", str(tmp_path / "m.onnx")], 1, capsys
    )
    assert "could not write bundle" in err and "No space left on device" in err
    assert not target.exists() and _leftovers(tmp_path) == []
    assert not (tmp_path / "m.onnx").exists()  # the bundle goes first; -o is not written either


def test_failed_verification_writes_no_bundle(tmp_path: Path, monkeypatch, capsys) -> None:
    import fxonnx.verify._verify as verify_mod

    real = verify_mod.compare_all

    def broken(names, want, got, **kw):  # a lowering bug: outputs off by one
        return real(names, want, [g + 1 for g in got], **kw)

    monkeypatch.setattr(verify_mod, "compare_all", broken)
    bundle, out = tmp_path / "b", tmp_path / "m.onnx"
    err = _fails(["export", "mlp", "--bundle", str(bundle), "-o", str(out)], 1, capsys)
    assert f"(nothing was written to {out} or {bundle})" in err
    assert list(tmp_path.iterdir()) == []


def test_inspect_bundle(mlp_bundle: Path, capsys) -> None:
    assert main(["inspect", str(mlp_bundle)]) == 0
    text = capsys.readouterr().out
    assert f"{mlp_bundle} (fxonnx bundle mlp-bundle, format 2, 2 files + manifest" in text
    assert "[batch, 10]" in text and "[batch, 30]" in text
    assert "verified    ok at export (2 checks against eager" in text
    assert "model.onnx" in text and "README.md" in text and "fxonnx verify DIR" in text
    assert main(["inspect", str(mlp_bundle), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    manifest = json.loads((mlp_bundle / "manifest.json").read_text())
    assert data["manifest"] == manifest
    assert data["graph"]["ops"] and data["graph"]["parameters"] > 0
    assert data["bytes"] == sum(p.stat().st_size for p in mlp_bundle.iterdir())
    assert "flops_batch" not in data["graph"]
    assert main(["inspect", str(mlp_bundle), "--batch", "8"]) == 0
    flops = data["graph"]["flops_batch1"]
    assert f", {human(8 * flops)} at batch 8" in capsys.readouterr().out


def test_inspect_not_a_bundle(tmp_path: Path, bundle_copy: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _fails(["inspect", str(empty)], 2, capsys)
    assert f"error: {empty} is not an fxonnx bundle (no manifest.json)" in err
    assert "fxonnx export MODEL --bundle DIR" in err
    (bundle_copy / "manifest.json").write_text('{"format": "fxonnx.bundle", "format_version": 99}')
    err = _fails(["inspect", str(bundle_copy)], 1, capsys)
    assert "format version 99" in err and len(err.strip().splitlines()) == 2  # error + hint


def test_verify_bundle(mlp_bundle: Path, capsys) -> None:
    assert main(["verify", str(mlp_bundle), "--provider", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "bundle" and not data["compared_with_eager"] and data["ok"]
    names = [c["name"] for c in data["checks"]]
    assert names == ["manifest", "file hashes", "stored verdict", "onnx.checker", "output (smoke)"]
    assert data["checks"][-1]["note"] == "ran, shape [2, 30]"
    assert main(["verify", str(mlp_bundle), "--provider", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "fxonnx verify DIR --model MODEL" in text and "verification ok (5 checks" in text


def test_verify_bundle_against_model(mlp_bundle: Path, capsys) -> None:
    assert main(["verify", str(mlp_bundle), "--model", "mlp", "--provider", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["compared_with_eager"] and data["ok"]
    eager = [c for c in data["checks"] if c["kind"] == "output"]
    assert [c["name"] for c in eager] == ["output", "output @batch=1"]
    assert all(0 < c["rtol"] and c["max_abs"] < 1e-4 for c in eager)


def test_verify_bundle_against_wrong_model_fails(mlp_bundle: Path, tmp_path: Path, capsys):
    other = tmp_path / "other.py"
    other.write_text(
        "import torch\n\ndef make():\n    torch.manual_seed(1)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 30))\n"
    )
    argv = ["verify", str(mlp_bundle), "--model", f"{other}:make", "--input", "2x10", "--json"]
    assert main(argv) == 1
    data = json.loads(capsys.readouterr().out)
    assert not data["ok"]
    assert [c["ok"] for c in data["checks"] if c["kind"] == "output"] == [False, False]
    assert all(c["ok"] for c in data["checks"] if c["kind"] != "output")


def test_verify_tampered_bundle(bundle_copy: Path, capsys) -> None:
    (bundle_copy / "README.md").write_text("# nothing to see here\n")
    assert main(["verify", str(bundle_copy), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["ok"]) for c in data["checks"]] == [
        ("manifest", True),
        ("file hashes", False),
    ]
    assert "bundle file 'README.md' was modified" in data["checks"][1]["note"]
    assert data["notes"] == ["not run: the bundle's files do not match their hashes"]


def test_verify_bundle_stored_failure(bundle_copy: Path, capsys) -> None:
    """A bundle whose manifest records a failed verification fails verify, even when the
    files are intact (the manifest's hash is not recorded, so editing it is not tampering)."""
    path = bundle_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["verification"]["ok"] = False
    manifest["verification"]["checks"][0]["ok"] = False
    path.write_text(json.dumps(manifest))
    assert main(["verify", str(bundle_copy), "--provider", "cpu", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    stored = next(c for c in data["checks"] if c["name"] == "stored verdict")
    assert not stored["ok"] and stored["note"] == "FAILED at export: output"


def test_verify_bundle_usage_errors(mlp_bundle: Path, capsys) -> None:
    err = _fails(["verify", str(mlp_bundle), "--static"], 2, capsys)
    assert "--static does not apply to a bundle" in err
    err = _fails(["verify", str(mlp_bundle), "--input", "2x10"], 2, capsys)
    assert "give --model too" in err
