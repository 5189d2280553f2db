"""``fxonnx verify``: compare a model (or an ONNX file, or a bundle) with eager PyTorch, as a
table."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from ._common import EXIT_FAILED, EXIT_OK, UsageError, print_json, quiet_torch, stdout
from ._dynamic import add_dynamic_option, parse_dynamic
from ._export import add_fallback, add_provider, compile_loaded
from ._load import add_model_options, load_model
from ._passes import add_pass_options, given, pass_options

EPILOG = """examples:
  fxonnx verify resnet18                         # export in memory and compare with eager
  fxonnx verify resnet18.onnx --model resnet18   # compare a file with its PyTorch model
  fxonnx verify model.onnx                       # checker + a smoke run on random inputs
  fxonnx verify mlp --json
  fxonnx verify resnet18 --grad                  # gradients too: graph vs eager autograd
  fxonnx verify mlp-bundle                       # hashes, schema, stored verdict, smoke run
  fxonnx verify mlp-bundle --model mlp           # ... and outputs against eager

exit code 1 when any check fails.
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "verify",
        parents=[common],
        help="compare outputs with eager PyTorch",
        description="Compare the outputs of an exported model with eager PyTorch, at the "
        "example and at second sizes of every dynamic dim. For a .onnx file, "
        "--model names the PyTorch model to compare with; without it, only onnx.checker and "
        "a smoke run on random inputs are done. For a bundle directory: the manifest against "
        "its schema, every file's SHA-256, the verdict stored at export, onnx.checker and a "
        "smoke run (no torch needed), plus eager comparison with --model. --grad (MODEL "
        "only) also compares gradients (fxonnx.check_gradients).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="MODEL|FILE.onnx|DIR")
    p.add_argument("--model", metavar="MODEL", help="the PyTorch model behind FILE.onnx or DIR")
    add_model_options(p)
    p.add_argument("--static", action="store_true", help="export with every dim fixed")
    add_dynamic_option(p)
    p.add_argument("--opset", type=int, default=None, help="ONNX opset for MODEL")
    add_provider(p)
    add_fallback(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    grad = p.add_argument_group("gradients (MODEL only)")
    grad.add_argument(
        "--grad",
        action="store_true",
        help="also compare the gradients of the optimized graph with eager autograd (every "
        "parameter and input, seeded random cotangent) and the ONNX model's directional "
        "derivatives with eager forward mode",
    )
    grad.add_argument(
        "--grad-float64",
        action="store_true",
        help="with --grad: check in float64 and run torch.autograd.gradcheck too",
    )
    add_pass_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ._bundles import find_bundle

    bundle = find_bundle(args.target)
    if (bundle is not None or args.target.endswith(".onnx")) and given(args):
        raise UsageError(
            f"{given(args)[0]} applies when exporting a MODEL, not to an exported file or bundle",
            hint="fxonnx verify MODEL --passes ...",
        )
    if args.grad_float64 and not args.grad:
        raise UsageError("--grad-float64 goes with --grad")
    if (bundle is not None or args.target.endswith(".onnx")) and args.grad:
        raise UsageError(
            "--grad needs the PyTorch MODEL itself: an exported file has no backward graph",
            hint=f"fxonnx verify {args.model or 'MODEL'} --grad",
        )
    if bundle is not None:
        from . import _verify_bundle

        _verify_bundle.check_args(args)
        result = _verify_bundle.verify_bundle(bundle, args)
    elif args.target.endswith(".onnx"):
        from . import _verify_onnx

        if args.model is None:
            result = _verify_onnx.smoke(args.target, args.provider)
        else:
            result = _verify_onnx.against_model(args.target, args, args.provider)
    else:
        if args.model is not None:
            raise UsageError(
                "--model goes with a .onnx file or a bundle directory", hint="fxonnx verify MODEL"
            )
        result = _verify_model(args)
    if args.json:
        print_json(result)
    else:
        _print(result)
    return EXIT_OK if result["ok"] else EXIT_FAILED


def _verify_model(args: argparse.Namespace) -> dict[str, Any]:
    from ..verify import verify

    passes = pass_options(args)
    if args.grad and passes["prune"] is not None:
        raise UsageError("--grad does not combine with --prune", hint="check gradients unpruned")
    loaded = load_model(args.target, args.input, args.batch)
    with quiet_torch(args.verbose):
        compiled = compile_loaded(
            loaded,
            provider=args.provider,
            opset=args.opset,
            static=args.static,
            verify=False,
            fallback=args.fallback,
            passes=passes,
            dynamic=args.dynamic,
        )
    checked = verify(loaded.module, loaded.args, compiled)
    report = compiled.report.add(checks=checked.checks, notes=checked.notes, stages=checked.stages)
    if args.grad:
        import torch

        from .. import check_gradients

        with quiet_torch(args.verbose):
            grads = check_gradients(
                loaded.module,
                loaded.args,
                passes=passes["passes"],
                skip=passes["skip"],
                dtype=torch.float64 if args.grad_float64 else torch.float32,
                dynamic_dims=parse_dynamic(args.dynamic) if not args.static else None,
            )
        report = report.add(checks=grads.checks, notes=grads.notes, stages=grads.stages)
    return {
        "target": loaded.name,
        "mode": "model",
        "compared_with_eager": True,
        "provider": compiled.provider,
        **report.to_dict(),
    }


def _print(r: dict[str, Any]) -> None:
    con = stdout()
    if r["checks"]:
        title = (
            "vs eager PyTorch" if r["compared_with_eager"] else "checks (not compared with eager)"
        )
        table = Table(title=f"{r['target']} {title}", title_justify="left")
        for col in ("", "check", "max abs err", "max rel err", "rtol", "atol", "note"):
            table.add_column(col, justify="right" if "err" in col or "tol" in col else "left")
        for c in r["checks"]:
            mark = "[green]ok[/]" if c["ok"] else "[red]FAIL[/]"
            numeric = c["kind"] in _NUMERIC
            table.add_row(
                mark,
                escape(f"{c['kind']} {c['name']}" if c["kind"] in _PREFIXED else c["name"]),
                _num(c["max_abs"]) if numeric else "-",
                _num(c["max_rel"]) if numeric else "-",
                f"{c['rtol']:.3g}" if numeric else "-",
                f"{c['atol']:.3g}" if numeric else "-",
                escape(c["note"]),
            )
        con.print(table)
    for note in r.get("notes", []):
        con.print(f"note: {escape(note)}")
    if not r["compared_with_eager"]:
        usage = "DIR" if r["mode"] == "bundle" else "FILE.onnx"
        con.print(
            "[yellow]could not compare with eager[/]: no PyTorch model given "
            f"(fxonnx verify {usage} --model MODEL)"
        )
    n_bad = sum(not c["ok"] for c in r["checks"])
    if r["ok"]:
        con.print(f"[green]verification ok[/] ({len(r['checks'])} checks on {r['provider']})")
    else:
        con.print(f"[red]verification FAILED[/]: {n_bad} of {len(r['checks'])} checks")


_NUMERIC = ("output", "grad", "directional")  # kinds with errors; the rest are yes/no checks
_PREFIXED = ("grad", "directional")  # named after parameters/outputs: say what was compared


def _num(v: Any) -> str:
    return v if isinstance(v, str) else f"{v:.2e}"
