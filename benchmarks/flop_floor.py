"""The fp32 time floor of a zoo model on this machine: its FLOPs over the SGEMM peak.

FLOPs come from ``torch.utils.flop_counter`` on eager (torch.nn's fused inference fast path
off, so the encoder layers are counted op by op); the peak is the best of several runs of
``torch.mm`` at the model's main matrix shape on the chosen thread count. No fp32 runtime
can run the model's matrix products faster than ``FLOPs / peak``, so a latency target below
that is out of reach whatever the lowering.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from fxonnx import models

# the model's largest matrix product at batch 16: (rows, inner, columns)
SHAPES = {"transformer_encoder": (2048, 256, 1024), "vit_tiny": (272, 192, 768)}


def sgemm_peak(m: int, k: int, n: int, rounds: int = 15) -> float:
    """GFLOP/s of torch.mm at [m, k] @ [k, n], best of ``rounds`` runs of 10."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(5):
        a @ b
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, (time.perf_counter() - t0) / 10)
    return 2 * m * k * n / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SHAPES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.mha.set_fastpath_enabled(False)
    print("| model | batch | GFLOP | SGEMM peak GFLOP/s (shape) | floor ms |")
    print("|---|---:|---:|---|---:|")
    for name in args.models.split(","):
        model, inputs = models.get(name, batch=args.batch)
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
        flops = counter.get_total_flops()
        shape = SHAPES.get(name, (1024, 1024, 1024))
        peak = sgemm_peak(*shape)
        print(
            f"| {name} | {args.batch} | {flops / 1e9:.2f} | {peak:.0f} {shape} | "
            f"{flops / peak / 1e6:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
