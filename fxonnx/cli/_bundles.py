"""Finding a bundle directory from a command-line path, and reading what it holds. Nothing here
imports torch: ``fxonnx run``, ``inspect`` and ``verify`` on bundles work in a serving
environment with only onnxruntime and numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import UsageError

MANIFEST = "manifest.json"


def find_bundle(path: str) -> Path | None:
    """``path`` when it holds a manifest; the single model of a Triton repository; else None."""
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / MANIFEST).is_file():
        return p
    entries = _entries(p)
    return entries[0] if len(entries) == 1 else None


def _entries(p: Path) -> list[Path]:
    return sorted(c for c in p.iterdir() if c.is_dir() and (c / MANIFEST).is_file())


def bundle_dir(path: str) -> Path:
    """The bundle directory ``path`` names, or a UsageError saying why it is not one."""
    found = find_bundle(path)
    if found is not None:
        return found
    p = Path(path)
    if not p.exists():
        raise UsageError(f"bundle directory not found: {path}")
    if not p.is_dir():
        raise UsageError(f"{path} is not a directory", hint="give the bundle's directory")
    entries = _entries(p)
    if entries:
        raise UsageError(
            f"{path} is a Triton repository with {len(entries)} models",
            hint="name one: " + ", ".join(str(e) for e in entries),
        )
    raise UsageError(
        f"{path} is not an fxonnx bundle (no {MANIFEST})",
        hint="write one with: fxonnx export MODEL --bundle DIR",
    )


def read_manifest(directory: Path) -> dict[str, Any]:
    """The checked manifest (valid JSON, known format version, schema); BundleError if not."""
    from ..bundle._manifest import read  # the bundle package's reader, shared with fxonnx.load

    return read(directory)


def model_path(directory: Path, manifest: dict[str, Any]) -> Path:
    """The manifest's model file, refused (BundleError) when it points outside the bundle."""
    from ..bundle._manifest import safe_relpath

    return safe_relpath(directory, manifest["model"]["file"], "model file")


def show_shape(shape: list[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
