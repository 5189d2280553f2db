"""The only code that touches ONNX protobuf: nodes, initializers, graph inputs and outputs."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import onnx
import torch
from onnx import helper

from ._dtypes import onnx_dtype, tensor_proto


class GraphBuilder:
    """Accumulates one ONNX graph. Subgraphs (If branches) get a child builder that shares the
    root's name space and constant pool, since ONNX names are global across nested graphs."""

    def __init__(self, name: str = "main", parent: GraphBuilder | None = None) -> None:
        self.name = name
        self.parent = parent
        self.root: GraphBuilder = parent.root if parent else self
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.sym_values: dict[Any, str] = {}  # a SymInt's expression -> the value holding it
        if parent is None:
            self.initializers: list[tuple[str, torch.Tensor]] = []  # written by write_initializers
            self.used: set[str] = set()
            self._const_cache: dict[tuple, str] = {}
            self.opset_domains: dict[str, int] = {}

    # -- names -----------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        used = self.root.used
        name, i = hint, 0
        while name in used:
            i += 1
            name = f"{hint}_{i}"
        used.add(name)
        return name

    def claim(self, name: str) -> str:
        """Reserve an exact name (inputs, parameters); a clash is a bug in the caller."""
        if name in self.root.used:
            raise ValueError(f"ONNX value name {name!r} used twice")
        self.root.used.add(name)
        return name

    def sym_value(self, expr: Any) -> str | None:
        """The value already holding the size ``expr`` here or in an enclosing graph."""
        builder: GraphBuilder | None = self
        while builder is not None:
            if expr in builder.sym_values:
                return builder.sym_values[expr]
            builder = builder.parent
        return None

    # -- graph pieces ----------------------------------------------------------------------
    def add_input(self, name: str, dtype: torch.dtype, shape: Sequence[int | str | None]) -> str:
        self.claim(name)
        self.inputs.append(helper.make_tensor_value_info(name, onnx_dtype(dtype), list(shape)))
        return name

    def add_initializer(self, name: str, tensor: torch.Tensor) -> str:
        onnx_dtype(tensor.dtype)  # an unsupported dtype fails here, naming it
        self.claim(name)
        self.root.initializers.append((name, tensor))
        return name

    def const(self, tensor: torch.Tensor, hint: str = "const") -> str:
        """A constant as a (deduplicated) initializer of the root graph."""
        # clone: a one-element view keeps a stride of 2, which .contiguous() does not change
        # and .view(torch.uint8) refuses
        t = tensor.detach().cpu().clone(memory_format=torch.contiguous_format)
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()  # bfloat16 has no numpy type
        key = (t.dtype, tuple(t.shape), hashlib.blake2b(raw, digest_size=16).digest())
        cache = self.root._const_cache
        if key not in cache:
            name = self.fresh(hint)
            self.root.initializers.append((name, t))
            cache[key] = name
        return cache[key]

    def node(
        self,
        op: str,
        inputs: Sequence[str],
        n_outputs: int = 1,
        *,
        name: str,
        domain: str = "",
        output_names: Sequence[str] | None = None,
        **attrs: Any,
    ) -> list[str]:
        outs = list(output_names) if output_names else [self.fresh(name) for _ in range(n_outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        proto = helper.make_node(op, list(inputs), outs, name=self.fresh("n:" + name), **attrs)
        if domain:
            proto.domain = domain
            self.root.opset_domains.setdefault(domain, 1)
        self.nodes.append(proto)
        return outs

    def set_outputs(
        self, values: Sequence[str], names: Sequence[str], specs: Sequence[Any]
    ) -> None:
        """Graph outputs named ``names``: rename the producing value when this graph made it,
        else route it through an Identity (inputs, initializers and repeats need one)."""
        produced = {o for n in self.nodes for o in n.output}
        renames: dict[str, str] = {}
        taken: set[str] = set()
        for value, name in zip(values, names, strict=True):
            if value in produced and value not in taken and name not in self.root.used:
                renames[value] = name
                taken.add(value)
            else:
                if name in self.root.used and name not in renames.values():
                    # another value already carries this name: move it aside first
                    self._rename_everywhere(name, self.fresh(name + "_inner"))
                self.nodes.append(helper.make_node("Identity", [value], [name], name=f"n:{name}"))
            self.root.used.add(name)
        for node in self.nodes:
            node.output[:] = [renames.get(o, o) for o in node.output]
            node.input[:] = [renames.get(i, i) for i in node.input]
        for name, spec in zip(names, specs, strict=True):
            self.outputs.append(
                helper.make_tensor_value_info(name, onnx_dtype(spec.dtype), list(spec.shape))
            )

    def _rename_everywhere(self, old: str, new: str) -> None:
        for node in self.nodes:
            node.output[:] = [new if o == old else o for o in node.output]
            node.input[:] = [new if i == old else i for i in node.input]

    def graph(self) -> onnx.GraphProto:
        """The nodes, inputs and outputs; the root's initializers go in with write_initializers
        once the graph is inside its model (``make_model`` copies the graph, and weights are
        most of its bytes). The root drops nodes whose values nothing reads (a dim's Shape
        that a reshape no longer needs) and the constants only they read."""
        if self.parent is None:
            self._merge_reshapes()
            self._drop_dead_nodes()
        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs)

    def _merge_reshapes(self) -> None:
        """Reshape(Reshape(x, a), b) reads x when b is a constant without a 0 (copy): the
        first one's shape no longer matters. onnxruntime merges such pairs only when both
        shapes are fully static; a dynamic linear's Reshape back to [seq, -1, 576] followed by
        the head split's [seq, -1, 3, 3, 64] stays two nodes otherwise."""
        cached = set(self._const_cache.values())
        consts = {n: t for n, t in self.initializers if n in cached}
        producer = {o: n for n in self.nodes for o in n.output}
        for node in self.nodes:
            if node.op_type != "Reshape" or node.domain or len(node.input) != 2:
                continue
            first = producer.get(node.input[0])
            if first is None or first.op_type != "Reshape" or first.domain:
                continue
            shape = consts.get(node.input[1])
            zero_copies = not any(a.name == "allowzero" and a.i for a in node.attribute)
            if shape is None or (zero_copies and bool((shape == 0).any())):
                continue
            node.input[0] = first.input[0]

    def _drop_dead_nodes(self) -> None:
        live = {o.name for o in self.outputs}
        kept: list[onnx.NodeProto] = []
        for node in reversed(self.nodes):
            if any(o in live for o in node.output):
                kept.append(node)
                live.update(node.input)
                live.update(_outer_names(node))
        self.nodes = kept[::-1]
        consts = set(self._const_cache.values())
        self.initializers = [(n, t) for n, t in self.initializers if n in live or n not in consts]

    def write_initializers(self, graph: onnx.GraphProto) -> None:
        for name, tensor in self.root.initializers:
            tensor_proto(name, tensor, into=graph.initializer.add())


def _outer_names(node: onnx.NodeProto) -> set[str]:
    """Every value name the subgraphs of ``node`` (If branches, Scan bodies) read."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            for inner in g.node:
                names.update(inner.input)
                names.update(_outer_names(inner))
    return names
