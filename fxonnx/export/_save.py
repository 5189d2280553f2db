"""Writing ONNX files atomically, with external data for models past protobuf's 2 GB limit."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx

from .._checks import check_path
from .._errors import ExportError

PROTOBUF_LIMIT = 2**31 - 1


def _tensor_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
    size_threshold: int = 1024,
    limit: int = PROTOBUF_LIMIT,
) -> list[Path]:
    """Save ``model`` to ``path``; weights go to ``<name>.data`` beside it when ``external_data``
    is True, or (None, the default) when the model would pass ``limit`` bytes. The files are
    written in a temporary directory and moved into place, so a failure leaves nothing behind.
    Returns the files written."""
    check_path(path)
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a directory", hint="give a file name ending in .onnx")
    if not path.parent.exists():
        raise ExportError(f"directory {path.parent} does not exist")
    use_external = (
        _tensor_bytes(model) + 64 * 1024 * 1024 > limit if external_data is None else external_data
    )
    try:
        return _save_atomically(model, path, use_external, size_threshold)
    except OSError as e:  # disk full, read-only or vanished directory: nothing was replaced
        raise ExportError(
            f"could not write {path}: {e.strerror or e}",
            hint="the previous file, if any, is unchanged; free space or choose a writable path",
        ) from e


def _save_atomically(
    model: onnx.ModelProto, path: Path, use_external: bool, size_threshold: int
) -> list[Path]:
    data_name = path.name + ".data"
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".fxonnx-") as tmp:
        tmp_model = Path(tmp) / path.name
        to_save = model
        if use_external:
            to_save = onnx.ModelProto()
            to_save.CopyFrom(model)
            onnx.save_model(
                to_save,
                tmp_model,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=size_threshold,
            )
        else:
            try:
                onnx.save_model(to_save, tmp_model)
            except ValueError as e:
                raise ExportError(
                    f"could not serialise the model: {e}", hint="save with external_data=True"
                ) from e
        written = []
        for produced in sorted(Path(tmp).iterdir()):
            target = path.parent / produced.name
            os.replace(produced, target)
            written.append(target)
        stale = path.parent / data_name
        if not use_external and stale.exists():
            stale.unlink()  # an older export's weights would otherwise sit beside the new model
    return written
