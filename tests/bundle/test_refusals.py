"""Every way a bundle is refused: tampered, missing or escaping files, bad manifests, unknown
format versions, interrupted saves, overwrites without permission, and wrong inputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from bundle_helpers import compiled

import fxonnx
from fxonnx.bundle import BundleError, validate
from fxonnx.bundle import _load as load_module
from fxonnx.bundle import _write as write_module
from fxonnx.bundle._manifest import sha256

X = np.zeros((2, 1, 16, 16), np.float32)


def _rehash(bundle: Path, name: str) -> None:
    """Record ``name``'s new hash, as an attacker who also edits the manifest would."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    digest, size = sha256(bundle / name)
    manifest["files"][name] = {"sha256": digest, "size": size}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _point_external_data(bundle: Path, location: str) -> None:
    model = onnx.load(bundle / "model.onnx", load_external_data=False)
    moved = 0
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
                moved += 1
    assert moved > 0
    (bundle / "model.onnx").write_bytes(model.SerializeToString())
    _rehash(bundle, "model.onnx")


@pytest.fixture
def no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime must never be handed a model that failed the checks."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("onnxruntime saw the model")

    monkeypatch.setattr(load_module, "Session", refuse)


def test_loads_and_runs(bundle: Path) -> None:
    out = fxonnx.load(bundle)(X)
    assert out["output"].shape == (2, 10)


def test_tampered_file_is_refused_unless_hashes_are_skipped(bundle: Path) -> None:
    data = bundle / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="'model.onnx.data' was modified"):
        fxonnx.load(bundle)
    assert fxonnx.load(bundle, verify_hashes=False)(X)[0].shape == (2, 10)


def test_missing_file_is_refused(bundle: Path) -> None:
    (bundle / "README.md").unlink()
    with pytest.raises(BundleError, match="'README.md' is missing"):
        fxonnx.load(bundle)


@pytest.mark.parametrize("verify_hashes", [True, False])
@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_external_data_escaping_the_bundle_is_refused(
    bundle: Path, kind: str, verify_hashes: bool, no_session: None
) -> None:
    outside = bundle.parent / "outside.data"
    outside.write_bytes((bundle / "model.onnx.data").read_bytes())
    location = str(outside) if kind == "absolute" else "../outside.data"
    _point_external_data(bundle, location)
    with pytest.raises(BundleError, match="not a plain relative path inside the bundle"):
        fxonnx.load(bundle, verify_hashes=verify_hashes)


@pytest.mark.parametrize("verify_hashes", [True, False])
def test_symlink_pointing_out_of_the_bundle_is_refused(
    bundle: Path, verify_hashes: bool, no_session: None
) -> None:
    outside = bundle.parent / "outside.data"
    data = bundle / "model.onnx.data"
    os.replace(data, outside)
    data.symlink_to(outside)  # same bytes, so only the path check can catch it
    with pytest.raises(BundleError, match="outside the bundle"):
        fxonnx.load(bundle, verify_hashes=verify_hashes)


