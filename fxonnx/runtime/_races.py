"""onnxruntime CPU kernels that give wrong results with more than one intra-op thread.

``ScatterND`` with a reduction (add, mul, min, max) spreads its updates over the intra-op thread
pool and applies them to the output without synchronisation: two updates of the same index that
land on different threads can lose one of them. Measured on onnxruntime 1.31.1, one ScatterND
(reduction add; the gradient of a 2x bilinear up-sampling: 4096 updates of 128 floats into 961
distinct rows), the same inputs 1000 times: 60 runs wrong by up to 70% of the largest value with
2 threads, none with 1 (onnxruntime issues #18048 and #23396 report the same). fxonnx lowers
accumulating ``index_put`` (torch's decomposed up-sampling gradients), the embedding gradient
and ``embedding_bag`` to it. ``ScatterElements`` with a reduction runs sequentially (1000 runs of
the same scatter-add exact with 2 threads), and CUDA's kernels use atomics.
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
