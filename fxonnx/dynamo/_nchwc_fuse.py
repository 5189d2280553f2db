"""Peepholes on a model with NCHWc nodes (``_nchwc``), so that a blocked tensor stays blocked
from one convolution to the next, as onnxruntime keeps the tensors of its own NCHWc rewrite:
pooling, residual adds and activations on the blocked tensors, and no reorder back to NCHW
and in again between two blocked convolutions."""

from __future__ import annotations

import onnx
import onnx.numpy_helper
from onnx import helper

DOMAIN = "com.microsoft.nchwc"


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def fuse_blocked(graph: onnx.GraphProto, dims: dict | None = None) -> None:
    """Peepholes on the NCHWc nodes, in place, so that blocked tensors stay blocked between
    convolutions: a ``MaxPool`` of a blocked tensor runs as the NCHWc ``MaxPool``; an ``Add``
    of a blocked convolution's output and another blocked tensor of the same shape (``dims``:
    the shapes, symbols by name) becomes the convolution's ``Sum`` input (accumulated into
    its output, before its activation); a ``Relu`` that is the only reader of a blocked
    convolution's output becomes the convolution's ``activation``; a ``ReorderOutput`` read
    only by ``ReorderInput``s (one blocked convolution feeding the next) goes away with them,
    the blocked tensor passed on as it is."""
    _fuse_relus(graph)
    if dims:
        _block_max_pools(graph)
        count = len(graph.node) + 1
        while len(graph.node) < count:  # a residual block's output feeds the next one's Add
            count = len(graph.node)
            _fuse_sums(graph, dims)
            _fuse_relus(graph)
    _drop_reorder_pairs(graph)
    outputs = {v.name for v in graph.output}
    users = consumers(graph)
    unread = {
        id(n)
        for n in graph.node
        if n.domain == DOMAIN and n.op_type == "ReorderOutput"
        if n.output[0] not in outputs and not users.get(n.output[0])
    }
    _drop(graph, unread)


