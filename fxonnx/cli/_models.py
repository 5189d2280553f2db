"""``fxonnx models``: the model zoo with input shapes and parameter counts."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from ._common import EXIT_OK, UsageError, human, print_json, stdout

EPILOG = """examples:
  fxonnx models
  fxonnx models --json | jq '.[].name'
  fxonnx models --tag tutorial
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models",
        parents=[common],
        help="list the model zoo",
        description="List the zoo models: inputs (N is the batch dim), dtypes, parameters.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tag", help="only models with this tag")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    return p


def _dtype(d: Any) -> str:
    return str(d).removeprefix("torch.")


def run(args: argparse.Namespace) -> int:
    from .. import models

    if args.tag:
        tags = sorted({t for name in models.names() for t in models.info(name).tags})
        if args.tag not in tags:
            raise UsageError(f"unknown tag {args.tag!r}", hint=f"the tags are {', '.join(tags)}")
    rows = []
    for name in models.names():
        info = models.info(name)
        if args.tag and args.tag not in info.tags:
            continue
        rows.append(
            {
                "name": name,
                "description": info.description,
                "inputs": [
                    {"name": n, "shape": list(s), "dtype": _dtype(d), "batch_dim": b}
                    for n, s, d, b in zip(
                        info.input_names,
                        info.input_shapes,
                        info.input_dtypes,
                        info.batch_dims,
                        strict=True,
                    )
                ],
                "parameters": info.num_parameters,
                "tags": list(info.tags),
            }
        )
    if args.json:
        print_json(rows)
        return EXIT_OK
    table = Table(title=f"fxonnx model zoo ({len(rows)} models)", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("inputs")
    table.add_column("params", justify="right")
    table.add_column("description")
    for r in rows:
        ins = ", ".join(
            f"{i['name']}: {'x'.join(str(d) for d in i['shape'])} {i['dtype']}" for i in r["inputs"]
        )
        table.add_row(r["name"], ins, human(r["parameters"]), r["description"])
    stdout().print(table)
    return EXIT_OK
