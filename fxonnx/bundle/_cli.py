"""``fxonnx run DIR --input x.npy -o y.npy``: the function the CLI wires up."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._errors import FxonnxError
from ._errors import BundleError
from ._load import load


def run_bundle_cli(
    directory: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    outputs: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    provider: str = "cpu",
    verify_hashes: bool = True,
) -> int:
    """Run a bundle on ``.npy`` files and write its outputs as ``.npy``; returns the exit code
    (0 ok, 1 on an fxonnx error, printed as one line on stderr).

    ``inputs``: one path per model input, in order, or ``name=path`` to name the input.
    ``outputs``: one path per model output, in order, or a single existing directory (or a
    path ending in "/") that receives ``<output name>.npy`` for each output.
    """
    try:
        model = load(directory, provider=provider, verify_hashes=verify_hashes)
        positional, named = [], {}
        for item in inputs:
            text = os.fspath(item)
            key, sep, rest = text.partition("=")
            if sep and key in model.input_names:
                named[key] = _read(rest)
            elif sep and not Path(text).exists() and Path(rest).exists():
                raise BundleError(
                    f"--input {text!r} names no input of the model: {key!r}",
                    hint=f"the inputs are {model.input_names}",
                )
            else:
                positional.append(_read(text))
        result = model(*positional, **named)
        targets = _targets(outputs, model.output_names)
        for target, array in zip(targets, result.to_list(), strict=True):
            try:
                np.save(target, array, allow_pickle=False)
            except OSError as e:
                raise BundleError(f"could not write output {os.fspath(target)!r}: {e}") from e
    except FxonnxError as e:
        sys.stderr.write(f"fxonnx: error: {e.message}\n")
        return 1
    return 0


def _read(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BundleError(f"could not read input {path!r}: {e}") from e


def _targets(
    outputs: Sequence[str | os.PathLike] | str | os.PathLike, names: list[str]
) -> list[Path]:
    if isinstance(outputs, (str, os.PathLike)):
        single = Path(outputs)
        if single.is_dir() or os.fspath(outputs).endswith(("/", os.sep)):
            single.mkdir(parents=True, exist_ok=True)
            return [single / f"{n}.npy" for n in names]
        outputs = [outputs]
    paths = [Path(p) for p in outputs]
    if len(paths) == 1 and paths[0].is_dir():
        return [paths[0] / f"{n}.npy" for n in names]
    if len(paths) != len(names):
        raise BundleError(
            f"the model has {len(names)} output(s) {names} but {len(paths)} output path(s) "
            "were given",
            hint="give one path per output, or a directory",
        )
    return paths
