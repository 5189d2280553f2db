"""Shared plumbing of the commands: usage errors, consoles, JSON, number formatting."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from rich.console import Console

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command line: unknown model, bad --input spec, missing file. Exit code 2."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def stdout() -> Console:
    """Results go to stdout; 120 columns when it is not a terminal so tables do not wrap."""
    return Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 120)


def stderr() -> Console:
    return Console(file=sys.stderr, highlight=False, width=None if sys.stderr.isatty() else 120)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'; keeps small numbers exact."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def human_bytes(n: float) -> str:
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{int(n)} B"


@contextlib.contextmanager
def quiet_torch(verbose: int) -> Iterator[None]:
    """torch.onnx and torch.compile print progress to stdout and log warnings about optional
    packages: keep stdout for results (--json) and show that chatter only with -v."""
    if verbose:
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)  # torch.onnx logs "torchvision is not installed" etc.
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        torch_logger.setLevel(level)
