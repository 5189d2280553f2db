"""Latency over the zoo: fxonnx against eager, torch.compile and torch.onnx + onnxruntime.

Per model and batch size (default 1 and 16): eager PyTorch under ``torch.inference_mode``,
``torch.compile`` (inductor, compiled per batch size; a failure to compile is a table cell, not
a crash), ``torch.onnx.export(dynamo=True)`` run by a raw ``onnxruntime.InferenceSession`` (torch
tensors in and out through ``.numpy()``/``torch.from_numpy``, the least a caller writes), and
``fxonnx.compile(...)`` called as users call it (``cm(*inputs)``: torch tensors in and out,
input checks included). benchmarks/call_overhead.py compares against raw numpy calls. Both ONNX sessions use
``fxonnx.runtime.session_options()`` (level ALL, no spinning) and ``OMP_WAIT_POLICY=PASSIVE``.
All variants of a model take turns each round (interleaved); each cell is the median of the
rounds' means. The last column is fxonnx / the fastest peer (< 1: fxonnx is faster). Prints a
Markdown table; never asserts.

    python benchmarks/latency.py [--models resnet18,vit_tiny] [--batches 1,16] [--rounds 11]
        [--peers eager,inductor,torch.onnx]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: E402, F401 - sets OMP_WAIT_POLICY before torch loads OpenMP
import torch  # noqa: E402
from _common import session, torch_onnx_export  # noqa: E402

import fxonnx  # noqa: E402
from fxonnx import models  # noqa: E402

PEERS = ("eager", "inductor", "torch.onnx")


def _inductor(model: torch.nn.Module, x: tuple) -> Callable[[], object] | str:
    """A torch.compile'd call at this batch size, or why it failed."""
    try:
        compiled = torch.compile(model, dynamic=False)
        with torch.inference_mode():
            compiled(*x)
    except Exception as e:  # noqa: BLE001 - a peer failing is a result
        return f"failed: {type(e).__name__}"

    def call() -> object:
        with torch.inference_mode():
            return compiled(*x)

    return call


def _eager(model: torch.nn.Module, x: tuple) -> Callable[[], object]:
    def call() -> object:
        with torch.inference_mode():
            return model(*x)

    return call


def _calls(name: str, batch: int, peers: list[str], built: dict) -> dict[str, object]:
    """label -> a zero-argument call, or a string saying why it is missing."""
    model, x = built["model"], models.get(name, batch=batch, seed=1)[1]
    out: dict[str, object] = {}
    cm = built["fxonnx"]
    out["fxonnx"] = (lambda: cm(*x)) if not isinstance(cm, str) else cm
    if "eager" in peers:
        out["eager"] = _eager(model, x)
    if "inductor" in peers:
        out["inductor"] = _inductor(model, x)
    if "torch.onnx" in peers:
        sess = built["torch.onnx"]
        if isinstance(sess, str):
            out["torch.onnx"] = sess
        else:
            names = [i.name for i in sess.get_inputs()]

            def call() -> object:  # torch in and out, like every other column
                f = {n: t.numpy() for n, t in zip(names, x, strict=True)}
                return [torch.from_numpy(o) for o in sess.run(None, f)]

            out["torch.onnx"] = call
    return out


def _build(name: str, peers: list[str]) -> dict:
    model, inputs = models.get(name, batch=2)
    info = models.info(name)
    built: dict = {"model": model}
    try:
        built["fxonnx"] = fxonnx.compile(model, inputs, provider="cpu", batch_dims=info.batch_dims)
    except fxonnx.FxonnxError as e:
        built["fxonnx"] = f"failed: {type(e).__name__}"
    if "torch.onnx" in peers:
        try:
            built["torch.onnx"] = session(torch_onnx_export(name, model, inputs))
        except Exception as e:  # noqa: BLE001 - a peer failing is a result
            built["torch.onnx"] = f"failed: {type(e).__name__}"
    return built


def _measure(calls: dict[str, object], rounds: int, budget: float) -> dict[str, object]:
    """Interleaved rounds; iterations per round sized so one round of a call takes ~budget s."""
    ready = {k: v for k, v in calls.items() if callable(v)}
    iters = {}
    for k, fn in ready.items():
        fn()  # warm-up (first-signature checks, allocator, lazy init)
        t0 = time.perf_counter()
        fn()
        iters[k] = max(1, min(200, int(budget / max(time.perf_counter() - t0, 1e-6))))
    samples: dict[str, list[float]] = {k: [] for k in ready}
    order = list(ready.items())
    for r in range(rounds):
        # a different variant goes first each round, so none always follows the same one
        for k, fn in order[r % len(order) :] + order[: r % len(order)]:
            t0 = time.perf_counter()
            for _ in range(iters[k]):
                fn()
            samples[k].append((time.perf_counter() - t0) / iters[k])
    out: dict[str, object] = dict(calls)
    out.update({k: statistics.median(v) for k, v in samples.items()})
    out["rounds"] = samples
    return out


def _round_ratios(samples: dict[str, list[float]], peers: list[str]) -> list[float]:
    """fxonnx / the best peer within each round: their spread says whether a median ratio
    near 1 is a difference or noise (a machine that slowed down slows every column)."""
    present = [p for p in peers if p in samples]
    if "fxonnx" not in samples or not present:
        return []
    rounds = zip(samples["fxonnx"], *(samples[p] for p in present), strict=True)
    return sorted(ours / min(theirs) for ours, *theirs in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(models.names()))
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds")
    parser.add_argument("--budget", type=float, default=0.03, help="seconds per call per round")
    parser.add_argument("--peers", default=",".join(PEERS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    logging.getLogger("torch").setLevel(logging.ERROR)
    peers = [p for p in args.peers.split(",") if p]
    labels = ["fxonnx", *peers]
    print(
        "| model | batch | "
        + " | ".join(f"{lb} ms" for lb in labels)
        + " | fxonnx / best | per-round ratio, min-max |"
    )
    print("|---|---:|" + "---:|" * (len(labels) + 2))
    t_start = time.perf_counter()
    for name in args.models.split(","):
        built = _build(name, peers)
        for b in (int(s) for s in args.batches.split(",")):
            got = _measure(_calls(name, b, peers, built), args.rounds, args.budget)
            cells = [
                f"{v * 1e3:.3f}" if isinstance(v, float) else str(v) for v in map(got.get, labels)
            ]
            best = [got[p] for p in peers if isinstance(got.get(p), float)]
            ours = got["fxonnx"]
            ratio = f"{ours / min(best):.2f}" if best and isinstance(ours, float) else ""
            spread = _round_ratios(got["rounds"], peers)
            span = f"{spread[0]:.2f}-{spread[-1]:.2f}" if spread else ""
            print(f"| {name} | {b} | " + " | ".join(cells) + f" | {ratio} | {span} |", flush=True)
    print(f"\n{time.perf_counter() - t_start:.0f} s in all")


if __name__ == "__main__":
    main()
