"""``fxonnx run``: run a bundle on ``.npy`` files, without torch (``fxonnx.bundle.run_bundle_cli``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape

from ._bundles import MANIFEST, bundle_dir
from ._common import EXIT_FAILED, EXIT_OK, UsageError, print_json, stdout

EPILOG = """examples:
  fxonnx run mlp-bundle --input x.npy -o y.npy
  fxonnx run mlp-bundle --input x=x.npy -o out/         # out/<output name>.npy per output
  fxonnx run detector --input img.npy -o boxes.npy -o scores.npy
  fxonnx run repo/resnet18 --input x.npy -o y.npy --provider cuda

Input dtypes and shapes must match the bundle's signature (`fxonnx inspect DIR` shows it).
The SHA-256 of every bundle file is checked first: a modified bundle exits 1 unless
--no-verify-hashes says to run it anyway.
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a bundle on .npy files (torch not needed)",
        description="Load the bundle in DIR (written by `fxonnx export MODEL --bundle DIR`), "
        "check its manifest and file hashes, run it in onnxruntime on the --input arrays and "
        "write every output as .npy. Needs only onnxruntime and numpy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "bundle", metavar="DIR", help="the bundle (or a Triton repository holding one model)"
    )
    p.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="X.npy",
        help="one .npy per model input, in order, or NAME=X.npy",
    )
    p.add_argument(
        "-o",
        "--output",
        action="append",
        required=True,
        metavar="Y.npy|OUTDIR",
        help="one .npy per model output, in order, or one directory (created when it ends "
        "in /) that receives <output name>.npy",
    )
    p.add_argument(
        "--provider",
        choices=("cpu", "cuda", "auto"),
        default="auto",
        help="onnxruntime provider (auto: CUDA when it works, else the CPU)",
    )
    p.add_argument(
        "--no-verify-hashes",
        action="store_true",
        help="run even if the bundle's files differ from the hashes in its manifest",
    )
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    return p


def _input_file(spec: str) -> None:
    if Path(spec).is_file():
        return
    name, sep, path = spec.partition("=")
    if sep and Path(path).is_file():
        return
    raise UsageError(
        f"--input file not found: {path if sep else spec}",
        hint="give one .npy per model input, or NAME=X.npy",
    )


def run(args: argparse.Namespace) -> int:
    from ..bundle import run_bundle_cli

    directory = bundle_dir(args.bundle)
    for spec in args.input:
        _input_file(spec)
    outputs: str | list[str] = args.output[0] if len(args.output) == 1 else args.output
    if args.no_verify_hashes:
        print("warning: file hashes not checked (--no-verify-hashes)", file=sys.stderr)
    code = run_bundle_cli(
        directory,
        args.input,
        outputs,
        provider=args.provider,
        verify_hashes=not args.no_verify_hashes,
    )
    if code != 0:
        return EXIT_FAILED
    written = _written(directory, args.output)
    if args.json:
        print_json({"bundle": str(directory), "outputs": written})
    elif not args.quiet:
        con = stdout()
        for w in written:
            con.print(escape(f"wrote {w['path']}  ({w['name']}: {w['dtype']} {w['shape']})"))
    return EXIT_OK


def _written(directory: Path, outputs: list[str]) -> list[dict[str, Any]]:
    """The files ``run_bundle_cli`` wrote, with the shapes and dtypes they hold."""
    import numpy as np

    manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
    names = [t["name"] for t in manifest["outputs"]]
    if len(outputs) == 1 and Path(outputs[0]).is_dir():
        paths = [Path(outputs[0]) / f"{n}.npy" for n in names]
    else:
        paths = [Path(o) for o in outputs]
    rows = []
    for name, path in zip(names, paths, strict=True):
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        rows.append(
            {"name": name, "path": str(path), "dtype": array.dtype.name, "shape": list(array.shape)}
        )
    return rows
