"""``fxonnx bench``: latency, throughput, memory and export time against other runtimes.

Every runner is measured in the same process and run: fxonnx (onnxruntime), eager PyTorch,
torch.compile and torch.onnx.export(dynamo=True) + onnxruntime with the same session options
(``fxonnx.runtime.session_options()``). A competitor that fails is reported, not fatal.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
from pathlib import Path
from typing import Any

from .._version import __version__
from . import _bench_report
from ._bench_run import RUNNERS, Measure, measure
from ._common import EXIT_FAILED, EXIT_OK, UsageError, print_json, quiet_torch, stderr
from ._dynamic import add_dynamic_option, parse_dynamic
from ._export import add_provider
from ._load import load_model
from ._passes import add_pass_options, pass_options

EPILOG = """examples:
  fxonnx bench mlp
  fxonnx bench resnet18 --batch 1,16 --against eager,torch.onnx --seconds 5
  fxonnx bench mlp --iters 200 --out results/      # bench.json, bench.md, bench.png

exit code 1 when fxonnx itself fails (a failing competitor is only reported).
"""


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench",
        parents=[common],
        help="benchmark against eager, torch.compile and torch.onnx",
        description="Measure latency (p50/p90/p99), throughput, peak memory (RSS growth) and "
        "export time of fxonnx and each competitor at each batch size, in the same run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    # with --input the inputs' own dim 0 is the batch size
    p.add_argument("--input", action="append", metavar="SPEC", help="inputs of a non-zoo model")
    add_dynamic_option(p)
    p.add_argument(
        "--against",
        default="eager,torch.compile,torch.onnx",
        help="comma-separated competitors: " + ", ".join(r for r in RUNNERS if r != "fxonnx"),
    )
    add_provider(p)
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (5)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--iters", type=int, default=None, help="timed runs (default 50)")
    timing.add_argument("--seconds", type=float, default=None, help="time each runner for S s")
    p.add_argument("--out", metavar="DIR", help="write bench.json, bench.md and bench.png")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_pass_options(p)
    return p


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--batch {text!r}: expected sizes like 1,16") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--batch {text!r}: sizes must be >= 1")
    return values


def _competitors(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in RUNNERS or n == "fxonnx":
            valid = ", ".join(r for r in RUNNERS if r != "fxonnx")
            raise UsageError(f"--against: unknown competitor {n!r}", hint=f"choose from {valid}")
    return ["fxonnx", *dict.fromkeys(names)]


def run(args: argparse.Namespace) -> int:
    batches = _ints(args.batch)
    runners = _competitors(args.against)
    if args.warmup < 0 or (args.iters is not None and args.iters < 1):
        raise UsageError("--warmup must be >= 0 and --iters >= 1")
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError("--seconds must be > 0")
    iters = args.iters if args.iters is not None or args.seconds is not None else 50
    passes = pass_options(args)
    if args.dynamic:
        passes["dynamic_dims"] = parse_dynamic(args.dynamic)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    if args.input:  # the --input shapes fix the batch: label the run with it
        if args.batch != "1":
            raise UsageError("--batch and --input both choose the inputs", hint="give only one")
        one = load_model(args.model, args.input)
        first = next((t for t in one.args if getattr(t, "ndim", 0) > 0), None)
        batches = [int(first.shape[0]) if first is not None else 1]
        loaded = {batches[0]: one}
    else:
        loaded = {b: load_model(args.model, None, b) for b in batches}
    results: list[Measure] = []
    total = len(batches) * len(runners)
    with _progress(total, quiet=args.quiet) as advance:
        state: dict[str, Any] = {}
        for b in batches:
            for name in runners:
                advance(f"{name} @ batch {b}")
                with quiet_torch(args.verbose):
                    results.append(
                        measure(
                            name,
                            loaded[b],
                            b,
                            state,
                            provider=args.provider,
                            warmup=args.warmup,
                            iters=iters,
                            seconds=args.seconds,
                            passes=passes,
                        )
                    )
    data = {
        "model": args.model,
        "fxonnx_version": __version__,
        "provider": args.provider,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "settings": {
            "batches": batches,
            "passes": passes,
            "warmup": args.warmup,
            "iters": iters if args.seconds is None else None,
            "seconds": args.seconds,
        },
        "results": [r.to_dict() for r in results],
        "ratios": _bench_report.ratios(results),
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        data["files"] = _bench_report.write(data, out_dir)
    if args.json:
        print_json(data)
    else:
        _bench_report.print_tables(data)
    ok = all(r.ok for r in results if r.runner == "fxonnx")
    return EXIT_OK if ok else EXIT_FAILED


@contextlib.contextmanager
def _progress(total: int, *, quiet: bool) -> Any:
    if quiet:
        yield lambda _desc: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr(),
        transient=True,
    ) as progress:
        task = progress.add_task("bench", total=total)
        started = [False]

        def advance(desc: str) -> None:
            if started[0]:
                progress.advance(task)
            started[0] = True
            progress.update(task, description=desc)

        yield advance
        progress.advance(task)
