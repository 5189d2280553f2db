"""``fxonnx export``: compile a model, verify it against eager and write the ONNX file and/or a
deployment bundle."""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from .._dimexpr import describe_all
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
from ._dynamic import add_dynamic_option, parse_dynamic
from ._load import LoadedModel, add_model_options, load_model
from ._passes import add_pass_options, pass_options, summary

EPILOG = """examples:
  fxonnx export resnet18 -o resnet18.onnx
  fxonnx export mlp -o mlp.onnx --batch 8 --static
  fxonnx export bert_tiny -o bert.onnx --dynamic input_ids:0=batch,1=seq \
      --dynamic attention_mask:0=batch,1=seq
  fxonnx export mypkg.models:make_net -o net.onnx --input 1x3x224x224:float32
  fxonnx export model.py:Net -o net.onnx --input int64[2,16] --no-verify
  fxonnx export mlp --bundle mlp-bundle                 # model.onnx + manifest.json + README.md
  fxonnx export resnet18 --bundle repo --format triton  # repo/resnet18/{config.pbtxt,1/model.onnx}
  fxonnx export mlp --bundle mlp-bundle --overwrite -o mlp.onnx
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
        "against eager PyTorch and write OUT and/or a bundle directory (the ONNX model, a "
        "manifest with hashes and the verification report, a model card; written atomically, "
        "run it with `fxonnx run`). MODEL is a zoo name (see `fxonnx models`), "
        "package.module:factory or path/to/file.py:factory_or_class; a factory returns a "
        "module or (module, example_inputs).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", metavar="OUT", help="the .onnx file to write")
    bundle = p.add_argument_group("bundle (give -o, --bundle or both)")
    bundle.add_argument("--bundle", metavar="DIR", help="write a deployment bundle to DIR")
    bundle.add_argument(
        "--format",
        choices=("fxonnx", "triton"),
        default=None,
        help="fxonnx: DIR is the bundle (default); triton: DIR is a Triton model repository "
        "and the model goes to DIR/NAME",
    )
    bundle.add_argument(
        "--name",
        metavar="NAME",
        help="the bundle's name (default: DIR's name; for triton MODEL when it is a plain "
        "name, else 'model')",
    )
    bundle.add_argument(
        "--overwrite", action="store_true", help="replace an existing bundle at the target"
    )
    add_model_options(p)
    p.add_argument("--static", action="store_true", help="fix every dim (--dynamic none)")
    add_dynamic_option(p)
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: latest known)")
    add_provider(p)
    add_fallback(p)
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with eager")
    p.add_argument(
        "--ort-ops",
        action="store_true",
        help="let fuse_activation write onnxruntime's com.microsoft FusedConv/FusedGemm into the "
        "file (default: standard ONNX only, which any runtime loads)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_pass_options(p)
    return p


def compile_loaded(
    loaded: LoadedModel,
    *,
    provider: str,
    opset: int | None,
    static: bool,
    verify: bool,
    fallback: str | None = None,
    passes: dict[str, Any] | None = None,
    dynamic: list[str] | None = None,
    runtime_ops: bool = False,
) -> Any:
    """``fxonnx.compile`` with the CLI's options (raises VerificationError on a mismatch);
    ``passes``: --passes/--skip/--prune as ``pass_options`` returns them; ``dynamic``: the
    --dynamic values (the zoo's batch dims when there are none)."""
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
        **_dims_options(loaded, static, dynamic),
        fallback=fallback,
        runtime_ops=runtime_ops,
        **(passes or {}),
    )


def _dims_options(loaded: LoadedModel, static: bool, dynamic: list[str] | None) -> dict:
    if static and dynamic:
        raise UsageError("--static and --dynamic contradict each other", hint="give one")
    if static:
        return {"dynamic_dims": None}
    if dynamic:
        return {"dynamic_dims": parse_dynamic(dynamic)}
    return {"batch_dims": loaded.batch_dims}


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _bundle_target(args: argparse.Namespace, model_name: str) -> tuple[Path, str | None] | None:
    """Where the bundle will go and its name, checked before the (slow) compile: the parent
    directory exists (fxonnx layout), the target is free unless --overwrite."""
    if args.bundle is None:
        for flag, value in (("--format", args.format), ("--name", args.name)):
            if value is not None:
                raise UsageError(f"{flag} goes with --bundle DIR")
        if args.overwrite:
            raise UsageError("--overwrite goes with --bundle DIR")
        return None
    directory = Path(args.bundle)
    if (args.format or "fxonnx") == "triton":
        name = args.name or (model_name if _PLAIN_NAME.match(model_name) else "model")
        if not _PLAIN_NAME.match(name):
            raise UsageError(f"--name {name!r}: a Triton model name is a plain directory name")
        target = directory / name
    else:
        name = args.name
        target = directory
        if not directory.absolute().parent.is_dir():
            raise UsageError(
                f"--bundle {args.bundle}: directory {directory.absolute().parent} does not exist"
            )
    if (target.exists() or target.is_symlink()) and not args.overwrite:
        raise UsageError(
            f"--bundle: {target} already exists", hint="--overwrite replaces it (atomically)"
        )
    return target, name


