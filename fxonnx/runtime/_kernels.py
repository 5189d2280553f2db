"""The model an onnxruntime session can run, for dtypes its kernels or its Python API lack.

- onnxruntime's Python API has no bfloat16 arrays: bfloat16 graph inputs and outputs become
  float32 at the boundary, with Casts inside (exact both ways), and the caller feeds float32.
- An op with no kernel for a 16-bit float dtype on the provider (bfloat16 Conv, MaxPool... on
  the CPU) runs in float32 between Casts: its inputs widen exactly and the result rounds once,
  which is at least as accurate as a 16-bit kernel.
- float64 cannot be computed in float32 without losing what float64 is for: an op with no
  float64 kernel is refused with one error naming the op, the dtype and the fix.
- An op with no kernel for bool or an integer dtype (bool Where/TopK/Min/Max/comparisons, int32
  MaxPool on the CPU) runs in the first wider type that holds every value exactly and has a
  kernel (bool as uint8, int16 as int32 or float32, int32 as int64 or float64), but only when
  the op selects, compares or moves values (or is bool or/and), so the result is identical;
  otherwise (int64 MaxPool over a dynamic spatial dim: float64 has 53 bits; static windows
  are lowered exactly) it is refused naming the op, dtype and fix.
  Only the inputs and outputs of the ONNX type variable that has the dtype are cast (Where's
  bool condition stays bool).

When the model does not load, each node reading such a dtype is loaded on its own (once per op
and input types) to find the ops onnxruntime lacks; every node of those is widened. A model
whose integer and bool ops all have a known CPU kernel (``_CPU_KERNELS``) is not loaded twice.
"""

from __future__ import annotations

import copy
from typing import Any

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from .._errors import RuntimeSessionError
from ._providers import resolve

