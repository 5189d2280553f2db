"""Entry point of the ``fxonnx`` console script: argparse subcommands and error handling.

Exit codes: 0 ok, 1 verification/benchmark/export failure, 2 usage error (bad flags, unknown
model, bad --input spec, missing file). Errors print one line plus a hint; --debug adds the
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator

from .._errors import FxonnxError, InputError, UnsupportedOpError
from .._version import __version__
from . import _bench, _export, _inspect, _models, _passes, _run, _verify
from ._common import EXIT_FAILED, EXIT_USAGE, UsageError

_COMMANDS: tuple[tuple[str, Callable, Callable], ...] = (
    ("export", _export.add_parser, _export.run),
    ("verify", _verify.add_parser, _verify.run),
    ("bench", _bench.add_parser, _bench.run),
    ("inspect", _inspect.add_parser, _inspect.run),
    ("run", _run.add_parser, _run.run),
    ("models", _models.add_parser, _models.run),
    ("passes", _passes.add_parser, _passes.run),
)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    noise = group.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv)")
    noise.add_argument("-q", "--quiet", action="store_true", help="only results and errors")
    group.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fxonnx",
        description="Export PyTorch models to ONNX through torch.fx, verified against eager.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  fxonnx models\n  fxonnx export resnet18 -o resnet18.onnx\n"
        "  fxonnx verify resnet18.onnx --model resnet18\n  fxonnx bench mlp --batch 1,16\n"
        "  fxonnx inspect resnet18.onnx\n"
        "  fxonnx export mlp --bundle mlp-bundle && fxonnx verify mlp-bundle\n"
        "  fxonnx run mlp-bundle --input x.npy -o y.npy\n\n"
        "exit codes: 0 ok, 1 verification/benchmark/export failure, 2 usage error",
    )
    parser.add_argument("--version", action="version", version=f"fxonnx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common()
    for _name, add, run in _COMMANDS:
        p = add(sub, common)
        p.set_defaults(func=run)
    return parser


@contextlib.contextmanager
def _logging(verbose: int, quiet: bool) -> Iterator[None]:
    """fxonnx log records to stderr at the level -v/-q ask for; the logger is restored after
    the command, so ``main()`` called in-process leaves no handler or level behind."""
    level = (
        logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    logger = logging.getLogger("fxonnx")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(level)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


_MAX_DETAIL = 6  # detail lines of a long error (one per unsupported node) shown without -v
_DEBUG_HINT = "rerun with --debug for the traceback"


def _error(message: str, hint: str | None, *, full: bool = True) -> None:
    lines = message.splitlines() or [""]
    if not full and len(lines) > _MAX_DETAIL + 1:
        hidden = len(lines) - 1 - _MAX_DETAIL
        lines = [*lines[: _MAX_DETAIL + 1], f"  ... {hidden} more (-v shows all)"]
    print("error: " + "\n".join(lines), file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad flags
    if args.command is None:
        parser.print_help()
        return 0
    with _logging(args.verbose, args.quiet), warnings.catch_warnings():
        if args.quiet:
            warnings.simplefilter("ignore")
        else:
            seen: set[str] = set()

            def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
                text = str(message).removeprefix("fxonnx: ")
                if text not in seen:
                    seen.add(text)
                    print(f"warning: {text}", file=sys.stderr)

            warnings.showwarning = show
        try:
            return args.func(args)
        except UsageError as e:
            if args.debug:
                traceback.print_exc()
            _error(e.message, e.hint)
            return EXIT_USAGE
        except FxonnxError as e:
            if args.debug:
                traceback.print_exc()
            hint = e.hint or (None if args.debug else _DEBUG_HINT)
            if hint:  # the API's keyword arguments, as the CLI spells them
                hint = re.sub(r"provider='(\w+)'", r"--provider \1", hint)
                hint = hint.replace("overwrite=True", "--overwrite")
                hint = hint.replace("verify_hashes=False", "--no-verify-hashes")
            if isinstance(e, UnsupportedOpError):
                hint = "rewrite those lines with supported ops, or pass --fallback torch.onnx"
            _error(e.message, hint, full=bool(args.verbose or args.debug))
            if isinstance(e, InputError):
                return EXIT_USAGE
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 - the user's model code can raise anything
            if args.debug:
                traceback.print_exc()
            _error(
                f"{type(e).__name__}: {e}",
                None if args.debug else _DEBUG_HINT,
            )
            return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
