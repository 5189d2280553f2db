"""torch.compile backends on the zoo: eager, inductor and backend="fxonnx", in one run.

Inference (``torch.no_grad()``, eval mode) at each batch, by default and with
``options={"freeze": True}`` (weights baked into the sessions), and one training step
(``zero_grad(); loss.backward(); opt.step()`` with SGD, dropout off) at the training batch,
also with ``options={"torch_kernels": False}`` (every gradient op in onnxruntime).
All variants run interleaved round by round in the same process; medians. An inductor build
that fails is reported as such. Then the call overhead of the backend on a tiny graph (mlp,
batch 1): the compiled model, its onnxruntime partition module alone, and the same
onnxruntime session called directly with prepared numpy feeds. Prints Markdown; never asserts.

    python benchmarks/compile_backend.py [--models mlp,resnet18] [--batches 1,16]
        [--train-batch 8] [--rounds 7] [--iters 3] [--no-inductor]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: E402,F401  (OMP_WAIT_POLICY=PASSIVE before torch spins up)
import torch  # noqa: E402
import torch.utils._pytree as pytree  # noqa: E402
from _common import train_without_dropout  # noqa: E402
from torch import nn  # noqa: E402

import fxonnx.dynamo as fd  # noqa: E402
from fxonnx import models  # noqa: E402

DEFAULT_MODELS = "mlp,lenet_cifar,resnet18,mobilenet_v2,transformer_encoder,vit_tiny,bert_tiny"


def _loss(out: object) -> torch.Tensor:
    return sum((t.float() ** 2).mean() for t in pytree.tree_leaves(out) if t.is_floating_point())


def _opts(args: argparse.Namespace) -> dict:
    return {"threads": args.threads} if args.threads else {}


def _interleaved(fns: dict[str, Callable[[], object] | None], rounds: int, iters: int) -> dict:
    live = {k: f for k, f in fns.items() if f is not None}
    samples: dict[str, list[float]] = {k: [] for k in live}
    for _ in range(rounds):
        for k, f in live.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                f()
            samples[k].append((time.perf_counter() - t0) / iters)
    return {k: statistics.median(v) * 1e3 for k, v in samples.items()}


def _build(make: Callable[[], Callable], warm: Callable[[Callable], object]) -> tuple:
    """(fn, compile seconds) or (None, reason) when the backend fails to build."""
    t0 = time.perf_counter()
    try:
        fn = make()
        warm(fn)
        warm(fn)
    except Exception as e:  # a backend that cannot build is a result, not a crash
        return None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
    return fn, time.perf_counter() - t0


def inference_rows(name: str, batch: int, args: argparse.Namespace) -> dict:
    torch._dynamo.reset()
    model, inputs = models.get(name, batch=batch)
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)

    def warm(fn: Callable) -> None:
        with torch.no_grad():
            fn(*inputs)

    built = {
        "eager": (model, 0.0),
        "inductor": _build(lambda: torch.compile(copy.deepcopy(model)), warm)
        if args.inductor
        else (None, "skipped"),
        "fxonnx": _build(
            lambda: torch.compile(copy.deepcopy(model), backend="fxonnx", options=_opts(args)), warm
        ),
        "freeze": _build(
            lambda: torch.compile(
                copy.deepcopy(model), backend="fxonnx", options={**_opts(args), "freeze": True}
            ),
            warm,
        ),
    }

    def call(fn: Callable) -> Callable:
        def run() -> None:
            with torch.no_grad():
                fn(*inputs)

        return run

    ms = _interleaved(
        {k: call(f) if f is not None else None for k, (f, _) in built.items()},
        args.rounds,
        args.iters,
    )
    return {"ms": ms, "built": built}


def training_rows(name: str, batch: int, args: argparse.Namespace) -> dict:
    torch._dynamo.reset()
    model, inputs = models.get(name, batch=batch)
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    model = train_without_dropout(model)
    steps: dict[str, Callable | None] = {}
    built: dict[str, tuple] = {}
    for kind in ("eager", "inductor", "fxonnx", "onnx_only"):
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=1e-3)
        if kind == "inductor" and not args.inductor:
            steps[kind], built[kind] = None, (None, "skipped")
            continue

        def make(m: nn.Module = m, kind: str = kind) -> Callable:
            if kind == "eager":
                return m
            if kind == "inductor":
                return torch.compile(m)
            extra = {"torch_kernels": False} if kind == "onnx_only" else {}
            return torch.compile(m, backend="fxonnx", options={**_opts(args), **extra})

        def step_of(fn: Callable, opt: torch.optim.Optimizer = opt) -> Callable:
            def step() -> None:
                opt.zero_grad(set_to_none=True)
                _loss(fn(*inputs)).backward()
                opt.step()

            return step

        fn, info = _build(make, lambda f, s=step_of: s(f)())
        built[kind] = (fn, info)
        steps[kind] = step_of(fn) if fn is not None else None
    return {"ms": _interleaved(steps, args.rounds, max(1, args.iters // 2)), "built": built}


def _cell(row: dict, kind: str) -> str:
    fn, info = row["built"][kind]
    if fn is None:
        return info
    return f"{row['ms'][kind]:.3f}"


def _ratio(row: dict, kind: str, base: str) -> str:
    ms = row["ms"]
    if kind not in ms or base not in ms:
        return "-"
    return f"{ms[base] / ms[kind]:.2f}x"


def overhead(args: argparse.Namespace) -> list[str]:
    """Per-call cost on a tiny graph: compiled model vs its partition vs the raw session."""
    torch._dynamo.reset()
    fd.reset_stats()
    model, (x,) = models.get("mlp", batch=1)
    compiled = torch.compile(model, backend="fxonnx", options=_opts(args))
    with torch.no_grad():
        compiled(x)
    (part,) = fd.stats().partitions()
    floor = torch.compile(copy.deepcopy(model), backend="aot_eager")
    _call(floor, x)
    # the partition's inputs, in order: what aot passes (weights and the input)
    params = list(model.parameters())  # what aot_autograd passes: the Parameters themselves
    ordered = _partition_args(part, params, x)
    np_feeds = {n: t.detach().numpy() for n, t in zip(part._in_names, ordered, strict=True)}
    ort_sess = part._ort
    names = part._out_names

    def compiled_call() -> None:
        with torch.no_grad():
            compiled(x)

    ms = _interleaved(
        {
            "torch.compile(backend='fxonnx') call": compiled_call,
            "torch.compile(backend='aot_eager') call (dynamo + aot floor)": lambda: _call(floor, x),
            "its OnnxPartition called directly": lambda: part(*ordered),
            "onnxruntime InferenceSession.run (numpy feeds ready)": lambda: ort_sess.run(
                names, np_feeds
            ),
            "eager": lambda: _eager(model, x),
        },
        args.rounds * 3,
        200,
    )
    base = ms["onnxruntime InferenceSession.run (numpy feeds ready)"]
    lines = ["| call (mlp, batch 1) | us per call | vs raw session |", "|---|---:|---:|"]
    for k, v in ms.items():
        lines.append(f"| {k} | {v * 1e3:.1f} | {v / base:.2f}x |")
    return lines


def _call(fn: Callable, x: torch.Tensor) -> None:
    with torch.no_grad():
        fn(x)


def _eager(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def _partition_args(part: fd.OnnxPartition, params: list, x: torch.Tensor) -> list:
    """The tensors the partition takes, matched by shape to the model's weights and input."""
    pool = [*params, x]
    vals = [n.meta["val"] for n in part.torch_module.graph.nodes if n.op == "placeholder"]
    out = []
    for v in vals:
        i = next(i for i, t in enumerate(pool) if tuple(t.shape) == tuple(v.shape))
        out.append(pool.pop(i))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--no-inductor", dest="inductor", action="store_false")
    p.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads")
    p.add_argument("--overhead-only", action="store_true", help="only the call-overhead table")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    fd.register()
    batches = [int(b) for b in args.batches.split(",")]
    if args.overhead_only:
        print("\n".join(overhead(args)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("## Inference (ms per call, median; speed-up vs eager)\n")
    print(
        "| model | batch | eager | inductor | fxonnx | fxonnx freeze | inductor vs eager | "
        "fxonnx vs eager | fxonnx vs inductor | freeze vs inductor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        for batch in batches:
            row = inference_rows(name, batch, args)
            ind = row["ms"].get("inductor")
            vs_ind = [
                f"{ind / row['ms'][k]:.2f}x" if ind and k in row["ms"] else "-"
                for k in ("fxonnx", "freeze")
            ]
            print(
                f"| {name} | {batch} | {_cell(row, 'eager')} | {_cell(row, 'inductor')} | "
                f"{_cell(row, 'fxonnx')} | {_cell(row, 'freeze')} | "
                f"{_ratio(row, 'inductor', 'eager')} | {_ratio(row, 'fxonnx', 'eager')} | "
                f"{vs_ind[0]} | {vs_ind[1]} |",
                flush=True,
            )
    print(f"\n## One training step, batch {args.train_batch} (ms, median)\n")
    print(
        "| model | eager | inductor | fxonnx | fxonnx, torch_kernels off | inductor vs eager | "
        "fxonnx vs eager | torch_kernels off vs eager |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        row = training_rows(name, args.train_batch, args)
        print(
            f"| {name} | {_cell(row, 'eager')} | {_cell(row, 'inductor')} | "
            f"{_cell(row, 'fxonnx')} | {_cell(row, 'onnx_only')} | "
            f"{_ratio(row, 'inductor', 'eager')} | {_ratio(row, 'fxonnx', 'eager')} | "
            f"{_ratio(row, 'onnx_only', 'eager')} |",
            flush=True,
        )
    print("\n## Call overhead on a tiny graph\n")
    print("\n".join(overhead(args)))


if __name__ == "__main__":
    main()