_NAMES = {
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.FLOAT16: "float16",
    TensorProto.DOUBLE: "float64",
    TensorProto.FLOAT: "float32",
    TensorProto.BOOL: "bool",
    TensorProto.UINT8: "uint8",
    TensorProto.INT8: "int8",
    TensorProto.UINT16: "uint16",
    TensorProto.INT16: "int16",
    TensorProto.UINT32: "uint32",
    TensorProto.INT32: "int32",
    TensorProto.UINT64: "uint64",
    TensorProto.INT64: "int64",
}
_T = TensorProto
# Exact embeddings, in the order tried: every value of the key is a value of each carrier, in
# the same order (so a max, a comparison or a sort gives the same answer). int64 has none.
_CARRIERS: dict[int, tuple[int, ...]] = {
    _T.BFLOAT16: (_T.FLOAT,),
    _T.FLOAT16: (_T.FLOAT,),
    _T.BOOL: (_T.UINT8, _T.INT32, _T.INT64, _T.FLOAT),
    _T.UINT8: (_T.INT32, _T.INT64, _T.FLOAT, _T.DOUBLE),
    _T.INT8: (_T.INT32, _T.INT64, _T.FLOAT, _T.DOUBLE),
    _T.UINT16: (_T.INT32, _T.INT64, _T.FLOAT, _T.DOUBLE),
    _T.INT16: (_T.INT32, _T.INT64, _T.FLOAT, _T.DOUBLE),
    _T.UINT32: (_T.INT64, _T.DOUBLE),
    _T.INT32: (_T.INT64, _T.DOUBLE),
}
_FLOATS16 = (_T.BFLOAT16, _T.FLOAT16)
_INTEGERS = (_T.BOOL, _T.UINT8, _T.INT8, _T.UINT16, _T.INT16, _T.UINT32, _T.INT32)
_INTEGERS += (_T.UINT64, _T.INT64)
# Ops whose result on exactly embedded integers, cast back, is the result on the integers: they
# select, compare, order or move input values and never compute new ones.
_SELECTING = frozenset(
    {
        "MaxPool", "Max", "Min", "TopK", "Where", "Greater", "Less", "GreaterOrEqual",
        "LessOrEqual", "Equal", "DepthToSpace", "SpaceToDepth", "ReduceMax", "ReduceMin",
        "ArgMax", "ArgMin", "Clip", "Transpose", "Pad", "Relu", "Gather", "GatherElements",
        "GatherND", "Concat", "Slice", "Expand", "Tile", "Reshape", "Squeeze", "Unsqueeze",
        "Flatten", "Split", "Identity", "Trilu",
    }
)  # fmt: skip
# On bool (0 and 1 in the carrier, any nonzero cast back to True): or, and, all, any.
_BOOL_LOGIC = frozenset({"Add", "Mul", "Sum", "ReduceProd", "ReduceSum"})
# (op, dtype) pairs with a CPU kernel in onnxruntime 1.31 (tests/runtime/test_kernels.py loads
# each): a model whose integer and bool ops are all here is not probed, which saves a session.
_CPU_KERNELS: dict[str, tuple[int, ...]] = {
    op: dtypes
    for ops, dtypes in [
        (
            ("Add", "Sub", "Mul", "Div", "Mod", "Less", "Greater", "LessOrEqual",
             "GreaterOrEqual", "Abs", "Sign", "TopK", "Clip"),
            (_T.UINT8, _T.INT8, _T.INT16, _T.INT32, _T.INT64),
        ),
        (("Neg",), (_T.INT8, _T.INT16, _T.INT32, _T.INT64)),
        (("Equal",), (_T.BOOL, _T.UINT8, _T.INT8, _T.INT16, _T.INT32, _T.INT64)),
        (("Max", "Min", "ArgMax", "ArgMin"), (_T.UINT8, _T.INT8, _T.INT32, _T.INT64)),
        (("ReduceMax", "ReduceMin", "Pad"), (_T.BOOL, _T.UINT8, _T.INT8, _T.INT32, _T.INT64)),
        (("ReduceSum", "ReduceProd", "CumSum", "MatMul", "Pow"), (_T.INT32, _T.INT64)),
        (("Where",), (_T.UINT8, _T.INT8, _T.INT32, _T.INT64)),  # X and Y; the condition is bool
        (("Not", "And", "Or", "Xor"), (_T.BOOL,)),
        (("Range",), (_T.INT16, _T.INT32, _T.INT64)),
        (
            ("Shape", "Size", "Cast", "Reshape", "Concat", "Unsqueeze", "Squeeze", "Slice",
             "Gather", "Expand", "Identity", "Transpose", "GatherElements", "ScatterElements",
             "Tile", "Split", "Flatten", "GatherND", "ScatterND"),
            (_T.BOOL, _T.UINT8, _T.INT8, _T.INT16, _T.INT32, _T.INT64),
        ),
        (("NonZero",), (_T.BOOL, _T.UINT8, _T.INT32, _T.INT64)),
        (("Trilu",), (_T.BOOL, _T.INT32, _T.INT64)),
        (("ConstantOfShape",), (_T.INT64,)),
    ]
    for op in ops
}  # fmt: skip


