"""Captured graph -> onnx.ModelProto, one rule per node, all unsupported ops reported at once."""

from __future__ import annotations

import logging
from typing import Any

import onnx
import torch
from onnx import helper
from torch import fx

from .._dimexpr import METADATA_KEY, constraints_to_json
from .._errors import ExportError, FxonnxError, UnsupportedOp, UnsupportedOpError
from .._version import __version__
from ..capture import Captured
from . import ops  # noqa: F401  (registers the rules)
from ._builder import GraphBuilder
from ._ctx import LowerCtx
from ._registry import rule_for
from ._workarounds import cast_before_transpose

log = logging.getLogger(__name__)

DEFAULT_OPSET = 21
MIN_OPSET, MAX_OPSET = 18, 23
IR_VERSION = 10  # what onnxruntime >= 1.20 loads; enough for opset 23

# Nodes that carry no computation in ONNX (assertions, shape guards).
_SKIP = {
    torch.ops.aten._assert_async.msg,
    torch.ops.aten._assert_scalar.default,
    torch.ops.aten.sym_constrain_range_for_size.default,
    torch.ops.aten._assert_tensor_metadata.default,
}


def _target_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", str(target))


def unsupported_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    """Every call whose op has no rule, in subgraphs too."""
    missing = []
    for node in gm.graph.nodes:
        if (
            node.op == "call_function"
            and node.target not in _SKIP
            and rule_for(node.target) is None
        ):
            missing.append(node)
    for sub in gm.children():
        if isinstance(sub, fx.GraphModule):
            missing += unsupported_nodes(sub)
    return missing


def check_supported(captured: Captured) -> None:
    missing = unsupported_nodes(captured.gm)
    if missing:
        captured.attach_sources()
        raise UnsupportedOpError(
            [
                UnsupportedOp(_target_name(n.target), n.name, n.meta.get("fxonnx.source"))
                for n in missing
            ]
        )


def _lower_graph(
    gm: fx.GraphModule, builder: GraphBuilder, env: dict[fx.Node, Any], opset: int
) -> list[Any]:
    """Lower every node of ``gm`` into ``builder``; returns the output node's values."""

    def lower_subgraph(sub: fx.GraphModule, operands: list[str], name: str) -> onnx.GraphProto:
        child = GraphBuilder(builder.fresh(name), parent=builder)
        sub_env: dict[fx.Node, Any] = {}
        placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
        for ph, value in zip(placeholders, operands, strict=True):
            sub_env[ph] = value
        outs = _lower_graph(sub, child, sub_env, opset)
        names = [child.fresh(f"{child.name}_out") for _ in outs]
        for value, out_name in zip(outs, names, strict=True):
            child.nodes.append(helper.make_node("Identity", [value], [out_name]))
        specs = [_spec_of(o) for o in _output_nodes(sub)]
        for out_name, (dtype, rank) in zip(names, specs, strict=True):
            child.outputs.append(helper.make_tensor_value_info(out_name, dtype, [None] * rank))
        return child.graph()

    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op == "get_attr":
            value = getattr(gm, node.target)
            if isinstance(value, torch.Tensor):
                env[node] = builder.const(value, hint=node.name)
            continue
        if node.target in _SKIP:
            continue
        rule = rule_for(node.target)
        assert rule is not None, node.target  # check_supported ran first
        ctx = LowerCtx(node, env, builder, opset, lower_subgraph)
        try:
            env[node] = rule(ctx)
        except FxonnxError:
            raise
        except Exception as e:
            raise ExportError(
                f"lowering {node.name} ({_target_name(node.target)}) failed: "
                f"{type(e).__name__}: {e}"
            ) from e
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    return [env[n] if isinstance(n, fx.Node) else n for n in _flat(out_node.args[0])]


def _flat(x: Any) -> list[Any]:
    return [v for item in x for v in _flat(item)] if isinstance(x, (list, tuple)) else [x]


def _output_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    return _flat(next(n for n in gm.graph.nodes if n.op == "output").args[0])


def _spec_of(node: fx.Node) -> tuple[int, int]:
    from ._dtypes import onnx_dtype

    val = node.meta["val"]
    return onnx_dtype(val.dtype), val.dim()


def lower(
    captured: Captured,
    *,
    opset: int = DEFAULT_OPSET,
    graph_name: str = "fxonnx",
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """Lower a Captured graph to ONNX: user inputs become graph inputs (dynamic dims as their
    names in ``dim_param``, their supported ranges in the ``fxonnx.dims`` metadata),
    parameters, buffers and constants become initializers named after them. Intermediate
    values get no ``value_info`` on purpose: with it, onnxruntime fuses Add + LayerNormalization
    into SkipLayerNormalization, measured 7-20% slower on its CPU provider."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            f"opset {opset} is not supported",
            hint=f"choose an opset from {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})",
        )
    check_supported(captured)
    builder = GraphBuilder(graph_name)
    before = captured.shapes.snapshot()
    env: dict[fx.Node, Any] = {}
    placeholders = [n for n in captured.gm.graph.nodes if n.op == "placeholder"]
    for node, spec in zip(placeholders, captured.inputs, strict=True):
        if spec.kind == "input":
            env[node] = builder.add_input(spec.name, spec.dtype, spec.shape)
        elif node.users:  # unused buffers (num_batches_tracked) stay out of the model
            env[node] = builder.add_initializer(spec.name, captured.state[spec.name])
    values = _lower_graph(captured.gm, builder, env, opset)
    if len(values) != len(captured.outputs):
        raise ExportError(
            f"graph returns {len(values)} values, signature has {len(captured.outputs)}"
        )
    for v, spec in zip(values, captured.outputs, strict=True):
        if not isinstance(v, str):
            raise ExportError(f"output {spec.name} is not a tensor value ({type(v).__name__})")
    fixed = captured.shapes.fixed_since(before)
    if fixed:
        raise ExportError(
            f"lowering fixed the dynamic dim(s) {fixed} to their example size: a lowering rule "
            "read a symbolic size as an int (a bug in fxonnx)",
            hint="compile with dynamic_dims=None to export a static graph meanwhile",
        )
    builder.set_outputs(values, [s.name for s in captured.outputs], captured.outputs)
    graph = builder.graph()
    cast_before_transpose(graph)
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(d, v) for d, v in builder.opset_domains.items()]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=IR_VERSION,
        producer_name="fxonnx",
        producer_version=__version__,
    )
    builder.write_initializers(model.graph)
    props = {"fxonnx.dynamic_dims": ",".join(captured.shapes.names)}
    if captured.shapes.dynamic:
        props[METADATA_KEY] = constraints_to_json(
            {s.name: {**s.constraint(), "example": s.example} for s in captured.shapes.symbols}
        )
    props.update(metadata or {})
    helper.set_model_props(model, props)
    return model
