"""Fold ONNX nodes that only move initializer data (the gate reordering of recurrent weights, a
transposed constant) into new initializers, so the saved graph is as small as the session sees it.

The FX pass ``const_fold`` cannot see these nodes: they are emitted by lowering rules. Only exact
data-movement ops are folded (no arithmetic, so no rounding differs from onnxruntime), evaluated in
one go by onnx's reference evaluator, and only when the initializers do not grow in total.
"""

from __future__ import annotations

import math

import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

MOVEMENT_OPS = frozenset(
    {
        "Concat",
        "Flatten",
        "Gather",
        "Identity",
        "Reshape",
        "Slice",
        "Split",
        "Squeeze",
        "Transpose",
        "Unsqueeze",
    }
)


def fold_initializer_nodes(model: onnx.ModelProto) -> int:
    """Replace movement nodes whose inputs are all initializers by initializers, in place; returns
    the number of nodes folded (0 when folding would make the initializers larger)."""
    graph = model.graph
    known = {t.name for t in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    folded: list[onnx.NodeProto] = []
    for node in graph.node:
        if (
            node.domain in ("", "ai.onnx")
            and node.op_type in MOVEMENT_OPS
            and any(node.input)
            and all(i in known for i in node.input if i)
            and not graph_outputs.intersection(node.output)
        ):
            folded.append(node)
            known.update(node.output)
    if not folded:
        return 0
    folded_ids = {id(n) for n in folded}
    kept = [n for n in graph.node if id(n) not in folded_ids]
    produced = {o for n in folded for o in n.output}
    reads = list(dict.fromkeys(_reads(kept)))  # subgraphs (Scan, If bodies) read outer values
    needed = [name for name in reads if name in produced]
    values = _evaluate(model, folded, needed)
    still_used = set(reads) | graph_outputs
    old = [t for t in graph.initializer if t.name not in still_used]
    new = [numpy_helper.from_array(values[name], name) for name in needed]
    if sum(_numel(t) for t in new) > sum(_numel(t) for t in old):
        return 0
    kept = [_copy(n) for n in kept]  # detached: the repeated field is cleared below
    remaining = [_copy(t) for t in graph.initializer if t.name in still_used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(remaining + new)
    return len(folded)


def _reads(nodes: list[onnx.NodeProto]) -> list[str]:
    """Every value name ``nodes`` read, inside their subgraphs too."""
    names: list[str] = []
    for node in nodes:
        names += [i for i in node.input if i]
        for attr in node.attribute:
            graphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
            for g in graphs:
                names += _reads(list(g.node))
    return names


def _evaluate(model: onnx.ModelProto, nodes: list[onnx.NodeProto], outputs: list[str]) -> dict:
    """Run ``nodes`` (inputs: the model's initializers) and return ``outputs`` by name."""
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(
        nodes,
        "fold",
        [],
        [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in outputs],
        initializer=[t for t in model.graph.initializer if t.name in used],
    )
    sub = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    results = ReferenceEvaluator(sub).run(None, {})
    return dict(zip(outputs, results, strict=True))


def _copy(message):
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def _numel(t: onnx.TensorProto) -> int:
    return math.prod(t.dims)
