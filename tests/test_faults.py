"""Faults while saving and loading: a full disk, a read-only target, an interrupted write, a
corrupted model file, an onnxruntime session that cannot be created. Nothing half-written is
left, the previous file or bundle is intact, and the error says what happened.
(Bundle-specific refusals and interrupted bundle saves: tests/bundle/test_refusals.py.)"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import fxonnx
from fxonnx import ExportError, RuntimeSessionError
from fxonnx.bundle import BundleError
from fxonnx.bundle import _write as bundle_write
from fxonnx.cli import main
from fxonnx.export import _save
from fxonnx.runtime import Session, _session


@pytest.fixture(scope="module")
def cm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    return fxonnx.compile(model, (torch.randn(2, 4),), provider="cpu")


def _full_disk_after(nbytes: int, exc: BaseException):
    """An onnx.save_model that writes ``nbytes`` of the file, then fails with ``exc``."""

    def save(model: onnx.ModelProto, path: os.PathLike, *args: object, **kw: object) -> None:
        Path(path).write_bytes(model.SerializeToString()[:nbytes])
        raise exc

    return save


FAULTS = [
    pytest.param(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "No space left", id="ENOSPC"),
    pytest.param(
        OSError(errno.EACCES, os.strerror(errno.EACCES)), "Permission denied", id="EACCES"
    ),
]


@pytest.mark.parametrize(("exc", "words"), FAULTS)
@pytest.mark.parametrize("external_data", [False, True])
def test_a_failed_save_keeps_the_previous_file_and_leaves_nothing(
    cm, tmp_path: Path, monkeypatch, exc: OSError, words: str, external_data: bool
) -> None:
    target = tmp_path / "model.onnx"
    cm.save(target, external_data=external_data)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(_save.onnx, "save_model", _full_disk_after(10, exc))
    with pytest.raises(ExportError) as info:
        cm.save(target, external_data=external_data)
    assert f"could not write {target}" in str(info.value) and words in str(info.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no .fxonnx-* left


def test_export_to_a_full_disk_says_so(cm, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        _save.onnx, "save_model", _full_disk_after(0, OSError(errno.ENOSPC, "No space left"))
    )
    with pytest.raises(ExportError, match="No space left"):
        fxonnx.export(nn.Linear(4, 3), (torch.randn(2, 4),), tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_directory_is_refused_by_name(cm, tmp_path: Path, monkeypatch) -> None:
    def read_only(*args: object, **kw: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path))

    monkeypatch.setattr(_save.tempfile, "TemporaryDirectory", read_only)
    with pytest.raises(ExportError, match="Permission denied"):
        cm.save(tmp_path / "x.onnx")
    monkeypatch.setattr(bundle_write.tempfile, "mkdtemp", read_only)
    with pytest.raises(BundleError, match=r"could not write bundle .*Permission denied"):
        cm.save_bundle(tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_save_keeps_the_previous_file(cm, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "model.onnx"
    cm.save(target)
    before = target.read_bytes()
    monkeypatch.setattr(_save.onnx, "save_model", _full_disk_after(5, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # passed through, never turned into an error
        cm.save(target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize(("exc", "words"), FAULTS)
def test_a_bundle_overwrite_on_a_full_disk_keeps_the_old_bundle(
    cm, tmp_path: Path, monkeypatch, exc: OSError, words: str
) -> None:
    bundle = cm.save_bundle(tmp_path / "b")
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    monkeypatch.setattr(_save.onnx, "save_model", _full_disk_after(10, exc))
    with pytest.raises(BundleError) as info:
        cm.save_bundle(bundle, overwrite=True)
    msg = str(info.value)
    assert f"could not write bundle {bundle}" in msg and words in msg, msg
    assert len(msg.splitlines()) == 1, msg
    assert [p.name for p in tmp_path.iterdir()] == ["b"]
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
    assert fxonnx.load(bundle)(torch.randn(3, 4).numpy())[0].shape == (3, 3)


def _truncated(cm, tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    cm.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_truncated_model_is_refused_by_session_verify_and_inspect(
    cm, tmp_path: Path, capsys
) -> None:
    path = _truncated(cm, tmp_path)
    with pytest.raises(RuntimeSessionError, match="onnxruntime could not load the model"):
        Session(path)
    assert main(["inspect", str(path)]) == 2
    assert "is not an ONNX model" in capsys.readouterr().err
    assert main(["verify", str(path), "--provider", "cpu"]) == 1
    out = capsys.readouterr()
    assert "FAIL" in out.out and "Traceback" not in out.err


def test_a_truncated_model_in_a_bundle_is_refused(cm, tmp_path: Path) -> None:
    bundle = cm.save_bundle(tmp_path / "b")
    model = bundle / "model.onnx"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match="'model.onnx' was modified"):
        fxonnx.load(bundle)
    with pytest.raises((BundleError, RuntimeSessionError)) as info:
        fxonnx.load(bundle, verify_hashes=False)
    assert "model.onnx" in str(info.value) or "onnxruntime could not load" in str(info.value)


def test_a_session_that_fails_to_create_is_one_error(
    cm, tmp_path: Path, monkeypatch, capsys
) -> None:
    bundle = cm.save_bundle(tmp_path / "b")
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))

    def no_session(*args: object, **kw: object) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : out of memory\nmore")

    monkeypatch.setattr(_session.ort, "InferenceSession", no_session)
    want = "onnxruntime could not load the model: .*out of memory"
    with pytest.raises(RuntimeSessionError, match=want):
        fxonnx.compile(nn.Linear(4, 3), (torch.randn(2, 4),), provider="cpu")
    with pytest.raises(RuntimeSessionError, match=want):
        fxonnx.load(bundle)
    capsys.readouterr()
    argv = ["run", str(bundle), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]
    assert main([*argv, "--provider", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "out of memory" in err and "Traceback" not in err and not (tmp_path / "y.npy").exists()