def fit_kernels(model: onnx.ModelProto, provider: str) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` itself when onnxruntime loads it on ``provider``, else a copy whose ops without
    a kernel for their dtype compute in a wider one between Casts, and notes saying which:
    16-bit floats in float32; bool and small integers, for ops that select, compare or move
    values, in the first exactly wider type with a kernel (bool as uint8, int32 as float64).
    Raises RuntimeSessionError naming the ops that cannot be computed exactly so."""
    types = _skeleton_types(model)
    if not _may_lack_kernels(model, types, provider):
        return model, []
    error = _load_error(model, provider)
    if error is None:
        return model, []
    missing = _missing_kernels(model, provider)
    refused = [(op, dtype) for op, dtype, carrier in missing if carrier is None]
    if refused or not missing:
        raise _refusal(refused, provider, error)
    out, notes = copy.deepcopy(model), []
    for op, dtype, carrier in missing:
        count = _widen(out, op, dtype, carrier)
        exact = "" if dtype in _FLOATS16 else "; every value fits, the result is the same"
        notes.append(
            f"{op} x{count} computed in {_NAMES[carrier]} between Casts (onnxruntime has no "
            f"{_NAMES[dtype]} kernel for it on {provider}{exact})"
        )
    error = _load_error(out, provider)
    if error is not None:
        raise RuntimeSessionError(f"onnxruntime could not load the model: {error}")
    return out, notes


def fit_schema(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` itself when the ONNX schema defines each op for its input types, else a copy
    whose integer and bool ops it does not (bool TopK and Max, int32 MaxPool) compute in the
    first exactly wider type it does, with notes: a file any ONNX runtime accepts, whatever
    onnxruntime would load. Ops with no exact wider type are left as they are."""
    if not any(_schema_may_refuse(node) for node in model.graph.node):
        return model, []
    types, opset = _skeleton_types(model), _opset(model)
    todo: list[tuple[str, int, int]] = []
    for node in model.graph.node:
        found = _undefined_input(node, types, opset)
        if found is not None and (node.op_type, *found) not in todo:
            todo.append((node.op_type, *found))
    if not todo:
        return model, []
    out, notes = copy.deepcopy(model), []
    for op, dtype, carrier in todo:
        count = _widen(out, op, dtype, carrier)
        notes.append(
            f"{op} x{count} computed in {_NAMES[carrier]} between Casts (ONNX defines no "
            f"{_NAMES[dtype]} {op}; every value fits, the result is the same)"
        )
    return out, notes


def _schema_may_refuse(node: onnx.NodeProto) -> bool:
    """A cheap first look: an op that selects values (defined for some dtypes only)."""
    return node.domain in ("", "ai.onnx") and (
        node.op_type in _SELECTING or node.op_type in _BOOL_LOGIC
    )


def _undefined_input(
    node: onnx.NodeProto, types: dict[str, int], opset: int
) -> tuple[int, int] | None:
    """(dtype, carrier) when ``node`` reads an integer or bool dtype its schema does not
    define and an exactly wider one it does exists; else None."""
    if not _schema_may_refuse(node):
        return None
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return None
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    params = schema.inputs
    for k, name in enumerate(node.input):
        dtype = types.get(name)
        if not name or dtype not in _INTEGERS or not params:
            continue
        var = params[min(k, len(params) - 1)].type_str
        if var not in allowed or _type_str(dtype) in allowed[var]:
            continue
        exact = node.op_type in _SELECTING or (dtype == _T.BOOL and node.op_type in _BOOL_LOGIC)
        for carrier in _CARRIERS.get(dtype, ()) if exact else ():
            if _type_str(carrier) in allowed[var]:
                return dtype, carrier
    return None


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


def _skeleton_types(model: onnx.ModelProto) -> dict[str, int]:
    """The element type of every value, inferred on a copy without weight data (fast)."""
    g = model.graph
    weights = [helper.make_tensor_value_info(t.name, t.data_type, None) for t in g.initializer]
    skeleton = helper.make_model(
        helper.make_graph(list(g.node), "types", [*g.input, *weights], list(g.output)),
        opset_imports=list(model.opset_import),
        ir_version=model.ir_version,
    )
    inferred = onnx.shape_inference.infer_shapes(skeleton).graph
    values = [*inferred.input, *inferred.value_info, *inferred.output]
    return {v.name: v.type.tensor_type.elem_type for v in values}


def _may_lack_kernels(model: onnx.ModelProto, types: dict[str, int], provider: str) -> bool:
    return any(_may_lack(node, types, provider) for node in model.graph.node)


def _may_lack(node: onnx.NodeProto, types: dict[str, int], provider: str) -> bool:
    """Whether ``node`` reads a 16-bit float or float64, or an integer or bool in an op not
    known to have that kernel (on the CPU; elsewhere any integer or bool op is checked)."""
    if node.domain not in ("", "ai.onnx") or node.op_type == "Cast":
        return False
    data = node.input[1:] if node.op_type == "Where" else node.input  # a bool condition
    for name in data:
        dtype = types.get(name)
        if dtype in (*_FLOATS16, _T.DOUBLE):
            return True
        if dtype in _INTEGERS and (
            provider != "cpu" or dtype not in _CPU_KERNELS.get(node.op_type, ())
        ):
            return True
    return False


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


def _missing_kernels(model: onnx.ModelProto, provider: str) -> list[tuple[str, int, int | None]]:
    """(op type, dtype, carrier) of the nodes reading a dtype onnxruntime may lack that it
    cannot load on their own, each node probed as a one-node model (once per op and input
    types); the carrier is the first exactly wider dtype the op loads with, None if none."""
    types = _value_types(model)
    shapes = _value_infos(model)
    inits = {t.name: t for t in model.graph.initializer}
    seen: dict[tuple, int | None | bool] = {}
    missing: list[tuple[str, int, int | None]] = []
    for node in model.graph.node:
        kinds = tuple(types.get(i) for i in node.input)
        # a Where over float64 or int16 lacks that kernel, not a bool one (its condition)
        data = kinds[1:] if node.op_type == "Where" else kinds
        odd = [k for k in data if k in (*_FLOATS16, _T.DOUBLE)]
        dtype = next(iter(odd or [k for k in data if k in _INTEGERS]), None)
        if (
            dtype is None
            or not _may_lack(node, types, provider)
            or any(a.type in _GRAPH_ATTRS for a in node.attribute)
        ):
            continue
        key = (node.domain, node.op_type, kinds)
        if key not in seen:
            probe = _one_node(model, node, shapes, inits)
            error = _load_error(probe, provider)
            if error is None or not any(k in error for k in _NO_KERNEL):
                seen[key] = True
            else:
                seen[key] = (dtype, _carrier(probe, node.op_type, dtype, provider))
        found = seen[key]
        if found is not True and (node.op_type, *found) not in missing:
            missing.append((node.op_type, *found))
    return missing


def _carrier(probe: onnx.ModelProto, op: str, dtype: int, provider: str) -> int | None:
    """The first dtype that holds every ``dtype`` value exactly in which onnxruntime loads the
    probe's op and computes the same result; None when there is none."""
    exact = dtype in _FLOATS16 or op in _SELECTING or (dtype == _T.BOOL and op in _BOOL_LOGIC)
    if not exact:
        return None
    for carrier in _CARRIERS.get(dtype, ()):
        wide = copy.deepcopy(probe)
        if not _widen(wide, op, dtype, carrier):
            continue
        error = _load_error(wide, provider)
        # a failure other than a missing kernel (a 0-d TopK) is the node's own: widened, the
        # model then fails to load with it, instead of a wrong "no kernel" refusal
        if error is None or not any(k in error for k in _NO_KERNEL):
            return carrier
    return None


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


