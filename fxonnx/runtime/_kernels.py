"""The model an onnxruntime session can run, for dtypes its kernels or its Python API lack.

- onnxruntime's Python API has no bfloat16 arrays: bfloat16 graph inputs and outputs become
  float32 at the boundary, with Casts inside (exact both ways), and the caller feeds float32.
- An op with no kernel for a 16-bit float dtype on the provider (bfloat16 Conv, MaxPool... on
  the CPU) runs in float32 between Casts: its inputs widen exactly and the result rounds once,
  which is at least as accurate as a 16-bit kernel.
- float64 cannot be computed in float32 without losing what float64 is for: an op with no
  float64 kernel is refused with one error naming the op, the dtype and the fix.

When the model does not load, each node reading such a dtype is loaded on its own (once per op
and input types) to find the ops onnxruntime lacks; every node of those is widened.
"""

from __future__ import annotations

import copy
from typing import Any

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from .._errors import RuntimeSessionError
from ._providers import resolve

_WIDEN = (TensorProto.BFLOAT16, TensorProto.FLOAT16)
_NAMES = {
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.FLOAT16: "float16",
    TensorProto.DOUBLE: "float64",
    TensorProto.FLOAT: "float32",
}


def fit_kernels(model: onnx.ModelProto, provider: str) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` itself when onnxruntime loads it on ``provider`` (or it has no 16- or 64-bit
    floats), else a copy whose 16-bit ops without a kernel run in float32 between Casts, and
    notes saying which. Raises RuntimeSessionError naming the ops that cannot be fixed so."""
    if not _has_odd_floats(model):
        return model, []
    error = _load_error(model, provider)
    if error is None:
        return model, []
    missing = _missing_kernels(model, provider)
    refused = [(op, dtype) for op, dtype in missing if dtype not in _WIDEN]
    if refused or not missing:
        raise _refusal(refused, provider, error)
    out, notes = copy.deepcopy(model), []
    for op, dtype in missing:
        count = _widen(out, op, dtype)
        notes.append(
            f"{op} x{count} computed in float32 between Casts (onnxruntime has no "
            f"{_NAMES[dtype]} kernel for it on {provider})"
        )
    error = _load_error(out, provider)
    if error is not None:
        raise RuntimeSessionError(f"onnxruntime could not load the model: {error}")
    return out, notes


def float32_boundary(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """The model a session runs: bfloat16 graph inputs and outputs as float32 (onnxruntime's
    Python API has no bfloat16 arrays), cast inside; ``model`` itself when it has none."""
    if not _has_bfloat16_io(model):
        return model, None
    out = copy.deepcopy(model)
    names = _float32_boundary(out)
    return out, (
        f"bfloat16 inputs/outputs {names} cross into onnxruntime as float32 (its Python API has "
        "no bfloat16 arrays; the casts are exact)"
    )


_ODD = (*_WIDEN, TensorProto.DOUBLE)


def _has_odd_floats(model: onnx.ModelProto) -> bool:
    g = model.graph
    values = [v.type.tensor_type.elem_type for v in [*g.input, *g.output, *g.value_info]]
    values += [t.data_type for t in g.initializer]
    for node in g.node:
        values += [a.i for a in node.attribute if node.op_type == "Cast" and a.name == "to"]
        values += [a.t.data_type for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
    return any(v in _ODD for v in values)


def _has_bfloat16_io(model: onnx.ModelProto) -> bool:
    values = [*model.graph.input, *model.graph.output]
    return any(v.type.tensor_type.elem_type == TensorProto.BFLOAT16 for v in values)


def _float32_boundary(model: onnx.ModelProto) -> list[str]:
    """bfloat16 graph inputs and outputs as float32, cast to and from bfloat16 inside."""
    graph, changed = model.graph, []
    front = []
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.BFLOAT16:
            continue
        inner = value.name + "__bf16"
        _rename_uses(graph, value.name, inner)
        front.append(helper.make_node("Cast", [value.name], [inner], to=TensorProto.BFLOAT16))
        value.type.tensor_type.elem_type = TensorProto.FLOAT
        changed.append(value.name)
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.BFLOAT16:
            continue
        inner = value.name + "__bf16"
        for node in graph.node:
            node.output[:] = [inner if o == value.name else o for o in node.output]
        _rename_uses(graph, value.name, inner)
        graph.node.append(helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT))
        value.type.tensor_type.elem_type = TensorProto.FLOAT
        changed.append(value.name)
    for node in reversed(front):
        graph.node.insert(0, node)
    return changed


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]


def _load_error(model: onnx.ModelProto, provider: str) -> str | None:
    """onnxruntime's complaint about ``model`` (its first line), or None when it loads."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), opts, providers=resolve(provider))
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated classes
        return str(e).strip().splitlines()[0][:400]
    return None


def _missing_kernels(model: onnx.ModelProto, provider: str) -> list[tuple[str, int]]:
    """(op type, dtype) of the nodes reading a 16- or 64-bit float that onnxruntime cannot
    load on their own, each node probed as a one-node model (once per op and input types)."""
    types = _value_types(model)
    shapes = _value_infos(model)
    inits = {t.name: t for t in model.graph.initializer}
    seen: dict[tuple, bool] = {}
    missing: list[tuple[str, int]] = []
    for node in model.graph.node:
        kinds = tuple(types.get(i) for i in node.input)
        dtype = next((k for k in kinds if k in (*_WIDEN, TensorProto.DOUBLE)), None)
        if dtype is None or any(a.type in _GRAPH_ATTRS for a in node.attribute):
            continue
        key = (node.domain, node.op_type, kinds)
        if key not in seen:
            error = _load_error(_one_node(model, node, shapes, inits), provider)
            seen[key] = error is None or not any(k in error for k in _NO_KERNEL)
        if not seen[key] and (node.op_type, dtype) not in missing:
            missing.append((node.op_type, dtype))
    return missing


_GRAPH_ATTRS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
# how onnxruntime says it has no kernel for a type (a probe failing otherwise proves nothing)
_NO_KERNEL = ("NOT_IMPLEMENTED", "Could not find an implementation", "Type Error")


def _one_node(
    model: onnx.ModelProto,
    node: onnx.NodeProto,
    shapes: dict[str, onnx.ValueInfoProto],
    inits: dict[str, onnx.TensorProto],
) -> onnx.ModelProto:
    inputs, initializers = [], []
    for name in dict.fromkeys(i for i in node.input if i):
        if name in inits:
            initializers.append(inits[name])
        else:
            inputs.append(shapes.get(name) or helper.make_empty_tensor_value_info(name))
    outputs = [shapes.get(o) or helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = helper.make_graph([node], "probe", inputs, outputs, initializers)
    return helper.make_model(
        graph, opset_imports=list(model.opset_import), ir_version=model.ir_version
    )


def _value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    g = onnx.shape_inference.infer_shapes(model).graph
    return {v.name: v for v in [*g.input, *g.value_info, *g.output]}


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def _widen(model: onnx.ModelProto, op: str, dtype: int) -> int:
    """Every ``op`` node reading ``dtype`` computes in float32: its ``dtype`` inputs are cast
    up, its ``dtype`` outputs are produced in float32 and cast back. Returns the count.

    An input that a Transpose produced is cast before a float32 copy of that Transpose:
    onnxruntime 1.31 crashes (segfault, at optimization level ALL: its NCHWc transformer) on
    Transpose(16-bit) -> Cast(float) -> MatMul."""
    types = _value_types(model)
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    nodes, count = [], 0
    for node in graph.node:
        if (
            node.op_type != op
            or node.domain not in ("", "ai.onnx")
            or dtype not in (types.get(i) for i in node.input)
        ):
            nodes.append(node)
            continue
        count += 1
        for k, name in enumerate(node.input):
            if types.get(name) == dtype:
                wide = f"{name}__f32_{count}_{k}"
                nodes += _cast_up(producer.get(name), name, wide)
                node.input[k] = wide
        back = []
        for k, name in enumerate(node.output):
            if name and types.get(name, dtype) == dtype:
                wide = f"{name}__f32"
                node.output[k] = wide
                back.append(helper.make_node("Cast", [wide], [name], to=dtype))
        nodes.append(node)
        nodes.extend(back)
    graph.ClearField("node")
    graph.node.extend(nodes)
    return count


def _cast_up(producer: onnx.NodeProto | None, name: str, wide: str) -> list[onnx.NodeProto]:
    if (
        producer is None
        or producer.op_type != "Transpose"
        or producer.domain not in ("", "ai.onnx")
    ):
        return [helper.make_node("Cast", [name], [wide], to=TensorProto.FLOAT)]
    source = producer.input[0]
    perm = [a for a in producer.attribute if a.name == "perm"]
    return [
        helper.make_node("Cast", [source], [wide + "_pre"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", [wide + "_pre"], [wide], perm=list(perm[0].ints))
        if perm
        else helper.make_node("Transpose", [wide + "_pre"], [wide]),
    ]


def _refusal(
    refused: list[tuple[str, int | None]], provider: str, error: str
) -> RuntimeSessionError:
    """One error naming every op and dtype onnxruntime lacks, and the fix."""
    if not refused:
        return RuntimeSessionError(f"onnxruntime could not load the model: {error}")
    ops = ", ".join(f"{op} ({_NAMES.get(d, 'dtype ' + str(d))})" for op, d in refused)
    hint = "convert the model and its inputs to float32 (model.float(), x.float())"
    if provider == "cpu" and any(d == TensorProto.DOUBLE for _, d in refused):
        hint += ", or compile with provider='cuda', whose kernels include float64"
    return RuntimeSessionError(
        f"onnxruntime has no {provider} kernel for {ops}; computing float64 in float32 would "
        "not keep its precision, so fxonnx does not widen it",
        hint=hint,
    )


def as_session_dtypes(tensors: list, session: Any) -> list:
    """bfloat16 tensors for inputs the session takes as float32 (``session_model``'s boundary)
    widened exactly; anything else is left for the session's own input check."""
    import numpy as np
    import torch

    out = []
    for spec, t in zip(session.inputs, tensors, strict=False):
        if t.dtype == torch.bfloat16 and spec.dtype == np.float32:
            t = t.float()
        out.append(t)
    return out + list(tensors[len(out) :])
