"""One training step: onnxruntime (fxonnx.export_training + TrainingSession) vs eager PyTorch.

Eager is ``zero_grad(); loss_fn(model(x), t).backward(); opt.step()`` with torch.optim.SGD
(momentum 0.9); onnxruntime runs the exported step graph (forward, backward and the same SGD
update) through TrainingSession, parameters and state kept as numpy arrays between steps.
Both run in the same process, interleaved round by round; medians. Dropout layers are put in
eval mode (the exporter refuses random ops). Prints a Markdown table; never asserts.

    python benchmarks/training_step.py [--models mlp,lenet_cifar] [--batches 8,32] [--rounds 11] [--iters 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: E402,F401  (OMP_WAIT_POLICY=PASSIVE before torch spins up)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import train_without_dropout  # noqa: E402
from torch import nn  # noqa: E402

import fxonnx  # noqa: E402
from fxonnx import models  # noqa: E402

DEFAULT_MODELS = "mlp,lenet_cifar,mnist_cnn,resnet18,mobilenet_v2,transformer_encoder,gru_lm"
SMALL_BATCHES = {"resnet18": (2, 8), "mobilenet_v2": (2, 8), "transformer_encoder": (2, 8)}


def loss_fn(out: torch.Tensor | tuple, target: torch.Tensor) -> torch.Tensor:
    if isinstance(out, tuple):
        out = out[0]
    if out.dim() == 3:
        out, target = out.reshape(-1, out.shape[-1]), target.reshape(-1)
    if target.dtype == torch.int64:
        return F.cross_entropy(out, target)
    return F.mse_loss(out, target)


def prepare(name: str, batch: int) -> tuple[nn.Module, tuple, torch.Tensor]:
    model, inputs = models.get(name, batch=batch)
    train_without_dropout(model)
    with torch.no_grad():
        out = model(*inputs)
    out = out[0] if isinstance(out, tuple) else out
    g = torch.Generator().manual_seed(0)
    if out.shape[-1] > 1:
        target = torch.randint(0, out.shape[-1], out.shape[:-1], generator=g)
    else:
        target = torch.randn(out.shape, generator=g)
    return model, tuple(inputs), target


def bench(name: str, batch: int, rounds: int, iters: int) -> dict[str, object]:
    model, inputs, target = prepare(name, batch)
    t0 = time.perf_counter()
    try:
        onnx_model = fxonnx.export_training(
            model, loss_fn, inputs, target, optimizer="sgd", lr=0.01, momentum=0.9
        )
    except fxonnx.FxonnxError as e:
        return {"model": name, "batch": batch, "error": str(e).splitlines()[0][:80]}
    export_s = time.perf_counter() - t0
    session = fxonnx.TrainingSession(onnx_model.SerializeToString())
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xs = [x.numpy() for x in inputs]
    tn = target.numpy()

    def eager() -> None:
        opt.zero_grad()
        loss_fn(model(*inputs), target).backward()
        opt.step()

    def ort() -> None:
        session.step(xs, tn)

    for _ in range(3):  # warm-up: allocator, thread pools, onnxruntime's first-run planning
        eager()
        ort()
    samples: dict[str, list[float]] = {"eager": [], "ort": []}
    for _ in range(rounds):
        for key, fn in (("eager", eager), ("ort", ort)):
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            samples[key].append((time.perf_counter() - t0) / iters)
    e, o = statistics.median(samples["eager"]), statistics.median(samples["ort"])
    return {
        "model": name,
        "batch": batch,
        "eager_ms": e * 1e3,
        "ort_ms": o * 1e3,
        "ratio": o / e,
        "export_s": export_s,
        "nodes": len(onnx_model.graph.node),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--batches", default=None, help="e.g. 8,32 (default per model)")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--iters", type=int, default=1, help="steps per round and side")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ratio = ort / eager\n")
    print("| model | batch | eager step ms | onnxruntime step ms | ratio | export s | nodes |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        batches = (
            tuple(int(b) for b in args.batches.split(","))
            if args.batches
            else SMALL_BATCHES.get(name, (8, 32))
        )
        for batch in batches:
            r = bench(name, batch, args.rounds, args.iters)
            if "error" in r:
                print(f"| {name} | {batch} | - | - | - | - | {r['error']} |", flush=True)
                continue
            print(
                f"| {name} | {batch} | {r['eager_ms']:.2f} | {r['ort_ms']:.2f} | "
                f"{r['ratio']:.2f} | {r['export_s']:.1f} | {r['nodes']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
