"""Conv or Gemm followed by its activation -> onnxruntime's fused CPU kernels (``com.microsoft``
FusedConv and FusedGemm), so the model file holds what the CPU session runs.

onnxruntime makes the same fusion itself at ORT_ENABLE_EXTENDED and above, and its NCHWc
layout rewrite takes FusedConv like Conv (the optimized graphs come out identical), so at the
default level this only makes the file smaller; sessions at lower levels run faster. The CUDA
provider has no FusedGemm and a Relu-only FusedConv, so CUDA models are left alone. Only float32
producers with initializer weights are fused (the contrib kernels are float32-only); a Clip
needs constant bounds.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import onnx
from onnx import helper, numpy_helper

CONTRIB = "com.microsoft"
CONV_ACTIVATIONS = frozenset({"Relu", "Tanh", "Sigmoid", "LeakyRelu", "Clip", "HardSigmoid"})
GEMM_ACTIVATIONS = frozenset({"Relu", "Tanh", "Sigmoid", "LeakyRelu"})
_FUSED = {"Conv": "FusedConv", "Gemm": "FusedGemm"}


def fuse_activations(model: onnx.ModelProto, provider: str) -> dict[str, int]:
    """Rewrite ``model`` in place for ``provider`` ("cpu" or "cuda"); returns pass-style stats:
    ``fused`` and ``miss:<reason>`` counts over the Conv/Gemm nodes an activation follows."""
    graph = model.graph
    users: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            users[name].append(node)
    outputs = {o.name for o in graph.output}
    inits = {t.name: t for t in graph.initializer}
    stats: Counter[str] = Counter()
    fused: set[int] = set()
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in _FUSED:
            continue
        act = users[node.output[0]][0] if users[node.output[0]] else None
        if act is None or act.domain not in ("", "ai.onnx") or act.op_type not in CONV_ACTIVATIONS:
            continue
        reason = _miss(node, act, users, outputs, inits, provider)
        if reason:
            stats["miss:" + reason] += 1
            continue
        node.attribute.extend(_activation_attrs(node.op_type, act, inits))
        node.op_type, node.domain = _FUSED[node.op_type], CONTRIB
        node.output[0] = act.output[0]
        fused.add(id(act))
        stats["fused"] += 1
    if fused:
        kept = [n for n in graph.node if id(n) not in fused]
        del graph.node[:]
        graph.node.extend(kept)
        if not any(o.domain == CONTRIB for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(CONTRIB, 1))
    return dict(stats)


def _miss(
    node: onnx.NodeProto,
    act: onnx.NodeProto,
    users: dict[str, list[onnx.NodeProto]],
    outputs: set[str],
    inits: dict[str, onnx.TensorProto],
    provider: str,
) -> str | None:
    if provider != "cpu":
        return "no_fused_kernel_on_" + provider
    if len(users[node.output[0]]) != 1 or node.output[0] in outputs:
        return "producer_has_other_users"
    weight = inits.get(node.input[1])
    if weight is None or weight.data_type != onnx.TensorProto.FLOAT:
        return "not_float32_initializer_weight"
    if node.op_type == "Gemm" and act.op_type not in GEMM_ACTIVATIONS:
        return "activation_not_fused_into_gemm"
    if act.op_type == "Clip" and _clip_bounds(act, inits) is None:
        return "clip_bounds_not_constant"
    return None


def _clip_bounds(act: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> list[float] | None:
    """[min, max] of a Clip whose bounds are scalar initializers (absent = unbounded)."""
    bounds = []
    for i, default in ((1, -3.4028234663852886e38), (2, 3.4028234663852886e38)):
        name = act.input[i] if len(act.input) > i else ""
        if not name:
            bounds.append(default)
            continue
        tensor = inits.get(name)
        value = None if tensor is None else numpy_helper.to_array(tensor)
        if value is None or value.size != 1:
            return None
        bounds.append(float(value.reshape(())))
    return bounds


def _activation_attrs(
    op: str, act: onnx.NodeProto, inits: dict[str, onnx.TensorProto]
) -> list[onnx.AttributeProto]:
    """FusedConv takes ``activation_params`` (LeakyRelu alpha; Clip min, max; HardSigmoid alpha,
    beta); FusedGemm takes ``activation_alpha``."""
    given = {a.name: helper.get_attribute_value(a) for a in act.attribute}
    if act.op_type == "LeakyRelu":
        params = [given.get("alpha", 0.01)]
    elif act.op_type == "HardSigmoid":
        params = [given.get("alpha", 0.2), given.get("beta", 0.5)]
    elif act.op_type == "Clip":
        params = _clip_bounds(act, inits) or []
    else:
        params = []
    attrs = [helper.make_attribute("activation", act.op_type)]
    if params and op == "Conv":
        attrs.append(helper.make_attribute("activation_params", [float(p) for p in params]))
    elif params:
        attrs.append(helper.make_attribute("activation_alpha", float(params[0])))
    return attrs
