"""``fxonnx verify DIR``: a bundle's manifest (schema), file hashes, the verification verdict
stored at export, onnx.checker and a smoke run; with --model, outputs against eager PyTorch.

Without --model nothing here imports torch, so a serving host can verify what it received."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .._dimexpr import evaluate
from .._errors import FxonnxError
from ._bundles import model_path, read_manifest
from ._common import UsageError


def _check(name: str, kind: str, ok: bool, note: str) -> dict[str, Any]:
    """A row shaped like ``fxonnx.verify.Check.to_dict()`` for a yes/no check."""
    return {
        "name": name,
        "kind": kind,
        "ok": ok,
        "max_abs": 0.0,
        "max_rel": 0.0,
        "rtol": 0.0,
        "atol": 0.0,
        "note": note,
    }


def _stored(manifest: dict[str, Any]) -> dict[str, Any]:
    rep = manifest["verification"]
    checks = rep.get("checks", [])
    if not checks:
        return _check("stored verdict", "manifest", True, "not verified at export (--no-verify)")
    if not rep["ok"]:
        bad = [c.get("name", "?") for c in checks if not c.get("ok", False)]
        return _check("stored verdict", "manifest", False, f"FAILED at export: {', '.join(bad)}")
    return _check("stored verdict", "manifest", True, f"ok at export ({len(checks)} checks)")


def _checker(path: Path) -> dict[str, Any]:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001 - the checker's verdict is the result
        note = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        return _check("onnx.checker", "checker", False, note)
    return _check("onnx.checker", "checker", True, "full_check passed")


def _size(dim: Any, examples: dict[str, int]) -> int:
    """A manifest dim at the example sizes (8; "seq"; "2*seq"); 2 when it cannot be told."""
    value = evaluate(dim, examples)
    return value if value is not None and value > 0 else 2


def _smoke(model: Any, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Random inputs of the manifest's signature (the example batch): every output must come
    back with the manifest's dtype and static dims, and finite."""
    examples = {n: d["example"] for n, d in manifest["dynamic_dims"].items()}
    rng = np.random.default_rng(0)
    feeds = []
    for t in manifest["inputs"]:
        shape = tuple(_size(d, examples) for d in t["shape"])
        dtype = np.dtype(t["dtype"])
        if dtype.kind == "f":
            feeds.append(rng.standard_normal(shape).astype(dtype))
        elif dtype.kind == "b":
            feeds.append(rng.integers(0, 2, shape).astype(bool))
        else:  # small non-negative ints are valid ids for any embedding table
            feeds.append(rng.integers(0, 2, shape).astype(dtype))
    try:
        outs = model.run(feeds)
    except FxonnxError as e:
        return [_check("smoke run", "smoke", False, e.message.splitlines()[0][:200])]
    checks = []
    for spec, out in zip(manifest["outputs"], outs, strict=True):
        problems = []
        if out.dtype.name != spec["dtype"]:
            problems.append(f"dtype {out.dtype.name}, manifest says {spec['dtype']}")
        static = [
            (i, d) for i, d in enumerate(spec["shape"]) if isinstance(d, int) and i < out.ndim
        ]
        if out.ndim != len(spec["shape"]) or any(out.shape[i] != d for i, d in static):
            problems.append(f"shape {list(out.shape)}, manifest says {spec['shape']}")
        if out.dtype.kind == "f" and not np.isfinite(out).all():
            problems.append("non-finite values")
        note = f"ran, shape {list(out.shape)}" + ("; " + "; ".join(problems) if problems else "")
        checks.append(_check(f"{spec['name']} (smoke)", "smoke", not problems, note))
    return checks


def _against_model(model: Any, manifest: dict[str, Any], args: argparse.Namespace) -> list:
    """The bundle and the PyTorch model on the same inputs, and at second sizes of its
    dynamic dims; compared output by output."""
    import torch
    import torch.utils._pytree as pytree

    from ..verify import compare_all, resize_to, second_sizes, symbols_of
    from ._common import quiet_torch
    from ._load import load_model

    with quiet_torch(args.verbose):
        loaded = load_model(args.model, args.input, args.batch)

    def compare(inputs: tuple, suffix: str) -> list:
        tensors = [t for t in pytree.tree_leaves(inputs) if isinstance(t, torch.Tensor)]
        with torch.no_grad():
            want = [t for t in pytree.tree_leaves(loaded.module(*inputs)) if torch.is_tensor(t)]
        got = model(*tensors).to_list()
        return [c.to_dict() for c in compare_all(model.output_names, want, got, suffix=suffix)]

    checks = compare(loaded.args, "")
    tensors = [t for t in pytree.tree_leaves(loaded.args) if isinstance(t, torch.Tensor)]
    signatures = [t["shape"] for t in manifest["inputs"]]
    sizes = second_sizes(symbols_of(signatures, tensors, manifest["dynamic_dims"]))
    if sizes and len(signatures) == len(tensors):
        resized = resize_to(loaded.args, {}, signatures, sizes)[0]
        checks += compare(resized, " @" + ",".join(f"{n}={v}" for n, v in sizes.items()))
    return checks


def verify_bundle(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    from ..bundle import BundleError, load
    from ..bundle._manifest import verify_files

    checks: list[dict[str, Any]] = []
    notes: list[str] = []
    compared = args.model is not None
    result = {
        "target": str(directory),
        "mode": "bundle+model" if compared else "bundle",
        "compared_with_eager": compared,
        "provider": args.provider,
        "checks": checks,
        "notes": notes,
    }

    def done() -> dict[str, Any]:
        result["ok"] = all(c["ok"] for c in checks)
        return result

    try:
        manifest = read_manifest(directory)
    except BundleError as e:
        checks.append(_check("manifest", "schema", False, e.message))
        return done()
    checks.append(_check("manifest", "schema", True, f"format {manifest['format_version']}"))
    try:
        verify_files(directory, manifest)
    except BundleError as e:
        checks.append(_check("file hashes", "hashes", False, e.message))
        notes.append("not run: the bundle's files do not match their hashes")
        return done()
    checks.append(_check("file hashes", "hashes", True, f"{len(manifest['files'])} files match"))
    checks.append(_stored(manifest))
    try:
        checks.append(_checker(model_path(directory, manifest)))
        model = load(directory, provider=args.provider, verify_hashes=False)  # just checked
    except BundleError as e:
        checks.append(_check("load", "load", False, e.message))
        return done()
    result["provider"] = model.provider
    checks.extend(_smoke(model, manifest))
    if compared:
        checks.extend(_against_model(model, manifest, args))
    return done()


def check_args(args: argparse.Namespace) -> None:
    """Flags that only make sense when exporting a MODEL are usage errors for a bundle."""
    for flag, given in (
        ("--static", args.static),
        ("--dynamic", bool(args.dynamic)),
        ("--opset", args.opset is not None),
        ("--fallback", args.fallback is not None),
    ):
        if given:
            raise UsageError(f"{flag} does not apply to a bundle (it is already exported)")
    if (args.input or args.batch is not None) and args.model is None:
        raise UsageError("--input/--batch choose inputs for --model MODEL; give --model too")
