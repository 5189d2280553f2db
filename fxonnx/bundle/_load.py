"""Loading bundles without torch: check the manifest, every file's hash and every external-data
path, then run the model in onnxruntime on numpy arrays (or torch tensors, when the caller
already has torch)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .._checks import check_path
from .._dimexpr import bind
from .._errors import InputError
from ..runtime import Session, aborting_ops, float32_boundary
from ._errors import BundleError
from ._manifest import read, safe_relpath, sha256_bytes, verify_files


class Outputs(dict):
    """A model's outputs: a dict keyed by output name, in the model's output order. An int
    index gives the i-th output too (``out[0]``), and ``to_list()`` all of them in order."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int) and not isinstance(key, bool):
            return list(self.values())[key]
        return super().__getitem__(key)

    def to_list(self) -> list[Any]:
        return list(self.values())


class BundleModel:
    """A loaded bundle, called like the model: ``model(x)``, ``model(x=...)``.

    Inputs are numpy arrays or torch tensors, checked against the manifest (count, dtype, rank,
    static dims, one size per named dynamic dim across inputs) before onnxruntime sees them.
    Returns ``Outputs`` (a dict by output name that also takes int indices) holding numpy
    arrays, or torch CPU tensors when any input was a torch tensor. bfloat16 inputs and
    outputs cross as float32 numpy arrays (numpy has no bfloat16), as bfloat16 tensors.
    """

    def __init__(self, directory: Path, manifest: dict[str, Any], session: Session) -> None:
        self.directory = directory
        self.manifest = manifest
        self.session = session
        self._names = [t["name"] for t in manifest["inputs"]]
        self._out_names = [t["name"] for t in manifest["outputs"]]
        # (dtype, shape) per input -> True once the manifest and the session accepted it
        self._seen: dict[tuple, bool] = {}

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def provider(self) -> str:
        return self.session.provider

    @property
    def input_names(self) -> list[str]:
        return [t["name"] for t in self.manifest["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [t["name"] for t in self.manifest["outputs"]]

    def _gather(self, args: tuple, kwargs: dict) -> list[Any]:
        names = self._names
        if not kwargs and len(args) == len(names):
            return list(args)
        if len(args) > len(names):
            raise InputError(f"expected at most {len(names)} input(s) {names}, got {len(args)}")
        values: dict[str, Any] = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise InputError(f"unknown input {key!r}; the inputs are {names}")
            if key in values:
                raise InputError(f"input {key!r} given both by position and by name")
            values[key] = value
        missing = [n for n in names if n not in values]
        if missing:
            raise InputError(f"missing input(s) {missing}; the inputs are {names}")
        return [values[n] for n in names]

    def validate(self, arrays: Sequence[np.ndarray]) -> None:
        """Raise InputError naming the first input that does not fit the manifest."""
        for spec, arr in zip(self.manifest["inputs"], arrays, strict=True):
            name, want = spec["name"], spec["shape"]
            dtype = _numpy_dtype(spec["dtype"])
            if arr.dtype.name != dtype:
                crosses = " (bfloat16 crosses as float32)" if spec["dtype"] != dtype else ""
                raise InputError(
                    f"input {name!r} has dtype {arr.dtype.name}, expected {dtype}{crosses}",
                    hint=f"convert it first, e.g. x.astype(np.{dtype})",
                )
            if arr.ndim != len(want):
                raise InputError(
                    f"input {name!r} has {arr.ndim} dims {list(arr.shape)}, expected "
                    f"{len(want)} {want}"
                )
        bind(
            [s["name"] for s in self.manifest["inputs"]],
            [s["shape"] for s in self.manifest["inputs"]],
            [a.shape for a in arrays],
            self.manifest.get("dynamic_dims"),
        )

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """numpy arrays in input order -> numpy outputs in output order."""
        arrays = list(arrays)
        try:
            key: tuple | None = tuple([(a.dtype, a.shape) for a in arrays])
        except AttributeError:  # not an array: the checks below name it
            key = None
        if key is None or key not in self._seen:
            if len(arrays) != len(self._names):
                raise InputError(
                    f"expected {len(self._names)} input(s) {self._names}, got {len(arrays)}"
                )
            self.validate(arrays)
            self.session.check_numpy(arrays)
            if key is not None:
                if len(self._seen) >= 256:  # bounded, like the session's own cache
                    self._seen.clear()
                self._seen[key] = True
        return self.session.run_checked(arrays)

    def __call__(self, *args: Any, **kwargs: Any) -> Outputs:
        values = self._gather(args, kwargs)
        torch_in = False
        arrays = []
        for name, v in zip(self._names, values, strict=True):
            if type(v) is np.ndarray:
                arrays.append(v)
                continue
            if _is_torch(v):
                torch_in = True
                try:
                    v = v.detach().cpu()
                    v = (v.float() if str(v.dtype) == "torch.bfloat16" else v).numpy()
                except (TypeError, RuntimeError) as e:
                    raise InputError(f"input {name!r}: {e}") from e
            elif not isinstance(v, np.ndarray):
                raise InputError(
                    f"input {name!r} must be a numpy array or torch tensor, got {type(v).__name__}"
                )
            arrays.append(v)
        outs = self.run(arrays)
        if torch_in:
            torch = sys.modules["torch"]  # a tensor came in, so torch is already imported
            outs = [torch.from_numpy(np.asarray(o, order="C")) for o in outs]
            outs = [
                o.to(torch.bfloat16) if spec["dtype"] == "bfloat16" else o
                for o, spec in zip(outs, self.manifest["outputs"], strict=True)
            ]
        return Outputs(zip(self._out_names, outs, strict=True))

    def __repr__(self) -> str:
        return (
            f"BundleModel({self.name!r}, inputs={self.input_names}, "
            f"outputs={self.output_names}, provider={self.provider!r})"
        )


def _numpy_dtype(dtype: str) -> str:
    """The numpy dtype a manifest dtype crosses as: bfloat16 as float32 (numpy has none)."""
    return "float32" if dtype == "bfloat16" else dtype


def _is_torch(value: Any) -> bool:
    """A torch tensor, detected without importing torch."""
    torch = sys.modules.get("torch")
    if torch is None or not type(value).__module__.startswith("torch"):
        return False
    return isinstance(value, torch.Tensor)


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto in the model: initializers, sparse initializers and tensor attributes,
    in the main graph, its subgraphs and local functions."""

    def graph(g: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from g.initializer
        for s in g.sparse_initializer:
            yield s.values
            yield s.indices
        yield from nodes(g.node)

    def nodes(ns: Any) -> Iterator[onnx.TensorProto]:
        for n in ns:
            for a in n.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("sparse_tensor"):
                    yield a.sparse_tensor.values
                    yield a.sparse_tensor.indices
                for s in a.sparse_tensors:
                    yield s.values
                    yield s.indices
                if a.HasField("g"):
                    yield from graph(a.g)
                for g in a.graphs:
                    yield from graph(g)

    yield from graph(model.graph)
    for f in model.functions:
        yield from nodes(f.node)


def check_external_data(
    model: onnx.ModelProto, root: Path, model_dir: Path, allowed: set[str] | None
) -> list[str]:
    """Refuse external-data locations that are absolute, contain ``..``, resolve outside the
    bundle (symlinks), are missing, or (``allowed`` given) are not files the manifest hashes.
    Returns the locations, relative to ``root``."""
    found = []
    for t in _tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in t.external_data}
        location = entries.get("location", "")
        path = safe_relpath(model_dir, location, f"external data of tensor {t.name!r} at")
        resolved = path.resolve()
        if root.resolve() not in resolved.parents:
            raise BundleError(f"external data {location!r} resolves outside the bundle")
        rel = path.relative_to(root).as_posix()
        if not path.is_file():
            raise BundleError(f"external data file {rel!r} of tensor {t.name!r} is missing")
        if allowed is not None and rel not in allowed:
            raise BundleError(
                f"external data file {rel!r} of tensor {t.name!r} is not listed (hashed) in "
                "the manifest"
            )
        found.append(rel)
    return sorted(set(found))


def load(
    directory: str | os.PathLike,
    *,
    provider: str = "cpu",
    verify_hashes: bool = True,
    threads: int | None = None,
) -> BundleModel:
    """Load a bundle written by ``CompiledModel.save_bundle`` (either layout: the directory
    holding ``manifest.json``) without importing torch.

    Refuses, with BundleError: a malformed manifest or one from an unknown format version; a
    listed file that is missing or whose SHA-256 differs (``verify_hashes=False`` skips the
    hashes, deliberately); external data outside the bundle (absolute paths, ``..``, symlinks
    pointing out), all checked before onnxruntime opens the model. ``provider``: "cpu", "cuda"
    or "auto".
    """
    check_path(directory, "directory")
    root = Path(directory)
    manifest = read(root)
    model_name = manifest["model"]["file"]
    model_path = safe_relpath(root, model_name, "model file")
    if model_name not in manifest["files"]:
        raise BundleError(f"the manifest does not list (hash) its model file {model_name!r}")
    if verify_hashes:
        verify_files(root, manifest)
    try:
        data = model_path.read_bytes()
    except OSError as e:
        raise BundleError(f"could not read the model file {model_name!r}: {e}") from e
    if verify_hashes:
        digest, _ = sha256_bytes(data)
        if digest != manifest["files"][model_name]["sha256"]:
            raise BundleError(f"bundle file {model_name!r} changed while it was being loaded")
    try:
        model = onnx.ModelProto.FromString(data)
    except Exception as e:
        raise BundleError(f"{model_name!r} is not a valid ONNX model: {e}") from e
    allowed = set(manifest["files"]) if verify_hashes else None
    external = check_external_data(model, root, model_path.parent, allowed)
    # external data is read by onnxruntime from the path; without it the checked bytes are used
    source: bytes | str = os.fspath(model_path) if external else data
    runnable, boundary = float32_boundary(model)
    if boundary is not None:  # bfloat16 inputs/outputs: numpy has no such dtype
        if external:
            onnx.load_external_data_for_model(runnable, os.fspath(model_path.parent))
        source = runnable.SerializeToString()
    session = Session(source, provider=provider, threads=threads)
    session.refuse_empty = aborting_ops(model)
    _match_signature(manifest, session)
    return BundleModel(root, manifest, session)


def _match_signature(manifest: dict[str, Any], session: Session) -> None:
    for kind, specs, tensors in (
        ("input", session.inputs, manifest["inputs"]),
        ("output", session.outputs, manifest["outputs"]),
    ):
        got = [(s.name, s.dtype.name) for s in specs]
        want = [(t["name"], _numpy_dtype(t["dtype"])) for t in tensors]
        if got != want:
            raise BundleError(
                f"the manifest's {kind}s {want} do not match the model's {got}",
                hint="the manifest and model.onnx come from different exports",
            )
