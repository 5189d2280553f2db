"""Convolutions whose weights are session inputs, in onnxruntime's blocked NCHWc layout.

onnxruntime's CPU optimizer rewrites a ``Conv`` into its NCHWc kernels (``com.microsoft.nchwc``
``ReorderInput`` -> ``Conv`` -> ``ReorderOutput``, channels in blocks of 8 or 16 for AVX2 or
AVX-512) only when the weight is an initializer: it reorders the weight once, offline. In the
dynamo backend the weights are graph inputs (an optimizer step changes them), so every
``Conv`` runs the plain NCHW kernel: 1.2-1.7x slower on resnet18's layers at batch 8
(measured on 2 AVX-512 cores, 2026-12-01). The reordering is a reshape and a transpose of the
weight, ``(O, I, kh, kw) -> (O/B, I/B, kh, kw, B_i, B_o)``, so it can run in the graph on every
call: this module rewrites each such ``Conv`` into the NCHWc nodes with that reorder in front
of the weight. The block size is what onnxruntime's own optimizer picks on this machine,
read once from a probe session; where it does not block (no AVX2, another architecture) the
model is left alone.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile

import numpy as np
import onnx
import onnx.numpy_helper
from onnx import TensorProto, helper

log = logging.getLogger(__name__)

DOMAIN = "com.microsoft.nchwc"

# Output positions (samples x height x width, an unknown dim counted as 1) under which the
# per-call weight reorder (about 1 ns per weight element) costs more than the NCHWc kernel
# saves (about 4 ps per weight element and position)
MIN_POSITIONS = 1024


@functools.cache
def block_size() -> int | None:
    """The channel block onnxruntime's NCHWc optimizer uses on this CPU (8 or 16), or None
    when it does not rewrite convolutions here: a 32-channel 1x1 ``Conv`` with a constant
    weight is optimized once and its reordered weight compared with each candidate layout."""
    import onnxruntime as ort

    channels = 32
    w = np.arange(channels * channels, dtype=np.float32).reshape(channels, channels, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 4, 4])],
        [onnx.numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.optimized_model_filepath = os.path.join(tmp, "probe.onnx")
            ort.InferenceSession(
                model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
            optimized = onnx.load(opts.optimized_model_filepath)
    except Exception as e:  # no NCHWc then: the plain kernels are always right
        log.info("fxonnx: NCHWc probe failed: %s", e)
        return None
    if not any(n.domain == DOMAIN for n in optimized.graph.node):
        return None
    for init in optimized.graph.initializer:
        got = onnx.numpy_helper.to_array(init)
        for block in (16, 8):
            if got.shape == w.shape and np.array_equal(got, _reorder_array(w, block)):
                return block
    return None


def _reorder_array(w: np.ndarray, block: int) -> np.ndarray:
    o, i, *kernel = w.shape
    blocked = w.reshape(o // block, block, i // block, block, *kernel)
    return blocked.transpose(0, 2, 4, 5, 3, 1).reshape(w.shape)


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int | None, ...]] = {}
    graph = inferred.graph
    for v in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = v.type.tensor_type
        if t.elem_type != TensorProto.FLOAT or not t.HasField("shape"):
            continue
        shapes[v.name] = tuple(
            d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim
        )
    return shapes


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def rewrite(model: onnx.ModelProto, block: int | None) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` whose ``Conv`` nodes with a run-time float weight of static shape
    ``(O, I, kh, kw)``, ``O`` and ``I`` multiples of ``block``, one group and explicit pads
    run as NCHWc nodes; and how many were rewritten (``model`` itself when none was)."""
    if block is None:
        return model, 0
    initializers = {i.name for i in model.graph.initializer}
    candidates = [
        n
        for n in model.graph.node
        if n.op_type == "Conv" and n.domain in ("", "ai.onnx") and len(n.input) >= 2
        if n.input[1] not in initializers
    ]
    if not candidates:
        return model, 0
    shapes = _static_shapes(model)
    chosen = []
    for node in candidates:
        w, x = shapes.get(node.input[1]), shapes.get(node.input[0])
        attrs = _attrs(node)
        if w is None or x is None or len(w) != 4 or len(x) != 4 or None in w:
            continue
        if attrs.get("group", 1) != 1 or attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
            continue
        if w[0] % block or w[1] % block or w[2] * w[3] == 1:
            continue
        if any(s != 1 for s in attrs.get("strides", [1, 1])):
            continue
        y = shapes.get(node.output[0])
        positions = (y[0] or 1) * (y[2] or 1) * (y[3] or 1) if y is not None and len(y) == 4 else 0
        if positions < MIN_POSITIONS:
            continue
        chosen.append((node, w, attrs))
    if not chosen:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = list(out.graph.node)
    index = {id(n): i for i, n in enumerate(model.graph.node)}
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for k, (node, (o, i, kh, kw), attrs) in enumerate(chosen):
        p = f"fxonnx_nchwc{k}_"
        six = onnx.numpy_helper.from_array(
            np.array([o // block, block, i // block, block, kh, kw], np.int64), p + "s6"
        )
        four = onnx.numpy_helper.from_array(np.array([o, i, kh, kw], np.int64), p + "s4")
        out.graph.initializer.extend([six, four])
        conv_attrs = {"kernel_shape": [kh, kw]}
        for name in ("pads", "strides", "dilations"):
            if name in attrs:
                conv_attrs[name] = attrs[name]
        bias = [node.input[2]] if len(node.input) > 2 and node.input[2] else []
        replaced[index[id(node)]] = [
            helper.make_node("Reshape", [node.input[1], p + "s6"], [p + "w6"]),
            helper.make_node("Transpose", [p + "w6"], [p + "w6t"], perm=[0, 2, 4, 5, 3, 1]),
            helper.make_node("Reshape", [p + "w6t", p + "s4"], [p + "w"]),
            helper.make_node("ReorderInput", [node.input[0]], [p + "x"], domain=DOMAIN),
            helper.make_node(
                "Conv", [p + "x", p + "w", *bias], [p + "y"], domain=DOMAIN, **conv_attrs
            ),
            helper.make_node(
                "ReorderOutput", [p + "y"], [node.output[0]], domain=DOMAIN, channels=o
            ),
        ]
    del out.graph.node[:]
    for j, n in enumerate(nodes):
        out.graph.node.extend(replaced.get(j, [n]))
    if not any(op.domain == DOMAIN for op in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out, len(chosen)
