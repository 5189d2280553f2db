"""The bundle manifest: its JSON Schema, validation (jsonschema when installed, else a small
built-in interpreter of the same schema), reading with clear errors, and file hashing.

Nothing here imports torch or onnx: a serving process reads manifests with the standard library.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from ._errors import BundleError

FORMAT = "fxonnx.bundle"
FORMAT_VERSION = 2  # 2: per-name dynamic_dims replace the single batch
SUPPORTED_VERSIONS = frozenset({2})
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


@functools.cache
def schema() -> dict[str, Any]:
    """The manifest's JSON Schema, shipped as package data (``manifest.schema.json``)."""
    try:
        text = resources.files(__package__).joinpath("manifest.schema.json").read_text("utf-8")
    except FileNotFoundError as e:
        raise BundleError(
            "fxonnx/bundle/manifest.schema.json is missing from this installation",
            hint="the package was built without its package data; reinstall fxonnx",
        ) from e
    return json.loads(text)


def validate(manifest: Any, *, use_jsonschema: bool | None = None) -> None:
    """Raise BundleError naming the first place where ``manifest`` breaks the schema.

    ``use_jsonschema``: None uses the jsonschema package when it is installed and the built-in
    checker otherwise; True/False force one of them."""
    if use_jsonschema is None:
        try:
            import jsonschema  # noqa: F401
        except ImportError:
            use_jsonschema = False
        else:
            use_jsonschema = True
    if use_jsonschema:
        import jsonschema

        cls = jsonschema.validators.validator_for(schema())
        error = jsonschema.exceptions.best_match(cls(schema()).iter_errors(manifest))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            raise BundleError(f"manifest is malformed at {where}: {error.message}")
        return
    problem = _check(manifest, schema(), "", schema())
    if problem is not None:
        raise BundleError(f"manifest is malformed at {problem}")


_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
    "number": (int, float),
}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number" and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def _check(value: Any, node: dict[str, Any], where: str, root: dict[str, Any]) -> str | None:
    """The subset of JSON Schema the manifest schema uses: $ref, type, const, enum, required,
    properties, additionalProperties, minProperties, items, minItems, minLength, minimum,
    pattern. Returns "path: message" for the first violation, None when valid."""
    at = where or "(top level)"
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return _check(value, target, where, root)
    kinds = node.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return f"{at}: {value!r:.60} is not of type {' or '.join(kinds)}"
    if "const" in node and value != node["const"]:
        return f"{at}: {value!r:.60} should be {node['const']!r}"
    if "enum" in node and value not in node["enum"]:
        return f"{at}: {value!r:.60} is not one of {node['enum']}"
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0):
            return f"{at}: {value!r} is too short"
        if "pattern" in node and not re.search(node["pattern"], value):
            return f"{at}: {value!r:.60} does not match {node['pattern']!r}"
    if _is(value, "number") and "minimum" in node and value < node["minimum"]:
        return f"{at}: {value} is less than the minimum of {node['minimum']}"
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0):
            return f"{at}: should have at least {node['minItems']} item(s)"
        for i, item in enumerate(value):
            if "items" in node:
                problem = _check(item, node["items"], f"{where}/{i}".lstrip("/"), root)
                if problem:
                    return problem
    if isinstance(value, dict):
        for key in node.get("required", ()):
            if key not in value:
                return f"{at}: {key!r} is a required property"
        if len(value) < node.get("minProperties", 0):
            return f"{at}: should have at least {node['minProperties']} properties"
        props = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        for key, item in value.items():
            sub = f"{where}/{key}".lstrip("/")
            if key in props:
                problem = _check(item, props[key], sub, root)
            elif extra is False:
                problem = f"{at}: additional property {key!r} is not allowed"
            elif isinstance(extra, dict):
                problem = _check(item, extra, sub, root)
            else:
                problem = None
            if problem:
                return problem
    return None


def read(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``<directory>/manifest.json``: valid JSON, an fxonnx bundle, a known
    format version, then the schema."""
    path = Path(directory) / MANIFEST
    if not Path(directory).is_dir():
        raise BundleError(f"{directory} is not a directory", hint="give the bundle's directory")
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as e:
        raise BundleError(
            f"{directory} has no {MANIFEST}; it is not an fxonnx bundle",
            hint="write one with CompiledModel.save_bundle()",
        ) from e
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError(f"could not read {path}: {e}") from e
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is not an fxonnx bundle manifest (no 'format': {FORMAT!r})")
    version = manifest.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise BundleError(
            f"{path} has format version {version!r}; this fxonnx reads version(s) "
            f"{sorted(SUPPORTED_VERSIONS)}",
            hint="load it with the fxonnx version that wrote it, or re-save the bundle",
        )
    validate(manifest)
    return manifest


def safe_relpath(directory: Path, name: str, what: str) -> Path:
    """``directory / name`` after refusing absolute paths, ``..`` and anything (symlinks
    included) that resolves outside ``directory``."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or pure.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in pure.parts:
        raise BundleError(
            f"{what} {name!r} is not a plain relative path inside the bundle",
            hint="bundles only reference files inside their own directory",
        )
    path = directory / pure
    root = directory.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise BundleError(
            f"{what} {name!r} resolves to {resolved}, outside the bundle {root} "
            "(a symlink pointing out?)",
            hint="bundles only reference files inside their own directory",
        )
    return path


def sha256(path: Path) -> tuple[str, int]:
    """(hex digest, size in bytes) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def sha256_bytes(data: bytes) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), len(data)


def verify_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists must be inside the bundle, present, and hash as recorded."""
    for name, entry in manifest["files"].items():
        path = safe_relpath(directory, name, "file")
        if not path.is_file():
            raise BundleError(
                f"bundle file {name!r} is missing from {directory}",
                hint="the bundle is incomplete; copy it again or re-save it",
            )
        digest, size = sha256(path)
        if digest != entry["sha256"] or size != entry["size"]:
            raise BundleError(
                f"bundle file {name!r} was modified: sha256 {digest[:12]}... ({size} bytes), "
                f"the manifest records {entry['sha256'][:12]}... ({entry['size']} bytes)",
                hint="re-save the bundle, or pass verify_hashes=False to load it anyway",
            )
