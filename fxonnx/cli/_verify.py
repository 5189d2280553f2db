"""``fxonnx verify``: compare a model (or an ONNX file, or a bundle) with eager PyTorch, as a
table."""

from __future__ import annotations

import argparse
from typing import Any

from rich.markup import escape
from rich.table import Table

from ._common import EXIT_FAILED, EXIT_OK, UsageError, print_json, quiet_torch, stdout
from ._export import add_fallback, add_provider, compile_loaded
from ._load import add_model_options, load_model
from ._passes import add_pass_options, given, pass_options

EPILOG = """examples:
  fxonnx verify resnet18                         # export in memory and compare with eager
  fxonnx verify resnet18.onnx --model resnet18   # compare a file with its PyTorch model
  fxonnx verify model.onnx                       # checker + a smoke run on random inputs
  fxonnx verify mlp --json
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
        "example batch and a second batch size when the batch is dynamic. For a .onnx file, "
        "--model names the PyTorch model to compare with; without it, only onnx.checker and "
        "a smoke run on random inputs are done. For a bundle directory: the manifest against "
        "its schema, every file's SHA-256, the verdict stored at export, onnx.checker and a "
        "smoke run (no torch needed), plus eager comparison with --model.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="MODEL|FILE.onnx|DIR")
    p.add_argument("--model", metavar="MODEL", help="the PyTorch model behind FILE.onnx or DIR")
    add_model_options(p)
    p.add_argument("--static", action="store_true", help="export with every dim fixed")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset for MODEL")
    add_provider(p)
    add_fallback(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
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
        )
    checked = verify(loaded.module, loaded.args, compiled)
    report = compiled.report.add(checks=checked.checks, notes=checked.notes, stages=checked.stages)
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
        for col in ("", "output", "max abs err", "max rel err", "rtol", "atol", "note"):
            table.add_column(col, justify="right" if "err" in col or "tol" in col else "left")
        for c in r["checks"]:
            mark = "[green]ok[/]" if c["ok"] else "[red]FAIL[/]"
            numeric = c["kind"] in _NUMERIC
            table.add_row(
                mark,
                escape(c["name"]),
                _num(c["max_abs"]) if numeric else "-",
                _num(c["max_rel"]) if numeric else "-",
                f"{c['rtol']:g}" if numeric else "-",
                f"{c['atol']:g}" if numeric else "-",
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


def _num(v: Any) -> str:
    return v if isinstance(v, str) else f"{v:.2e}"