def run(args: argparse.Namespace) -> int:
    if args.output is None and args.bundle is None:
        raise UsageError(
            "nothing to write: give -o OUT.onnx, --bundle DIR or both",
            hint="fxonnx export MODEL -o model.onnx, or fxonnx export MODEL --bundle DIR",
        )
    out = Path(args.output) if args.output is not None else None
    if out is not None:
        if out.suffix != ".onnx":
            raise UsageError(f"-o {args.output}: the output must end in .onnx")
        if not out.parent.is_dir():
            raise UsageError(f"-o {args.output}: directory {out.parent} does not exist")
    model_name = args.model.rsplit(":", 1)[-1] if ":" in args.model else args.model
    bundle = _bundle_target(args, model_name)
    passes = pass_options(args)
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
                passes=passes,
                dynamic=args.dynamic,
                runtime_ops=args.ort_ops,
            )
    except VerificationError as e:
        if args.json:
            report = e.report.to_dict() if e.report is not None else {}
            print_json(
                {"model": loaded.name, "output": None, "bundle": None, "verification": report}
            )
        targets = " or ".join(str(t) for t in (out, bundle and bundle[0]) if t is not None)
        raise VerificationError(
            f"{e.message}\n  (nothing was written to {targets})",
            e.report,
            hint="--no-verify writes anyway",
        ) from e
    t1 = time.perf_counter()
    timings: dict[str, float] = {}
    bundle_info = None
    if bundle is not None:  # first: a refused bundle then leaves no -o file behind either
        written = compiled.save_bundle(
            args.bundle, overwrite=args.overwrite, fmt=args.format or "fxonnx", name=bundle[1]
        )
        bundle_info = _bundle_info(written, bundle[0], args.format or "fxonnx")
        timings["bundle"] = (time.perf_counter() - t1) * 1e3
    t2 = time.perf_counter()
    if out is not None:
        compiled.save(out)
        timings["save"] = (time.perf_counter() - t2) * 1e3
    t3 = time.perf_counter()
    stats = _stats.summary(compiled.onnx_model)
    report = compiled.report
    result = {
        "model": loaded.name,
        "output": None if out is None else str(out),
        "bytes": None if out is None else out.stat().st_size,
        "bundle": bundle_info,
        "provider": compiled.provider,
        "dynamic_dims": {s.name: s.constraint() for s in compiled.captured.shapes.symbols},
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
            **{k: round(v, 1) for k, v in timings.items()},
            "total": round((t3 - t0) * 1e3, 1),
        },
    }
    if args.json:
        print_json(result)
        return EXIT_OK if report.ok else EXIT_FAILED
    _print_summary(result, report, quiet=args.quiet)
    return EXIT_OK


def _bundle_info(directory: Path, shown: Path, fmt: str) -> dict[str, Any]:
    """Where the bundle went (``shown``: as the command line spelled it) and what is in it,
    from the manifest just written to ``directory``."""
    manifest = json.loads((directory / "manifest.json").read_text("utf-8"))
    files = {name: entry["size"] for name, entry in manifest["files"].items()}
    files["manifest.json"] = (directory / "manifest.json").stat().st_size
    return {
        "path": str(shown),
        "format": fmt,
        "name": manifest["name"],
        "files": files,
        "bytes": sum(files.values()),
    }


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
    if r["output"] is not None:
        con.print(f"wrote {r['output']} ({human_bytes(r['bytes'])})")
    if r["bundle"] is not None:
        b = r["bundle"]
        layout = "Triton model repository entry" if b["format"] == "triton" else "fxonnx bundle"
        con.print(
            f"wrote {layout} {b['path']} ({', '.join(escape(f) for f in b['files'])}; "
            f"{human_bytes(b['bytes'])})"
        )
    if quiet:
        return
    con.print(f"  model       {r['model']}  (opset {r['opset']})")
    con.print(f"  dims        {escape(describe_all(r['dynamic_dims']))}")
    con.print(f"  inputs      {ios}")
    con.print(f"  outputs     {outs}")
    con.print(
        f"  graph       {r['nodes']} nodes, {r['op_types']} op types, "
        f"{human(r['parameters'])} parameters, {human(r['flops_batch1'])} FLOPs at batch 1"
    )
    for i, line in enumerate(summary(report.to_dict()["passes"])):
        con.print(f"  {'passes' if i == 0 else '':<10}  {escape(line)}")
    con.print(f"  verified    {verdict} on {r['provider']}")
    timings = ", ".join(f"{k} {v:.0f} ms" for k, v in r["timings_ms"].items())
    con.print(f"  timings     {timings}", soft_wrap=True)
    for note in report.notes:
        con.print(f"  note        {escape(note)}")


def _shape(dims: list) -> str:
    return escape("[" + ", ".join(str(d) for d in dims) + "]")