def test_external_data_not_in_the_manifest_is_refused(bundle: Path, no_session: None) -> None:
    os.replace(bundle / "model.onnx.data", bundle / "other.data")
    _point_external_data(bundle, "other.data")
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["files"]["model.onnx.data"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not listed"):
        fxonnx.load(bundle)


def test_bad_manifest_json_is_refused(bundle: Path) -> None:
    (bundle / "manifest.json").write_text('{"format": "fxonnx.bundle", ')
    with pytest.raises(BundleError, match="not valid JSON"):
        fxonnx.load(bundle)


def test_directory_without_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not an fxonnx bundle"):
        fxonnx.load(tmp_path)


def test_unknown_format_version_is_refused(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version 99"):
        fxonnx.load(bundle)


BREAKS = {
    "no inputs key": (lambda m: m.pop("inputs"), "inputs"),
    "bad hash": (lambda m: m["files"]["model.onnx"].update(sha256="xyz"), "sha256"),
    "shape of floats": (lambda m: m["inputs"][0].update(shape=[1.5]), "shape"),
    "absolute model path": (lambda m: m["model"].update(file="/etc/passwd"), "file"),
    "unknown key": (lambda m: m.update(surprise=1), "surprise"),
}


@pytest.mark.parametrize("use_jsonschema", [True, False])
@pytest.mark.parametrize("case", sorted(BREAKS))
def test_malformed_manifest_is_refused_by_both_validators(
    bundle: Path, case: str, use_jsonschema: bool
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    validate(manifest, use_jsonschema=use_jsonschema)  # the written one is valid
    breaker, where = BREAKS[case]
    breaker(manifest)
    with pytest.raises(BundleError, match="manifest is malformed") as info:
        validate(manifest, use_jsonschema=use_jsonschema)
    assert where in str(info.value)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest is malformed"):
        fxonnx.load(bundle)


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = fxonnx.bundle.schema()
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_loading_without_jsonschema_uses_the_builtin_checker(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    assert fxonnx.load(bundle)(X)[0].shape == (2, 10)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["outputs"] = []
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="outputs: should have at least 1 item"):
        fxonnx.load(bundle)


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_interrupted_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cm = compiled("mlp")

    def crash(*args: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(write_module, "model_card", crash)
    with pytest.raises(BundleError, match="disk full"):
        cm.save_bundle(tmp_path / "b")
    assert _entries(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_bundle(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (bundle / "manifest.json").read_bytes()
    cm = compiled("mlp")
    real = write_module._write_text
    calls = []

    def crash_on_manifest(path: Path, text: str) -> None:
        calls.append(path.name)
        if path.name == "manifest.json":
            raise KeyboardInterrupt  # not even an Exception: cleanup must still happen
        real(path, text)

    monkeypatch.setattr(write_module, "_write_text", crash_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        cm.save_bundle(bundle, overwrite=True)
    assert calls == ["README.md", "manifest.json"]
    assert _entries(bundle.parent) == ["b"]
    assert (bundle / "manifest.json").read_bytes() == before
    assert fxonnx.load(bundle)(X)[0].shape == (2, 10)


def test_overwrite_needs_permission(bundle: Path) -> None:
    cm = compiled("mlp")
    with pytest.raises(BundleError, match="already exists"):
        cm.save_bundle(bundle)
    assert fxonnx.load(bundle).input_names == ["x"]
    assert fxonnx.load(bundle)(X)[0].shape == (2, 10)  # still mnist_cnn
    cm.save_bundle(bundle, overwrite=True)
    out = fxonnx.load(bundle)(np.zeros((3, 10), np.float32))
    assert out[0].shape == (3, 30)  # now the mlp
    assert not (bundle / "model.onnx.data").exists()
    assert _entries(bundle.parent) == ["b"]


def test_missing_parent_directory_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist") as info:
        compiled("mlp").save_bundle(tmp_path / "no" / "such" / "b")
    assert "mkdir -p" in str(info.value)
    assert _entries(tmp_path) == []


def test_overwrite_never_replaces_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(BundleError, match="not a bundle"):
        compiled("mlp").save_bundle(tmp_path / "photos", overwrite=True)
    assert (tmp_path / "photos" / "cat.jpg").read_bytes() == b"meow"


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (X.astype(np.float64), "input 'x' has dtype float64, expected float32"),
        (X[0], "input 'x' has 3 dims"),
        (np.zeros((2, 1, 16, 17), np.float32), "input 'x' dim 3 is 17, expected 16"),
        ([[1.0]], "input 'x' must be a numpy array or torch tensor"),
    ],
)
def test_wrong_inputs_name_the_input(bundle: Path, array: object, message: str) -> None:
    model = fxonnx.load(bundle)
    with pytest.raises(fxonnx.InputError, match=message.replace("(", r"\(")):
        model(array)


def test_inputs_must_share_one_batch_size(tmp_path: Path) -> None:
    import torch

    class Add(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x * 2 + y

    ex = (torch.randn(2, 4), torch.randn(2, 4))
    model = fxonnx.load(fxonnx.compile(Add(), ex, provider="cpu").save_bundle(tmp_path / "a"))
    a, b = np.ones((3, 4), np.float32), np.ones((5, 4), np.float32)
    with pytest.raises(
        fxonnx.InputError,
        match="input 'y' dim 0 \\('batch'\\) is 5 but input 'x' dim 0 \\('batch'\\) is 3",
    ):
        model(a, b)
    with pytest.raises(fxonnx.InputError, match=r"missing input\(s\) \['y'\]"):
        model(a)
    out = model(y=b[:3], x=a)
    np.testing.assert_array_equal(out[0], np.full((3, 4), 3, np.float32))
