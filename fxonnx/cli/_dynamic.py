"""``--dynamic``: which dims of the model's inputs may vary, as compile's ``dynamic_dims``."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import UsageError

HELP = (
    "dims that may vary: INPUT:DIM=NAME[,DIM=NAME...] (repeat for each input; INPUT is a "
    "forward() argument name or a position; dims sharing a NAME share one size), or 'auto' "
    "(the batch, default), 'all' (every dim the model leaves free) or 'none' (static)"
)


def add_dynamic_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dynamic",
        action="append",
        metavar="SPEC",
        default=None,
        help=HELP
        + "; e.g. --dynamic input_ids:0=batch,1=seq --dynamic attention_mask:0=batch,1=seq",
    )


def parse_dynamic(values: list[str] | None) -> Any:
    """``--dynamic`` values -> ``dynamic_dims`` ("auto" when none were given)."""
    if not values:
        return "auto"
    modes = {"auto": "auto", "all": "all", "none": None}
    if len(values) == 1 and values[0] in modes:
        return modes[values[0]]
    spec: dict[Any, dict[int, str]] = {}
    for value in values:
        if value in modes:
            raise UsageError(f"--dynamic {value} cannot be combined with other --dynamic specs")
        name, sep, dims = value.partition(":")
        if not sep or not name or not dims:
            raise UsageError(
                f"--dynamic {value!r} is not INPUT:DIM=NAME[,DIM=NAME...]",
                hint="e.g. --dynamic input_ids:0=batch,1=seq",
            )
        key: Any = int(name) if name.lstrip("-").isdigit() else name
        if key in spec:
            raise UsageError(f"--dynamic names input {name!r} twice", hint="give its dims once")
        spec[key] = {}
        for item in dims.split(","):
            dim, eq, dim_name = item.partition("=")
            if not eq or not dim.strip().lstrip("-").isdigit() or not dim_name.strip():
                raise UsageError(
                    f"--dynamic {value!r}: {item!r} is not DIM=NAME (an int dim and a name)",
                    hint="e.g. --dynamic input_ids:0=batch,1=seq",
                )
            spec[key][int(dim)] = dim_name.strip()
    return spec
