"""Writing bundles: a directory with ``model.onnx``, ``manifest.json`` and a ``README.md`` model
card, or a Triton model repository entry. Everything is written in a temporary directory beside
the target and renamed into place, so an interrupted save never leaves a half-written bundle
under the target's name."""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx

from .._checks import check_path
from .._dimexpr import describe
from .._errors import FxonnxError
from .._version import __version__
from ._errors import BundleError
from ._manifest import FORMAT, FORMAT_VERSION, MANIFEST, sha256, validate
from ._triton import config_pbtxt

if TYPE_CHECKING:
    from .._compile import CompiledModel

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
README = "README.md"
EXTERNAL_DATA_BYTES = 100 * 1024 * 1024
"""Weights past this size go to ``model.onnx.data`` (external data) when not told otherwise."""


def save_bundle(
    compiled: CompiledModel,
    directory: str | os.PathLike,
    *,
    overwrite: bool = False,
    fmt: Literal["fxonnx", "triton"] = "fxonnx",
    name: str | None = None,
    benchmark: dict[str, Any] | None = None,
    external_data: bool | None = None,
    provider: str | None = None,
    max_batch_size: int = 64,
) -> Path:
    """Write ``compiled`` as a bundle and return the directory written.

    ``fmt="fxonnx"``: ``directory`` becomes the bundle (``model.onnx``, ``manifest.json``,
    ``README.md``; ``model.onnx.data`` when ``external_data`` is True, or None and the weights
    pass 100 MiB). ``fmt="triton"``: ``directory`` is a Triton model repository and the model
    goes to ``<directory>/<name>/`` (``config.pbtxt``, ``1/model.onnx``, ``manifest.json``),
    batching up to ``max_batch_size`` when every input and output has the batch at dim 0.
    ``name`` defaults to the directory's name (fxonnx) or "model" (triton). ``benchmark``: a
    JSON-serialisable summary stored in the manifest. ``provider`` ("cpu"/"cuda", default the
    compiled model's) is recorded, and picks the Triton instance kind. An existing target is
    replaced (old one renamed aside, new one renamed in, old one deleted) only with
    ``overwrite=True``.
    """
    if fmt not in ("fxonnx", "triton"):
        raise ValueError(f"fmt must be 'fxonnx' or 'triton', not {fmt!r}")
    provider = provider or compiled.provider
    if provider not in ("cpu", "cuda"):
        raise ValueError(f"provider must be 'cpu' or 'cuda', not {provider!r}")
    check_path(directory, "directory")
    directory = Path(directory).absolute()  # so that target.parent is a real directory
    if fmt == "triton":
        name = name or "model"
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise BundleError(f"Triton model name {name!r} must be a plain directory name")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / name
        model_file = f"1/{MODEL_FILE}"
    else:
        target = directory
        name = name or directory.resolve().name or "model"
        model_file = MODEL_FILE
    marker = "config.pbtxt" if fmt == "triton" else MANIFEST
    _check_target(target, overwrite, marker)

    def fill(tmp: Path) -> None:
        files = _write_model(compiled, tmp, model_file, external_data)
        manifest = _manifest(compiled, name, model_file, files, provider, benchmark, fmt)
        if fmt == "triton":
            text = config_pbtxt(manifest, name, provider=provider, max_batch_size=max_batch_size)
            _write_text(tmp / "config.pbtxt", text)
            files.append("config.pbtxt")
        else:
            _write_text(tmp / README, model_card(manifest))
            files.append(README)
        manifest["files"] = _hashes(tmp, files)
        validate(manifest)
        _write_text(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False) + "\n")

    _atomic_directory(target, fill)
    log.info("fxonnx: wrote %s bundle %s", fmt, target)
    return target


def _check_target(target: Path, overwrite: bool, marker: str) -> None:
    if not target.exists() and not target.is_symlink():
        if not target.parent.is_dir():
            raise BundleError(
                f"directory {target.parent} does not exist",
                hint=f"create it first (mkdir -p {target.parent}) or choose another path",
            )
        return
    if not overwrite:
        raise BundleError(
            f"{target} already exists", hint="pass overwrite=True to replace it, or pick another"
        )
    if target.is_symlink() or not target.is_dir():
        raise BundleError(f"{target} exists and is not a directory; refusing to replace it")
    if any(target.iterdir()) and not (target / marker).is_file():
        # overwrite=True replaces bundles, never an unrelated directory the user pointed at
        raise BundleError(
            f"{target} is a non-empty directory without {marker}, not a bundle; refusing to "
            "replace it",
            hint="remove it yourself or choose another directory",
        )


def _atomic_directory(target: Path, fill: Callable[[Path], None]) -> None:
    """Build the directory in ``.<name>.tmp-*`` beside ``target``, then rename it into place;
    an existing target is renamed aside first and deleted once the new one is in."""
    try:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    except OSError as e:  # a read-only or full parent directory
        raise BundleError(
            f"could not write bundle {target}: {e.strerror or e}",
            hint=f"{target.parent} must be writable",
        ) from e
    try:
        fill(tmp)
        _fsync_dir(tmp)
        if target.exists():
            aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
            aside.rmdir()  # only the unique name is wanted; rename needs it free
            os.replace(target, aside)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(aside, target)
                raise
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, (BundleError, ValueError)) or not isinstance(e, Exception):
            raise
        what = e.message if isinstance(e, FxonnxError) else f"{type(e).__name__}: {e}"
        raise BundleError(f"could not write bundle {target}: {what}") from e


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _write_model(
    compiled: CompiledModel, tmp: Path, model_file: str, external_data: bool | None
) -> list[str]:
    from ..export import save_model  # imports torch; writing bundles needs it anyway

    path = tmp / model_file
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data is None:
        weights = sum(len(t.raw_data) for t in compiled.onnx_model.graph.initializer)
        external_data = weights > EXTERNAL_DATA_BYTES
    written = save_model(compiled.onnx_model, path, external_data=external_data)
    return sorted(p.relative_to(tmp).as_posix() for p in written)


