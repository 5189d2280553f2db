"""``fxonnx export``: compile a model, verify it against eager and write the ONNX file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from .._errors import VerificationError
from . import _stats
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    human,
    human_bytes,
    print_json,
    quiet_torch,
    stdout,
)
from ._load import LoadedModel, add_model_options, load_model

EPILOG = """examples:
  fxonnx export resnet18 -o resnet18.onnx
  fxonnx export mlp -o mlp.onnx --batch 8 --static
  fxonnx export mypkg.models:make_net -o net.onnx --input 1x3x224x224:float32
  fxonnx export model.py:Net -o net.onnx --input int64[2,16] --no-verify
"""


def add_provider(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        choices=("cpu", "cuda", "auto"),
        default="auto",
        help="onnxruntime provider (auto: CUDA when it works, else the CPU)",
    )


def add_fallback(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fallback",
        choices=("torch.onnx",),
        default=None,
        help="hand graphs with unsupported ops to torch.onnx.export instead of failing",
    )


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        parents=[common],
        help="export a model to ONNX, verified against eager",
        description="Capture MODEL with torch.fx, lower it to ONNX, check it in onnxruntime "
        "against eager PyTorch and write OUT. MODEL is a zoo name (see `fxonnx models`), "
        "package.module:factory or path/to/file.py:factory_or_class; a factory returns a "
        "module or (module, example_inputs).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the .onnx file to write")
    add_model_options(p)
    p.add_argument("--static", action="store_true", help="fix every dim, batch included")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: latest known)")
    add_provider(p)
    add_fallback(p)
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with eager")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def compile_loaded(
    loaded: LoadedModel,
    *,
    provider: str,
    opset: int | None,
    static: bool,
    verify: bool,
    fallback: str | None = None,
) -> Any:
    """``fxonnx.compile`` with the CLI's options (raises VerificationError on a mismatch)."""
    from .._compile import compile as fx_compile
    from ..export import DEFAULT_OPSET

    if opset is not None and opset < 7:
        raise UsageError(f"--opset {opset} is too old", hint=f"the default is {DEFAULT_OPSET}")
    return fx_compile(
        loaded.module,
        loaded.args,
        provider=provider,
        opset=opset or DEFAULT_OPSET,
        verify=verify,
        batch_dims=loaded.batch_dims,
        dynamic=not static,
        fallback=fallback,
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.suffix != ".onnx":
        raise UsageError(f"-o {args.output}: the output must end in .onnx")
    if not out.parent.is_dir():
        raise UsageError(f"-o {args.output}: directory {out.parent} does not exist")
    loaded = load_model(args.model, args.input, args.batch)
    t0 = time.perf_counter()
    try:
        with quiet_torch(args.verbose):
            compiled = compile_loaded(
                loaded,
                provider=args.provider,
                opset=args.opset,
                static=args.static,
                verify=not args.no_verify,
                fallback=args.fallback,
            )
    except VerificationError as e:
        if args.json:
            report = e.report.to_dict() if e.report is not None else {}
            print_json({"model": loaded.name, "output": None, "verification": report})
        raise VerificationError(
            f"{e.message}\n  (nothing was written to {out})",
            e.report,
            hint="--no-verify writes the file anyway",
        ) from e
    t1 = time.perf_counter()
    compiled.save(out)
    t2 = time.perf_counter()
    stats = _stats.summary(compiled.onnx_model)
    report = compiled.report
    result = {
        "model": loaded.name,
        "output": str(out),
        "bytes": out.stat().st_size,
        "provider": compiled.provider,
        "batch": "dynamic" if compiled.captured.batch.dynamic else "static",
        "batch_note": compiled.captured.batch.reason,
        "inputs": stats["inputs"],
        "outputs": stats["outputs"],
        "nodes": stats["nodes"],
        "op_types": stats["op_types"],
        "parameters": stats["parameters"],
        "flops_batch1": stats["flops_batch1"],
        "opset": stats["opset"].get("ai.onnx"),
        "verified": report.verified,
        "ok": report.ok,
        "verification": report.to_dict(),
        "timings_ms": {
            **{k: round(v, 1) for k, v in report.stages.items()},
            "save": round((t2 - t1) * 1e3, 1),
            "total": round((t2 - t0) * 1e3, 1),
        },
    }
    if args.json:
        print_json(result)
        return EXIT_OK if report.ok else EXIT_FAILED
    _print_summary(result, report, quiet=args.quiet)
    return EXIT_OK


def _print_summary(r: dict[str, Any], report: Any, *, quiet: bool) -> None:
    con = stdout()
    verdict = (
        f"[green]ok[/] ({len(report.checks)} checks, worst rel err "
        f"{max((c.max_rel for c in report.checks), default=0):.1e})"
        if report.verified
        else "[yellow]not verified[/] (--no-verify)"
    )
    ios = ", ".join(f"{i['name']}{_shape(i['shape'])}" for i in r["inputs"])
    outs = ", ".join(f"{o['name']}{_shape(o['shape'])}" for o in r["outputs"])
    con.print(f"wrote {r['output']} ({human_bytes(r['bytes'])})")
    if quiet:
        return
    con.print(f"  model       {r['model']}  ({r['batch']} batch, opset {r['opset']})")
    if r["batch_note"]:
        con.print(f"  batch note  {r['batch_note']}")
    con.print(f"  inputs      {ios}")
    con.print(f"  outputs     {outs}")
    con.print(
        f"  graph       {r['nodes']} nodes, {r['op_types']} op types, "
        f"{human(r['parameters'])} parameters, {human(r['flops_batch1'])} FLOPs at batch 1"
    )
    con.print(f"  verified    {verdict} on {r['provider']}")
    con.print("  timings     " + ", ".join(f"{k} {v:.0f} ms" for k, v in r["timings_ms"].items()))
    for note in report.notes:
        con.print(f"  note        {escape(note)}")


def _shape(dims: list) -> str:
    return escape("[" + ", ".join(str(d) for d in dims) + "]")
