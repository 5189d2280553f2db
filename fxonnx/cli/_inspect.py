"""``fxonnx inspect``: what is in an ONNX file (I/O, ops, parameters, FLOPs, metadata) or a
bundle directory (its manifest, too)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from .._dimexpr import METADATA_KEY, constraints_from_json, describe_all
from . import _stats
from ._common import EXIT_OK, UsageError, human, human_bytes, print_json, stdout

EPILOG = """examples:
  fxonnx inspect resnet18.onnx
  fxonnx inspect resnet18.onnx --json | jq .flops_batch1
  fxonnx inspect model.onnx --batch 8      # FLOPs at batch 8
  fxonnx inspect mlp-bundle                # a bundle: manifest, signature, verdict, files
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="describe an ONNX file or a bundle",
        description="Inputs/outputs (named dims are dynamic), op histogram, parameter count "
        "and size, estimated FLOPs of Conv/Gemm/MatMul, opset, producer and metadata. For a "
        "bundle directory: its manifest (versions, signature, batch, passes, the verification "
        "verdict stored at export, files) and graph statistics. Needs no torch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", metavar="FILE.onnx|DIR")
    p.add_argument("--batch", type=int, default=1, help="value of dynamic dims for FLOPs (1)")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    return p


def load_onnx(path: str) -> Any:
    import onnx

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"file not found: {path}")
    try:
        return onnx.load(file, load_external_data=False)
    except Exception as e:
        raise UsageError(f"{path} is not an ONNX model: {str(e).splitlines()[0][:200]}") from e


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    if Path(args.path).is_dir():
        from ._bundles import bundle_dir
        from ._inspect_bundle import run_bundle

        return run_bundle(bundle_dir(args.path), as_json=args.json, batch=args.batch)
    model = load_onnx(args.path)
    s = _stats.summary(model)
    if args.batch != 1:
        s["flops_batch"] = {"batch": args.batch, "flops": _stats.flops(model, args.batch)[0]}
    s["file"] = args.path
    s["file_bytes"] = Path(args.path).stat().st_size
    if args.json:
        print_json(s)
        return EXIT_OK
    con = stdout()
    con.print(f"[bold]{args.path}[/] ({human_bytes(s['file_bytes'])})")
    opsets = ", ".join(f"{k} {v}" for k, v in s["opset"].items())
    con.print(f"  producer    {s['producer'] or '?'}, IR version {s['ir_version']}, opset {opsets}")
    io = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("", "name", "dtype", "shape (named dims are dynamic)"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for v in s[kind]:
            dims = ", ".join(str(d) for d in v["shape"])
            io.add_row(kind[:-1], v["name"], v["dtype"], escape(f"[{dims}]"))
    con.print(io)
    dims = constraints_from_json(s["metadata"].get(METADATA_KEY))
    if dims:
        con.print(f"  dims        {escape(describe_all(dims))}")
    con.print(
        f"  parameters  {human(s['parameters'])} ({s['parameters']:,}), "
        f"{human_bytes(s['parameter_bytes'])}"
    )
    flops_line = f"  FLOPs       {human(s['flops_batch1'])} at batch 1 (Conv/Gemm/MatMul)"
    if "flops_batch" in s:
        flops_line += f", {human(s['flops_batch']['flops'])} at batch {args.batch}"
    if s["flops_unknown_nodes"]:
        flops_line += f"; {len(s['flops_unknown_nodes'])} node(s) with unknown shapes skipped"
    con.print(flops_line)
    con.print(f"  nodes       {s['nodes']} ({s['op_types']} op types)")
    ops = Table(show_edge=False, box=None, padding=(0, 2))
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, n in s["ops"].items():
        ops.add_row(op, str(n))
    con.print(ops)
    if s["metadata"]:
        con.print("  metadata")
        for k, v in s["metadata"].items():
            con.print(f"    {k} = {v}")
    return EXIT_OK
