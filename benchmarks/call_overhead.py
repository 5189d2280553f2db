"""Call overhead: raw onnxruntime ``InferenceSession.run`` against fxonnx's wrappers on the same
ONNX model, at batch 1.

For a tiny graph (one Linear + ReLU) and zoo models (default ``lenet_cifar``): the raw session
fed numpy arrays, ``Session.run_numpy``, ``Session.run_torch``, ``CompiledModel.__call__``
(torch tensors) and a loaded bundle's ``BundleModel.__call__`` (numpy arrays). Every variant
runs the one session of the compiled model (the bundle opens its own session on the same file),
all with ``fxonnx.runtime.session_options()`` (no spinning). Interleaved rounds, medians of
per-round means; the ratio is against the raw session. Prints a Markdown table; never asserts.

    python benchmarks/call_overhead.py [--models tiny,lenet_cifar] [--rounds 21] [--iters 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: E402, F401 - sets OMP_WAIT_POLICY before torch starts its threads
import torch  # noqa: E402
from torch import nn  # noqa: E402

import fxonnx  # noqa: E402
from fxonnx import models  # noqa: E402


def _model(name: str) -> tuple[nn.Module, tuple, tuple, tuple]:
    """module, example inputs, batch-1 inputs, batch dims."""
    if name == "tiny":
        return (
            nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(),
            (torch.randn(2, 4),),
            (torch.randn(1, 4),),
            (0,),
        )
    model, inputs = models.get(name, batch=2)
    _, one = models.get(name, batch=1, seed=1)
    return model, inputs, one, models.info(name).batch_dims


def _variants(name: str, root: str) -> dict[str, Callable[[], object]]:
    model, inputs, x, dims = _model(name)
    cm = fxonnx.compile(model, inputs, provider="cpu", batch_dims=dims)
    served = fxonnx.load(cm.save_bundle(f"{root}/{name}"))
    raw = cm.session._session  # the onnxruntime.InferenceSession the wrappers run
    arrays = [t.numpy() for t in x]
    feeds = {i.name: a for i, a in zip(raw.get_inputs(), arrays, strict=True)}
    return {
        "InferenceSession.run": lambda: raw.run(None, feeds),
        "Session.run_numpy": lambda: cm.session.run_numpy(arrays),
        "Session.run_torch": lambda: cm.session.run_torch(x),
        "CompiledModel": lambda: cm(*x),
        "BundleModel": lambda: served(*arrays),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,lenet_cifar")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds")
    parser.add_argument("--iters", type=int, default=200, help="calls per variant per round")
    args = parser.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    print("| model | call | µs (median) | ratio to raw |")
    print("|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as root:
        for name in args.models.split(","):
            fns = _variants(name, root)
            for fn in fns.values():
                for _ in range(20):  # warm-up: first-signature checks, allocator
                    fn()
            samples: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(args.rounds):
                for label, fn in fns.items():
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        fn()
                    samples[label].append((time.perf_counter() - t0) / args.iters)
            medians = {k: statistics.median(v) for k, v in samples.items()}
            base = medians["InferenceSession.run"]
            for label, t in medians.items():
                print(f"| {name} | {label} | {t * 1e6:.1f} | {t / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
