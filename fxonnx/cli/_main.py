"""Entry point of the ``fxonnx`` console script."""

from __future__ import annotations

import argparse
import sys

from .._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fxonnx",
        description="Export PyTorch models to ONNX through torch.fx, verified against eager.",
    )
    parser.add_argument("--version", action="version", version=f"fxonnx {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