def _hashes(root: Path, files: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in sorted(files):
        digest, size = sha256(root / name)
        out[name] = {"sha256": digest, "size": size}
    return out


def _dtype_name(elem_type: int) -> str:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _signature(values: Any) -> list[dict[str, Any]]:
    """Names, numpy dtype names and dims (int, or the dim's name, e.g. "batch") of graph I/O."""
    out = []
    for v in values:
        t = v.type.tensor_type
        dims: list[int | str | None] = []
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)
        out.append({"name": v.name, "dtype": _dtype_name(t.elem_type), "shape": dims})
    return out


def _versions() -> dict[str, str | None]:
    import onnxruntime

    torch = sys.modules.get("torch")
    return {
        "fxonnx": __version__,
        "torch": getattr(torch, "__version__", None),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _manifest(
    compiled: CompiledModel,
    name: str,
    model_file: str,
    files: list[str],
    provider: str,
    benchmark: dict[str, Any] | None,
    fmt: str,
) -> dict[str, Any]:
    model = compiled.onnx_model
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = _signature(v for v in graph.input if v.name not in initializers)
    want = [s.name for s in compiled.captured.user_inputs]
    if [i["name"] for i in inputs] != want:
        raise BundleError(
            f"the ONNX graph's inputs {[i['name'] for i in inputs]} differ from the compiled "
            f"model's {want}"
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    shapes = compiled.captured.shapes
    report = compiled.report.to_dict()
    if benchmark is not None:
        try:
            benchmark = json.loads(json.dumps(benchmark))
        except (TypeError, ValueError) as e:
            raise BundleError(f"benchmark must be JSON-serialisable: {e}") from e
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layout": fmt,
        "name": name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "model": {
            "file": model_file,
            "opset": int(opset or 0),
            "ir_version": int(model.ir_version),
            "provider": provider,
            "external_data": [f for f in files if f != model_file],
        },
        "inputs": inputs,
        "outputs": _signature(graph.output),
        "dynamic_dims": {
            s.name: {
                "example": s.example,
                **s.constraint(),
                "uses": [list(u) for u in s.uses],
            }
            for s in shapes.symbols
        },
        "passes": list(report.get("passes", [])),
        "verification": report,
        "benchmark": benchmark,
        "files": {},
    }


def _dims_card(manifest: dict[str, Any]) -> list[str]:
    dims = manifest.get("dynamic_dims") or {}
    if not dims:
        return ["Every dim is static."]
    lines = ["A named dim takes any size the graph supports, the same for every tensor in a call:"]
    lines += [f"- `{n}`: {describe(n, c)}" for n, c in dims.items()]
    return lines


def _show_shape(shape: list[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def model_card(manifest: dict[str, Any]) -> str:
    """A short human-readable README generated from the manifest."""
    v = manifest["versions"]
    rep = manifest["verification"]
    checks = rep.get("checks", [])
    worst = max((c.get("max_abs") or 0.0 for c in checks), default=0.0)
    lines = [
        f"# {manifest['name']}",
        "",
        f"An fxonnx bundle (format {manifest['format_version']}): an ONNX model (opset "
        f"{manifest['model']['opset']}) exported from PyTorch with fxonnx {v['fxonnx']}"
        + (f" and torch {v['torch']}" if v.get("torch") else "")
        + f", checked against eager PyTorch, created {manifest['created']}.",
        "",
        "## Inputs",
        "",
        "| name | dtype | shape |",
        "|---|---|---|",
        *(
            f"| `{t['name']}` | {t['dtype']} | {_show_shape(t['shape'])} |"
            for t in manifest["inputs"]
        ),
        "",
        "## Outputs",
        "",
        "| name | dtype | shape |",
        "|---|---|---|",
        *(
            f"| `{t['name']}` | {t['dtype']} | {_show_shape(t['shape'])} |"
            for t in manifest["outputs"]
        ),
        "",
        *_dims_card(manifest),
        "",
        "## Verification",
        "",
        f"{'passed' if rep.get('ok') else 'FAILED'}: {len(checks)} check(s) against eager PyTorch"
        + (f", worst absolute error {worst:.3g}." if checks else "."),
    ]
    if manifest.get("benchmark"):
        lines += ["", "## Benchmark", ""]
        lines += [f"- {k}: {val}" for k, val in manifest["benchmark"].items()]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import fxonnx",
        f'model = fxonnx.load("{manifest["name"]}")  # numpy or torch tensors in',
        "outputs = model(*arrays)  # dict by output name; outputs[0] works too",
        "```",
        "",
        f"Runtime: onnxruntime {v['onnxruntime']}, onnx {v['onnx']}, numpy {v['numpy']}, "
        f"Python {v['python']}. File hashes are in `manifest.json` and checked on load.",
        "",
    ]
    return "\n".join(lines)
