"""What the optimization passes buy: ONNX node count and onnxruntime latency per zoo model.

Columns: fxonnx with ``passes="none"`` and ``passes="default"`` (the standard-ONNX model
``fxonnx.compile`` writes by default, no ``fuse_activation``), ``torch.onnx.export(dynamo=True)``
and, when ``import onnxslim`` works, that export after ``onnxslim.slim``. "ORT nodes" counts the
nodes onnxruntime's own optimizer leaves (what the session runs). Latency is the median
of interleaved rounds (all variants of a model take turns each round), one session each with
``fxonnx.runtime.session_options()`` (graph optimization level ALL, no spinning), at batch 1
and 16. onnxslim is not a dependency: install it somewhere throwaway and put it on PYTHONPATH,
e.g. ``pip install --target /tmp/slim --no-deps onnxslim``. Prints a Markdown table; never
asserts.

    python benchmarks/passes.py [--models resnet18,mlp] [--iters 3] [--rounds 5] [--batches 1,16]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: E402, F401 - sets OMP_WAIT_POLICY before torch loads OpenMP
import onnx  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    interleaved_latency,
    optimized_node_count,
    session,
    torch_onnx_export,
)

import fxonnx  # noqa: E402
from fxonnx import models  # noqa: E402

try:
    import onnxslim  # type: ignore[import-not-found]
except ImportError:
    onnxslim = None


def _variants(name: str, model: torch.nn.Module, inputs: tuple) -> dict[str, object]:
    """name -> ONNX model, or the reason it is missing."""
    info = models.info(name)
    out: dict[str, object] = {}
    for label, passes in (("none", "none"), ("default", "default")):
        try:
            compiled = fxonnx.compile(
                model, inputs, provider="cpu", batch_dims=info.batch_dims, passes=passes
            )
            out[label] = compiled.onnx_model
        except fxonnx.FxonnxError as e:
            out[label] = f"{type(e).__name__}"
    try:
        out["torch.onnx"] = torch_onnx_export(name, model, inputs)
    except Exception as e:  # noqa: BLE001 - a competitor failing is a result, not a crash
        out["torch.onnx"] = type(e).__name__
    if onnxslim is None:
        out["onnxslim"] = "not installed"
    elif isinstance(out["torch.onnx"], onnx.ModelProto):
        try:
            out["onnxslim"] = onnxslim.slim(out["torch.onnx"])
        except Exception as e:  # noqa: BLE001
            out["onnxslim"] = type(e).__name__
    else:
        out["onnxslim"] = "no torch.onnx model"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(models.names()))
    parser.add_argument("--batches", default="1,16", help="batch sizes for latency")
    parser.add_argument("--iters", type=int, default=3, help="runs per session per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    args = parser.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    batches = [int(b) for b in args.batches.split(",")]
    labels = ["none", "default", "torch.onnx", "onnxslim"]
    if onnxslim is None:
        print("note: onnxslim is not importable; its column is skipped\n")
    head = " | ".join(f"nodes {lb}" for lb in labels)
    head += " | " + " | ".join(f"ORT nodes {lb}" for lb in labels)
    lat = " | ".join(f"{lb} ms @{b}" for b in batches for lb in labels)
    print(f"| model | {head} | {lat} |")
    print("|---" + "|---:" * (len(labels) * (2 + len(batches))) + "|")
    t_start = time.perf_counter()
    for name in args.models.split(","):
        model, inputs = models.get(name, batch=2)
        model.eval()
        variants = _variants(name, model, inputs)
        cells = []
        for lb in labels:
            v = variants[lb]
            cells.append(str(len(v.graph.node)) if isinstance(v, onnx.ModelProto) else str(v))
        for lb in labels:
            v = variants[lb]
            cells.append(str(optimized_node_count(v)) if isinstance(v, onnx.ModelProto) else "")
        ready = [lb for lb in labels if isinstance(variants[lb], onnx.ModelProto)]
        sessions = [session(variants[lb]) for lb in ready]
        times: dict[tuple[str, int], float] = {}
        for b in batches:
            _, x = models.get(name, batch=b, seed=1)
            try:
                medians = interleaved_latency(sessions, x, args.rounds, args.iters)
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"| {name} | latency failed at batch {b}: {type(e).__name__} |")
                medians = [float("nan")] * len(sessions)
            for lb, t in zip(ready, medians, strict=True):
                times[(lb, b)] = t
        for b in batches:
            for lb in labels:
                t = times.get((lb, b))
                cells.append("" if t is None else f"{t * 1e3:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.perf_counter() - t_start:.0f} s in all")


if __name__ == "__main__":
    main()
