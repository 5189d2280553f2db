"""onnxruntime's CPU ScatterND(reduction="add") loses updates of repeated indices on >1 thread.

One ScatterND node adds ``--updates`` rows of ones, all at index 0, into a zero row of
``--width`` floats: every element must come out as the number of updates (small integers: exact
in float32, whatever the order of the additions). The same inputs run ``--runs`` times on 1 and
on 2 intra-op threads. Measured (onnxruntime 1.31.1, 2 cores, loaded machine): 64 updates of
65536 floats, 57 of 200 runs wrong on 2 threads (whole rows short of updates), 0 of 200 on 1.
How often it shows depends on whether both threads really run at once. Why fxonnx gives such
graphs a one-thread session: ``fxonnx/runtime/_races.py``. Prints the counts; never asserts.

    python benchmarks/ort_scatternd_race.py [--updates 64] [--width 65536] [--runs 200]
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


def model(updates: int, width: int) -> onnx.ModelProto:
    f = TensorProto.FLOAT
    node = helper.make_node("ScatterND", ["data", "indices", "updates"], ["out"], reduction="add")
    graph = helper.make_graph(
        [node],
        "scatter_add",
        [
            helper.make_tensor_value_info("data", f, [1, width]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, [updates, 1]),
            helper.make_tensor_value_info("updates", f, [updates, width]),
        ],
        [helper.make_tensor_value_info("out", f, [1, width])],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(m)
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=64)
    parser.add_argument("--width", type=int, default=65536)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    n, width = args.updates, args.width
    feeds = {
        "data": np.zeros((1, width), np.float32),
        "indices": np.zeros((n, 1), np.int64),
        "updates": np.ones((n, width), np.float32),
    }
    blob = model(n, width).SerializeToString()
    for threads in (1, 2):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        short = [int((session.run(None, feeds)[0] != n).sum()) for _ in range(args.runs)]
        lowest = min(float(session.run(None, feeds)[0].min()) for _ in range(10))
        print(
            f"onnxruntime {ort.__version__}, {threads} thread(s): {sum(s > 0 for s in short)} of "
            f"{args.runs} runs wrong (worst: {max(short)} of {width} elements != {n}); "
            f"smallest element in 10 more runs: {lowest:g}"
        )


if __name__ == "__main__":
    main()
