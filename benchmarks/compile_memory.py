"""Memory and temporary files over many compiles in one process.

Compiles ``--count`` small models (fresh modules, sizes cycling so shapes differ) one after
another with ``fxonnx.compile(..., provider="cpu")``, dropping each result, and samples the
process RSS after a warm-up of ``--warmup`` compiles. Reports the RSS growth per compile (least
squares slope over the measured compiles, and first-to-last), and the files left behind in the
temporary directory and in the working directory. Prints a Markdown table; never asserts.

    python benchmarks/compile_memory.py [--count 200] [--warmup 20] [--save]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: E402,F401  (OMP_WAIT_POLICY=PASSIVE before torch spins up)
import torch  # noqa: E402
from torch import nn  # noqa: E402

import fxonnx  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def small_model(i: int) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """One of four small architectures, with sizes that change from compile to compile."""
    width = 8 + i % 7
    kind = i % 4
    if kind == 0:
        model = nn.Sequential(nn.Linear(10, width), nn.ReLU(), nn.Linear(width, 3))
        x = torch.randn(2, 10)
    elif kind == 1:
        model = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 4),
        )  # fmt: skip
        x = torch.randn(2, 3, 8, 8)
    elif kind == 2:
        model = nn.GRU(6, width, batch_first=True)
        x = torch.randn(2, 5, 6)
    else:
        model = nn.TransformerEncoderLayer(width * 2, 2, dim_feedforward=16, batch_first=True)
        x = torch.randn(2, 4, width * 2)
    return model.eval(), (x,)


def entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="compiles measured")
    parser.add_argument("--warmup", type=int, default=20, help="compiles before measuring")
    parser.add_argument("--save", action="store_true", help="also save each model (temp dir)")
    args = parser.parse_args()
    # a private temporary directory, so that what is left there is ours (and not a neighbour's)
    tmp = Path(tempfile.mkdtemp(prefix="fxonnx-compile-memory-tmp-"))
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)
    cwd = Path.cwd()
    scratch = Path(tempfile.mkdtemp(prefix="saved-"))
    before_tmp, before_cwd = entries(tmp) | {scratch.name}, entries(cwd)

    def one(i: int) -> None:
        model, inputs = small_model(i)
        cm = fxonnx.compile(model, inputs, provider="cpu")
        if args.save:
            cm.save(scratch / "m.onnx")
        del cm, model

    t0 = time.perf_counter()
    for i in range(args.warmup):
        one(i)
    gc.collect()
    samples = [rss_mib()]
    for i in range(args.warmup, args.warmup + args.count):
        one(i)
        if (i - args.warmup) % 10 == 9:
            gc.collect()
            samples.append(rss_mib())
    elapsed = time.perf_counter() - t0
    # least-squares slope of RSS against the compile index (one sample per 10 compiles)
    xs = [10 * k for k in range(len(samples))]
    mx, my = sum(xs) / len(xs), sum(samples) / len(samples)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, samples, strict=True)) / max(
        sum((x - mx) ** 2 for x in xs), 1
    )
    left_tmp = sorted(entries(tmp) - before_tmp)
    left_cwd = sorted(entries(cwd) - before_cwd)
    left_scratch = sorted(entries(scratch) - {"m.onnx"})
    shutil.rmtree(tmp)
    print(f"compile_memory: {args.count} compiles after {args.warmup} warm-up, {elapsed:.0f} s\n")
    print("| measure | value |\n|---|---:|")
    print(f"| RSS after warm-up | {samples[0]:.1f} MiB |")
    print(f"| RSS after {args.count} more | {samples[-1]:.1f} MiB |")
    print(
        f"| growth, first to last | {(samples[-1] - samples[0]) * 1024 / args.count:.1f} KiB/compile |"
    )
    print(f"| growth, least-squares slope | {slope * 1024:.1f} KiB/compile |")
    print(f"| peak sampled RSS | {max(samples):.1f} MiB |")
    print(f"| files left in the temporary directory | {len(left_tmp)} {left_tmp[:5]} |")
    print(f"| files left in the working directory | {len(left_cwd)} {left_cwd[:5]} |")
    print(f"| stray files beside saved models | {len(left_scratch)} {left_scratch[:5]} |")
    print(f"\nRSS samples (MiB, every 10 compiles): {[round(s, 1) for s in samples]}")
    print(f"pid {os.getpid()}, torch {torch.__version__}, fxonnx {fxonnx.__version__}")


if __name__ == "__main__":
    main()
