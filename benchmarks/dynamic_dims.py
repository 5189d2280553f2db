"""What symbolic dims cost: export time and onnxruntime latency, static vs dynamic, in one run.

For every zoo model: ``fxonnx.export`` (default passes) with every dim static
(``dynamic_dims=None``), with the batch dynamic (the zoo's batch dims, the default), and with
every named dim of the zoo dynamic (``info.dynamic_dims``: batch and seq for text models);
``torch.onnx.export(dynamo=True)`` with the batch dynamic beside them. Then the latency of the
fully dynamic export against the static one at the example's shapes (same session options,
interleaved rounds, medians): shape arithmetic should fold away at session creation. With
``--baseline DIR`` (a checkout of an older fxonnx), that version's batch-dynamic export time is
measured too, in a subprocess of the same run, for the same models. Prints Markdown tables;
never asserts.

    python benchmarks/dynamic_dims.py [--models bert_tiny,llama_tiny] [--repeats 5]
        [--baseline ../fxonnx-old]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from _common import interleaved_latency, median_time, session, torch_onnx_export  # noqa: E402

import fxonnx  # noqa: E402
from fxonnx import models  # noqa: E402


def _export_ms(model: torch.nn.Module, inputs: tuple, repeats: int, **dims: object) -> float:
    fxonnx.export(model, inputs, **dims)  # warm-up (first symbolic trace imports a lot)
    return 1e3 * median_time(lambda: fxonnx.export(model, inputs, **dims), repeats)


_BASELINE = """
import json, statistics, sys, time, warnings
warnings.simplefilter("ignore")
import torch
torch.set_num_threads(2)
import fxonnx
from fxonnx import models
out = {}
for name in sys.argv[2].split(","):
    if name not in models.names():
        continue
    model, inputs = models.get(name, batch=2)
    dims = models.info(name).batch_dims
    fxonnx.export(model, inputs, batch_dims=dims)
    times = []
    for _ in range(int(sys.argv[1])):
        t0 = time.perf_counter()
        fxonnx.export(model, inputs, batch_dims=dims)
        times.append(time.perf_counter() - t0)
    out[name] = 1e3 * statistics.median(times)
print(json.dumps(out))
"""


def baseline_ms(checkout: str, names: list[str], repeats: int) -> dict[str, float]:
    """Batch-dynamic export times of the fxonnx in ``checkout`` (its own process and API)."""
    env = {**os.environ, "PYTHONPATH": checkout}
    proc = subprocess.run(
        [sys.executable, "-c", _BASELINE, str(repeats), ",".join(names)],
        capture_output=True,
        text=True,
        env=env,
        cwd=checkout,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(models.names()))
    parser.add_argument("--repeats", type=int, default=5, help="exports timed per variant")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved latency rounds")
    parser.add_argument("--no-torch-onnx", action="store_true", help="skip torch.onnx")
    parser.add_argument(
        "--sessions", type=int, default=3, help="onnxruntime sessions per variant (latency)"
    )
    parser.add_argument("--baseline", metavar="DIR", help="an older fxonnx checkout to compare")
    args = parser.parse_args()
    names = args.models.split(",")
    old = baseline_ms(args.baseline, names, args.repeats) if args.baseline else {}
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    export_rows, latency_rows = [], []
    for name in names:
        model, inputs = models.get(name, batch=2)
        info = models.info(name)
        named = info.dynamic_dims
        try:
            static = _export_ms(model, inputs, args.repeats, dynamic_dims=None)
            batch = _export_ms(model, inputs, args.repeats, batch_dims=info.batch_dims)
            every = _export_ms(model, inputs, args.repeats, dynamic_dims=named)
        except fxonnx.FxonnxError as e:
            export_rows.append(f"| {name} | failed: {e.message.splitlines()[0][:70]} |||||||")
            continue
        theirs = "n/a | n/a"
        if not args.no_torch_onnx:
            try:
                theirs_ms = 1e3 * median_time(
                    lambda m=model, i=inputs, n=name: torch_onnx_export(n, m, i),
                    max(1, args.repeats // 2),
                )
                theirs = f"{theirs_ms:.0f} | {theirs_ms / batch:.1f}x"
            except Exception as e:  # noqa: BLE001 - a failed competitor is a table entry
                theirs = f"failed ({type(e).__name__}) |"
        before = f"{old[name]:.1f} | {batch / old[name]:.2f}" if name in old else "n/a | n/a"
        export_rows.append(
            f"| {name} | {static:.1f} | {batch:.1f} | {every:.1f} | {batch / static:.2f} | "
            f"{before} | "
            f"{'+'.join(sorted({n for d in named.values() for n in d.values()}))} | {theirs} |"
        )
        dyn = fxonnx.export(model, inputs, dynamic_dims=named)
        fixed = fxonnx.export(model, inputs, dynamic_dims=None)
        # several sessions of each: one session's arena placement can shift it by 5% at
        # 150 µs (the same graph measured 1.005 and 1.06 against its static twin)
        times = interleaved_latency(
            [session(m) for _ in range(args.sessions) for m in (dyn, fixed)],
            list(inputs),
            args.rounds,
            iters=20,
        )
        t_dyn, t_fixed = statistics.median(times[0::2]), statistics.median(times[1::2])
        latency_rows.append(
            f"| {name} | {1e3 * t_fixed:.3f} | {1e3 * t_dyn:.3f} | {t_dyn / t_fixed:.3f} |"
        )
        print(export_rows[-1], latency_rows[-1], file=sys.stderr)
    print(
        "| model | static export ms | batch dynamic ms | all named dims ms | batch / static "
        "| baseline batch ms | batch / baseline | dims | torch.onnx ms | torch.onnx / fxonnx batch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    print("\n".join(export_rows))
    print()
    print("| model | static ORT ms | dynamic ORT ms | dynamic / static |")
    print("|---|---:|---:|---:|")
    print("\n".join(latency_rows))


if __name__ == "__main__":
    main()
