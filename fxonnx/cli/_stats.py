"""Static facts about an ONNX model: I/O with dynamic dims, op histogram, parameters, FLOPs."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import onnx
from onnx import helper, shape_inference

from .._dimexpr import METADATA_KEY, constraints_from_json, evaluate


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    shape = value.type.tensor_type.shape
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in shape.dim]


def _dtype(value: onnx.ValueInfoProto) -> str:
    elem = value.type.tensor_type.elem_type
    return str(helper.tensor_dtype_to_np_dtype(elem)) if elem else "?"


def io(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Graph inputs (initializers excluded) and outputs with their dims; str dims are dynamic."""
    inits = {i.name for i in model.graph.initializer}

    def row(v: onnx.ValueInfoProto) -> dict[str, Any]:
        return {"name": v.name, "shape": _dims(v), "dtype": _dtype(v)}

    return {
        "inputs": [row(v) for v in model.graph.input if v.name not in inits],
        "outputs": [row(v) for v in model.graph.output],
    }


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Op type -> count over the main graph and every subgraph (If/Loop/Scan bodies)."""
    counts: Counter[str] = Counter()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            key = (
                node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            )
            counts[key] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return dict(counts.most_common())


def parameters(model: onnx.ModelProto) -> tuple[int, int]:
    """(element count, bytes) of the initializers; external data is counted from its dims."""
    count = size = 0
    for init in model.graph.initializer:
        n = int(np.prod(init.dims)) if init.dims else 1
        count += n
        size += n * helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    return count, size


def _fix_dynamic(model: onnx.ModelProto, value: int) -> onnx.ModelProto:
    """A copy whose dynamic input dims are numbers, so shapes infer to numbers: ``batch`` (and
    unnamed dims) at ``value``, other names at their example size from ``fxonnx.dims``."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for init in fixed.graph.initializer:
        # inference needs the dims of weights, not their data; small int tensors (shapes for
        # Reshape/Expand) keep theirs for data propagation
        if init.data_type != onnx.TensorProto.INT64 or np.prod(init.dims) > 64:
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.ClearField("int64_data")
            init.ClearField("int32_data")
            init.ClearField("double_data")
    meta = {p.key: p.value for p in model.metadata_props}
    sizes = {
        n: c.get("example", value) for n, c in constraints_from_json(meta.get(METADATA_KEY)).items()
    }
    sizes["batch"] = value
    for inp in fixed.graph.input:
        for d in inp.type.tensor_type.shape.dim:
            if d.HasField("dim_param") or d.dim_value == 0:
                size = evaluate(d.dim_param, sizes) if d.HasField("dim_param") else None
                d.Clear()
                d.dim_value = size if size is not None and size > 0 else value
    for out in fixed.graph.output:  # stale symbolic output dims would clash with inferred ones
        out.type.tensor_type.ClearField("shape")
    return fixed


_UNFUSED = {"FusedConv": "Conv", "FusedGemm": "Gemm"}  # onnxruntime contrib ops (fuse_activation)


def _unfuse(model: onnx.ModelProto) -> None:
    """onnxruntime's FusedConv/FusedGemm as plain Conv/Gemm, in place: ONNX shape inference
    knows only the standard ops, and the activation adds no multiply-adds."""
    for node in model.graph.node:
        if node.domain == "com.microsoft" and node.op_type in _UNFUSED:
            node.domain, node.op_type = "", _UNFUSED[node.op_type]
            kept = [a for a in node.attribute if not a.name.startswith("activation")]
            del node.attribute[:]
            node.attribute.extend(kept)


def flops(model: onnx.ModelProto, batch: int = 1) -> tuple[int, list[str]]:
    """Estimated FLOPs (2 per multiply-add) of Conv, ConvTranspose, Gemm and MatMul with the
    dynamic dims set to ``batch``; the list names nodes whose shapes could not be inferred."""
    fixed = _fix_dynamic(model, batch)
    _unfuse(fixed)
    try:
        inferred = shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # noqa: BLE001 - an estimate: fall back to what the file already says
        inferred = fixed
    shapes: dict[str, list[int | str]] = {}
    for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        shapes[v.name] = _dims(v)
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total, unknown = 0, []

    def known(name: str) -> list[int] | None:
        s = shapes.get(name)
        if s is None or any(not isinstance(d, int) or d <= 0 for d in s):
            return None
        return s  # type: ignore[return-value]

    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        a, b, out = known(node.input[0]), known(node.input[1]), known(node.output[0])
        if a is None or b is None or out is None:
            unknown.append(node.name or node.op_type)
            continue
        if node.op_type == "Conv":  # weight (M, C/g, k...): each output does C/g*prod(k) MACs
            total += 2 * int(np.prod(out)) * int(np.prod(b[1:]))
        elif node.op_type == "ConvTranspose":  # weight (C, M/g, k...): each input fans out
            total += 2 * int(np.prod(a)) * int(np.prod(b[1:]))
        elif node.op_type == "Gemm":
            trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
            k = a[0] if trans_a else a[1]
            total += 2 * int(np.prod(out)) * k
        else:  # MatMul: the contracted dim is the last of A (a vector A has just one)
            total += 2 * int(np.prod(out)) * a[-1]
    return total, unknown


def summary(model: onnx.ModelProto) -> dict[str, Any]:
    count, size = parameters(model)
    hist = op_histogram(model)
    total_flops, unknown = flops(model)
    return {
        **io(model),
        "nodes": sum(hist.values()),
        "op_types": len(hist),
        "ops": hist,
        "parameters": count,
        "parameter_bytes": size,
        "flops_batch1": total_flops,
        "flops_unknown_nodes": unknown,
        "opset": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }
