"""Export time and onnxruntime latency: fxonnx.export vs torch.onnx.export(dynamo=True).

Both are measured in the same run, on the same model objects, warmed up first. The export time
is ``fxonnx.export`` as users call it (default passes included); the latency compares the
fxonnx model *before* any optimization pass (``passes="none"``) with torch.onnx's, under the
same onnxruntime session options (fxonnx.runtime.session_options); benchmarks/passes.py
measures what the passes add. Prints a Markdown table; never asserts.

    python benchmarks/export_speed.py [--models resnet18,mobilenet_v2] [--batch 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: E402, F401 - sets OMP_WAIT_POLICY before torch loads OpenMP
import torch  # noqa: E402
from _common import interleaved_latency, median_time, session, torch_onnx_export  # noqa: E402

import fxonnx  # noqa: E402
from fxonnx import models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(models.names()))
    parser.add_argument("--batch", type=int, default=1, help="batch size for latency")
    parser.add_argument("--repeats", type=int, default=5, help="exports timed per tool")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    args = parser.parse_args()
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    rows = []
    print(
        "| model | fxonnx export ms | torch.onnx export ms | speed-up | "
        "fxonnx (no passes) ORT ms | torch.onnx ORT ms | latency ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        model, inputs = models.get(name, batch=2)
        info = models.info(name)
        try:
            ours = fxonnx.export(model, inputs, batch_dims=info.batch_dims, passes="none")
            t_ours = median_time(
                lambda m=model, i=inputs, d=info.batch_dims: fxonnx.export(m, i, batch_dims=d),
                args.repeats,
            )
        except fxonnx.FxonnxError as e:
            print(f"| {name} | failed: {e.message.splitlines()[0][:60]} | | | | | |")
            continue
        try:
            theirs = torch_onnx_export(name, model, inputs)
            t_theirs = median_time(
                lambda m=model, i=inputs, n=name: torch_onnx_export(n, m, i),
                max(1, args.repeats // 2),
            )
        except Exception as e:  # noqa: BLE001 - a competitor failing is a result, not a crash
            print(f"| {name} | {t_ours * 1e3:.1f} | failed: {type(e).__name__} | | | | |")
            continue
        _, lat_inputs = models.get(name, batch=args.batch, seed=1)
        lat = interleaved_latency([session(ours), session(theirs)], lat_inputs, args.rounds, 5)
        rows.append((name, t_ours, t_theirs, lat))
        print(
            f"| {name} | {t_ours * 1e3:.1f} | {t_theirs * 1e3:.0f} | {t_theirs / t_ours:.1f}x | "
            f"{lat[0] * 1e3:.3f} | {lat[1] * 1e3:.3f} | {lat[0] / lat[1]:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
