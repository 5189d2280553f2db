"""onnxruntime CPU kernels that give wrong results with more than one intra-op thread.

``ScatterND`` with a reduction (add, mul, min, max) loses updates of repeated indices when it
runs on several intra-op threads: the output comes out short of exactly some of the updates,
as from unsynchronised read-add-write on a shared row. Measured on onnxruntime 1.31.1 (2
cores): one ScatterND adding 64 rows of ones at one index, 59 of 200 runs wrong on 2 threads,
none on 1 (``benchmarks/ort_scatternd_race.py``); the scatter-add of unet_small's bilinear
gradient (4096 updates of 128 floats into 961 rows), 60 of 1000 runs wrong by up to 70% of the
largest value. How often depends on whether both threads really run at once (machine load);
onnxruntime issues #18048 and #23396 report the same. fxonnx lowers accumulating ``index_put``
(torch's decomposed up-sampling gradients), the embedding gradient and ``embedding_bag`` to
it. ``ScatterElements`` with a reduction runs sequentially (1000 runs of the same scatter-add
exact on 2 threads); CUDA's ScatterND reduces with atomics.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _nodes(g)


def _reduction(node: onnx.NodeProto) -> str:
    for attr in node.attribute:
        if attr.name == "reduction":
            return attr.s.decode()
    return "none"


def racy_on_threads(model: onnx.ModelProto) -> list[str]:
    """The nodes of ``model`` (subgraphs included) whose CPU kernel races with more than one
    intra-op thread, as ``"<name> (ScatterND, reduction=add)"``; run such a model on 1 thread."""
    return [
        f"{node.name or node.output[0]} ({node.op_type}, reduction={_reduction(node)})"
        for node in _nodes(model.graph)
        if node.op_type == "ScatterND" and node.domain in ("", "ai.onnx")
        if _reduction(node) != "none"
    ]