def _widen(model: onnx.ModelProto, op: str, dtype: int, carrier: int) -> int:
    """Every ``op`` node reading ``dtype`` computes in ``carrier``: the inputs and outputs of
    the ONNX type variable that is ``dtype`` (Where's bool condition stays bool) are cast up and
    back. Returns the count.

    An input that a Transpose produced is cast before a widened copy of that Transpose:
    onnxruntime 1.31 crashes (segfault, at optimization level ALL: its NCHWc transformer) on
    Transpose(16-bit) -> Cast(float) -> MatMul."""
    types = _value_types(model)
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    opset = _opset(model)
    nodes, count = [], 0
    for node in graph.node:
        if (
            node.op_type != op
            or node.domain not in ("", "ai.onnx")
            or dtype not in (types.get(i) for i in node.input)
        ):
            nodes.append(node)
            continue
        ins, outs = _widened_slots(node, dtype, carrier, types, opset)
        if not ins:  # ``dtype`` only in a slot that keeps it (a Where condition)
            nodes.append(node)
            continue
        count += 1
        for k in ins:
            name = node.input[k]
            wide = f"{name}__{op}_{_NAMES[carrier]}_{count}_{k}"
            nodes += _cast_up(producer.get(name), name, wide, carrier)
            node.input[k] = wide
        back = []
        for k in outs:
            name = node.output[k]
            wide = f"{name}__{_NAMES[carrier]}"
            node.output[k] = wide
            back.append(helper.make_node("Cast", [wide], [name], to=dtype))
        nodes.append(node)
        nodes.extend(back)
    graph.ClearField("node")
    graph.node.extend(nodes)
    return count


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 21)