def _reordered(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """{NCHW tensor: the ReorderOutput that computes it from a blocked one}."""
    return {
        n.output[0]: n for n in graph.node if n.domain == DOMAIN and n.op_type == "ReorderOutput"
    }


def _channels(node: onnx.NodeProto) -> int:
    return next(a.i for a in node.attribute if a.name == "channels")


def _block_max_pools(graph: onnx.GraphProto) -> None:
    """A 2-D ``MaxPool`` (one output) of a ReorderOutput's tensor pools the blocked tensor."""
    reordered = _reordered(graph)
    nodes = []
    for node in graph.node:
        source = reordered.get(node.input[0]) if node.input else None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (
            node.op_type != "MaxPool"
            or node.domain not in ("", "ai.onnx")
            or source is None
            or len(node.output) != 1
            or len(attrs.get("kernel_shape", [])) != 2
            or attrs.get("storage_order", 0)
            or attrs.get("auto_pad", b"NOTSET") != b"NOTSET"
        ):
            nodes.append(node)
            continue
        pooled = node.output[0] + "_fxonnx_nchwc"
        kept = {
            k: v
            for k, v in attrs.items()
            if k in ("kernel_shape", "pads", "strides", "dilations", "ceil_mode")
        }
        nodes.append(
            helper.make_node("MaxPool", [source.input[0]], [pooled], domain=DOMAIN, **kept)
        )
        nodes.append(
            helper.make_node(
                "ReorderOutput",
                [pooled],
                [node.output[0]],
                domain=DOMAIN,
                channels=_channels(source),
            )
        )
    del graph.node[:]
    graph.node.extend(nodes)


def _fuse_sums(graph: onnx.GraphProto, dims: dict) -> None:
    """``Add(ReorderOutput(conv), ReorderOutput(other))`` -> the conv with ``Sum`` = other,
    for a blocked conv without activation or Sum whose output only that Add reads, the two
    tensors of one shape (by dims and symbols) and channel count."""
    outputs = {v.name for v in graph.output}
    users = consumers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    reordered = _reordered(graph)
    dead: set[int] = set()
    for node in graph.node:
        if node.op_type != "Add" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
            continue
        a, b = node.input
        ra, rb = reordered.get(a), reordered.get(b)
        shape = dims.get(a)
        if ra is None or rb is None or shape is None or None in shape or dims.get(b) != shape:
            continue
        if dims.get(node.output[0]) != shape or _channels(ra) != _channels(rb):
            continue
        for ro, other in ((ra, rb), (rb, ra)):
            conv = producer.get(ro.input[0])
            if conv is None or conv.domain != DOMAIN or conv.op_type != "Conv":
                continue
            if len(conv.input) > 3 or any(x.name == "activation" for x in conv.attribute):
                continue
            if len(users.get(conv.output[0], [])) != 1 or len(users.get(ro.output[0], [])) != 1:
                continue
            if ro.output[0] in outputs or id(ro) in dead or id(other) in dead:
                continue
            while len(conv.input) < 3:
                conv.input.append("")
            conv.input.append(other.input[0])
            ro.output[0] = node.output[0]
            dead.add(id(node))
            break
    _drop(graph, dead)


def _activation(node: onnx.NodeProto, consts: dict) -> tuple[str, list[float]] | None:
    """The NCHWc convolution's ``activation`` (and its params) that computes ``node``:
    ``Relu``, or ``Clip`` with constant scalar bounds (ReLU6)."""
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Relu":
        return "Relu", []
    if node.op_type != "Clip" or len(node.input) != 3:
        return None
    bounds = [consts.get(name) for name in node.input[1:]]
    if any(b is None or b.size != 1 for b in bounds):
        return None
    return "Clip", [float(b.reshape(())) for b in bounds]


def _fuse_relus(graph: onnx.GraphProto) -> None:
    clips = {i for n in graph.node if n.op_type == "Clip" for i in n.input[1:]}
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer if t.name in clips}
    outputs = {v.name for v in graph.output}
    users = consumers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    dead: set[int] = set()
    for node in graph.node:
        if node.domain != DOMAIN or node.op_type != "ReorderOutput":
            continue
        conv = producer.get(node.input[0])
        readers = users.get(node.output[0], [])
        if conv is None or conv.op_type != "Conv" or node.output[0] in outputs:
            continue
        if len(users.get(conv.output[0], [])) != 1 or len(readers) != 1:
            continue
        relu = readers[0]
        activation = _activation(relu, consts)
        if activation is None or any(a.name == "activation" for a in conv.attribute):
            continue
        conv.attribute.append(helper.make_attribute("activation", activation[0]))
        if activation[1]:
            conv.attribute.append(helper.make_attribute("activation_params", activation[1]))
        dead.add(id(relu))
        node.output[0] = relu.output[0]
    _drop(graph, dead)


def _drop_reorder_pairs(graph: onnx.GraphProto) -> None:
    outputs = {v.name for v in graph.output}
    users = consumers(graph)
    rename: dict[str, str] = {}
    dead: set[int] = set()
    for node in graph.node:
        if node.domain != DOMAIN or node.op_type != "ReorderOutput" or node.output[0] in outputs:
            continue
        readers = users.get(node.output[0], [])
        if not readers or any(r.domain != DOMAIN or r.op_type != "ReorderInput" for r in readers):
            continue
        if any(a.name == "channels_last" and a.i for r in readers for a in r.attribute):
            continue
        dead.add(id(node))
        for r in readers:
            dead.add(id(r))
            rename[r.output[0]] = node.input[0]
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
    _drop(graph, dead)


def _drop(graph: onnx.GraphProto, dead: set[int]) -> None:
    if dead:
        kept = [n for n in graph.node if id(n) not in dead]
        del graph.node[:]
        graph.node.extend(kept)
