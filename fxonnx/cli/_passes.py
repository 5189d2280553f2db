"""--passes/--skip/--prune, the graph optimization options of export, verify and bench, and the
``fxonnx passes`` command listing the registry they are checked against."""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from ._common import EXIT_OK, UsageError, print_json, stdout

EPILOG = """examples:
  fxonnx passes
  fxonnx export resnet18 -o r.onnx --skip fold_bn,const_fold
  fxonnx export mlp -o m.onnx --passes none
  fxonnx verify resnet18 --passes cse,fold_bn,dce
  fxonnx export resnet18 -o small.onnx --prune 0.25
  fxonnx export mlp -o small.onnx --prune fc1=0.5
"""


def add_pass_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("graph optimization (`fxonnx passes` lists the passes)")
    g.add_argument(
        "--passes",
        metavar="default|none|A,B",
        help="the pipeline: default (the compiler's), none, or pass names in order",
    )
    g.add_argument("--skip", metavar="A,B", help="passes to leave out of the pipeline")
    g.add_argument(
        "--prune",
        metavar="R|LAYER=R,...",
        help="remove this share (0 <= R < 1) of each conv/linear layer's output channels (or "
        "of the named layers), smallest L1 norm first; lossy: the summary says how much",
    )


def given(args: argparse.Namespace) -> list[str]:
    """The optimization flags on the command line (for commands where they do not apply)."""
    return [
        flag
        for flag, value in (
            ("--passes", args.passes),
            ("--skip", args.skip),
            ("--prune", args.prune),
        )
        if value is not None
    ]


def _names(flag: str, text: str, valid: list[str]) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"{flag} {text!r}: no pass names", hint="e.g. cse,dce")
    for n in names:
        if n not in valid:
            close = difflib.get_close_matches(n, valid, n=1, cutoff=0.5)
            raise UsageError(
                f"{flag}: unknown pass {n!r}",
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + f"choose from {', '.join(valid)}",
            )
    return names


def _ratio(flag: str, text: str) -> float:
    try:
        r = float(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: not a number", hint="e.g. --prune 0.25") from None
    if not 0 <= r < 1:
        raise UsageError(f"{flag} {text}: the share must be in [0, 1)", hint="e.g. --prune 0.25")
    return r


def _prune(text: str) -> float | dict[str, float]:
    if "=" not in text:
        return _ratio("--prune", text)
    shares = {}
    for item in text.split(","):
        layer, sep, value = item.partition("=")
        if not sep or not layer.strip():
            raise UsageError(
                f"--prune {text!r}: expected LAYER=R pairs", hint="e.g. --prune fc1=0.5,fc2=0.25"
            )
        shares[layer.strip()] = _ratio(f"--prune {layer.strip()}=", value)
    return shares


def pass_options(args: argparse.Namespace) -> dict[str, Any]:
    """``fxonnx.compile`` keyword arguments from the flags, names checked against the registry."""
    from ..passes import available_passes

    valid = available_passes()
    passes: str | list[str] = (args.passes or "default").strip()
    if passes not in ("default", "none"):
        passes = _names("--passes", passes, valid)
    skip = _names("--skip", args.skip, valid) if args.skip is not None else []
    prune = _prune(args.prune) if args.prune is not None else None
    return {"passes": passes, "skip": skip, "prune": prune}


def summary(records: list[dict[str, Any]]) -> list[str]:
    """Lines for the export summary: the passes run and what they changed; prune's effect."""
    if not records:
        return []
    changed = [str(r.get("name", "?")) for r in records if r.get("modified")]
    ms = sum(float(r.get("ms", 0.0)) for r in records)
    lines = [
        f"{len(records)} run in {ms:.0f} ms; "
        + (f"changed the graph: {', '.join(changed)}" if changed else "none changed the graph")
    ]
    for r in records:
        s = r.get("stats", {})
        if r.get("name") == "prune" and s.get("layers"):
            line = (
                f"prune: {s['channels_removed']} channels of {s['layers']} layer(s) removed, "
                f"parameters {s['params_before']:,} -> {s['params_after']:,}, "
                f"FLOPs {s['flops_before']:,} -> {s['flops_after']:,}"
            )
            if "max_rel_deviation" in s:
                line += f", outputs moved by up to {s['max_rel_deviation']:.1e} (relative)"
            lines.append(line)
    return lines


def _onnx(name: str) -> bool:
    from ..passes import get_pass

    return get_pass(name).stage == "onnx"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "passes",
        parents=[common],
        help="list the graph optimization passes",
        description="The passes --passes and --skip choose from, and the default pipeline "
        "(run in this order, repeated until nothing changes).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from ..passes import DEFAULT, available_passes

    rows = [
        {
            "name": n,
            "default": n in DEFAULT,
            "position": DEFAULT.index(n) + 1 if n in DEFAULT else None,
        }
        for n in available_passes()
    ]
    if args.json:
        print_json({"default": list(DEFAULT), "passes": rows})
        return EXIT_OK
    con = stdout()
    con.print("default pipeline (in this order, repeated until nothing changes):")
    for i, name in enumerate(DEFAULT, 1):
        after = (
            "  (with --ort-ops: once, on the lowered model, for the CPU provider)"
            if _onnx(name)
            else ""
        )
        con.print(f"  {i:>2}  {name}{after}")
    opt_in = [r["name"] for r in rows if not r["default"]]
    if opt_in:
        con.print("opt-in (--passes NAMES; --prune R runs prune first):")
        for name in opt_in:
            con.print(f"      {name}")
    return EXIT_OK