def _widened_slots(
    node: onnx.NodeProto, dtype: int, carrier: int, types: dict[str, int], opset: int
) -> tuple[list[int], list[int]]:
    """Input and output positions to cast: those of the op's type variables that are ``dtype``
    here and allow ``carrier`` (every ``dtype`` slot when onnx has no schema for the op)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        schema = None
    if schema is None:
        ins = [k for k, i in enumerate(node.input) if i and types.get(i) == dtype]
        outs = [k for k, o in enumerate(node.output) if o and types.get(o, dtype) == dtype]
        return ins, outs
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    want = _type_str(carrier)

    def var(params: list, k: int) -> str:
        return params[min(k, len(params) - 1)].type_str if params else ""

    names = [var(schema.inputs, k) for k in range(len(node.input))]
    wide = {
        v
        for v, i in zip(names, node.input, strict=True)
        if i and types.get(i) == dtype and want in allowed.get(v, ())
    }
    ins = [k for k, i in enumerate(node.input) if i and names[k] in wide]
    outs = [k for k, o in enumerate(node.output) if o and var(schema.outputs, k) in wide]
    return ins, outs


def _type_str(dtype: int) -> str:
    return f"tensor({onnx.helper.tensor_dtype_to_np_dtype(dtype).name})".replace(
        "tensor(float64)", "tensor(double)"
    ).replace("tensor(float32)", "tensor(float)")


def _cast_up(
    producer: onnx.NodeProto | None, name: str, wide: str, carrier: int
) -> list[onnx.NodeProto]:
    if (
        producer is None
        or producer.op_type != "Transpose"
        or producer.domain not in ("", "ai.onnx")
    ):
        return [helper.make_node("Cast", [name], [wide], to=carrier)]
    source = producer.input[0]
    perm = [a for a in producer.attribute if a.name == "perm"]
    return [
        helper.make_node("Cast", [source], [wide + "_pre"], to=carrier),
        helper.make_node("Transpose", [wide + "_pre"], [wide], perm=list(perm[0].ints))
        if perm
        else helper.make_node("Transpose", [wide + "_pre"], [wide]),
    ]


def _refusal(
    refused: list[tuple[str, int | None]], provider: str, error: str
) -> RuntimeSessionError:
    """One error naming every op and dtype onnxruntime lacks, why fxonnx does not widen it, and
    the fix."""
    if not refused:
        return RuntimeSessionError(f"onnxruntime could not load the model: {error}")
    ops = ", ".join(f"{op} ({_NAMES.get(d, 'dtype ' + str(d))})" for op, d in refused)
    floats = [d for _, d in refused if d == TensorProto.DOUBLE]
    why, hints = [], []
    if floats:
        why.append("computing float64 in float32 would not keep its precision")
        hints.append("convert the model and its inputs to float32 (model.float(), x.float())")
        if provider == "cpu":
            hints.append("or compile with provider='cuda', whose kernels include float64")
    if len(floats) < len(refused):
        why.append(
            "no wider type onnxruntime has a kernel for holds every integer value and computes "
            "the same result (int64 overflows float64's 53-bit mantissa; sums of products "
            "round)"
        )
        hints.append(
            "cast the integer input to float32 in the model (x.float() before the op, "
            ".long() after it) where its values fit"
        )
    return RuntimeSessionError(
        f"onnxruntime has no {provider} kernel for {ops}; {'; '.join(why)}, so fxonnx does not "
        "widen it",
        hint=", ".join(hints),
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
