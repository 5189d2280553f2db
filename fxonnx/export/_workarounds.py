"""Rewrites of the lowered graph around onnxruntime crashes: the graph computes the same
values, in a form onnxruntime loads."""

from __future__ import annotations

import onnx
from onnx import helper


def cast_before_transpose(graph: onnx.GraphProto) -> int:
    """Transpose -> Cast -> MatMul becomes Cast -> Transpose -> MatMul (a cast is elementwise,
    so the values are the same): onnxruntime 1.31 segfaults at session creation on the first
    form at optimization level ALL (its NCHWc transformer), for float64 and 16-bit casts
    alike. Only a Transpose whose one consumer is that Cast is moved. Returns the count."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer = {o: n for n in graph.node for o in n.output}
    outputs = {o.name for o in graph.output}
    moved = 0
    for cast in graph.node:
        if cast.op_type != "Cast" or cast.domain not in ("", "ai.onnx"):
            continue
        transpose = producer.get(cast.input[0])
        if transpose is None or transpose.op_type != "Transpose" or transpose.domain:
            continue
        if len(consumers.get(cast.input[0], [])) != 1 or cast.input[0] in outputs:
            continue
        if not any(u.op_type == "MatMul" for u in consumers.get(cast.output[0], [])):
            continue
        source, middle, out = transpose.input[0], cast.input[0], cast.output[0]
        to = helper.get_attribute_value(next(a for a in cast.attribute if a.name == "to"))
        perm = [a for a in transpose.attribute if a.name == "perm"]
        transpose.CopyFrom(helper.make_node("Cast", [source], [middle], name=transpose.name, to=to))
        cast.CopyFrom(
            helper.make_node("Transpose", [middle], [out], name=cast.name, perm=perm[0].ints)
            if perm
            else helper.make_node("Transpose", [middle], [out], name=cast.name)
        )
        moved += 1
    return moved
