"""LowerCtx: everything a lowering rule may touch for one FX node, and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import fx

from .._errors import ExportError
from ..capture import static_dim
from ._builder import GraphBuilder
from ._dtypes import onnx_dtype

Value = str  # the ONNX name of a tensor value


class LowerCtx:
    """One node's view of the export.

    Values of SymInt nodes (arithmetic on dynamic dims) are int64 tensors of shape [1]; ``int_list``
    concatenates them with constant ints into a shape tensor.
    """

    def __init__(
        self,
        node: fx.Node,
        env: dict[fx.Node, Any],
        builder: GraphBuilder,
        opset: int,
        lower_subgraph: Any = None,
    ) -> None:
        self.node = node
        self.env = env
        self.builder = builder
        self.opset = opset
        self._lower_subgraph = lower_subgraph

    # -- reading the node ------------------------------------------------------------------
    @property
    def args(self) -> tuple:
        return self.node.args

    def arg(self, i: int, default: Any = None) -> Any:
        """Argument ``i`` of the op's schema as written in the graph (Nodes, ints, lists...),
        whether it was passed by position or keyword, else its schema default, else ``default``."""
        if i < len(self.node.args):
            return self.node.args[i]
        schema = getattr(self.node.target, "_schema", None)
        if schema is not None and i < len(schema.arguments):
            a = schema.arguments[i]
            if a.name in self.node.kwargs:
                return self.node.kwargs[a.name]
            if a.has_default_value():
                return a.default_value
        return default

    def kwarg(self, name: str, default: Any = None) -> Any:
        """An argument by schema name, wherever it was passed (positional or keyword)."""
        if name in self.node.kwargs:
            return self.node.kwargs[name]
        schema = getattr(self.node.target, "_schema", None)
        if schema is not None:
            for i, a in enumerate(schema.arguments):
                if a.name == name:
                    if i < len(self.node.args):
                        return self.node.args[i]
                    return a.default_value if a.has_default_value() else default
        return default

    def val(self, x: Any = None) -> Any:
        """The traced example value (FakeTensor) of ``x`` (a Node), or of this node's output."""
        node = self.node if x is None else x
        return node.meta.get("val") if isinstance(node, fx.Node) else x

    @property
    def out_dtype(self) -> torch.dtype:
        v = self.val()
        if isinstance(v, (tuple, list)):
            v = v[0]
        return v.dtype

    def dtype(self, x: Any) -> torch.dtype:
        v = self.val(x)
        if isinstance(v, torch.Tensor):
            return v.dtype
        if isinstance(v, (bool, torch.SymBool)):
            return torch.bool
        if isinstance(v, (int, torch.SymInt)):
            return torch.int64
        return torch.float32

    def rank(self, x: Any) -> int:
        return self.val(x).dim()

    def static_shape(self, x: Any) -> tuple[int | None, ...]:
        """Shape of ``x`` with None for dims that vary at run time (symbolic sizes). Never
        ``int()`` a traced size yourself: on a SymInt that would specialise the graph."""
        return tuple(static_dim(d) for d in self.val(x).shape)

    def tensor_inputs(self) -> list[Value]:
        return [self.value(a) for a in self.node.args if isinstance(a, fx.Node)]

    # -- producing values ------------------------------------------------------------------
    def input(self, i: int) -> Value:
        return self.value(self.node.args[i])

    def value(self, x: Any, dtype: torch.dtype | None = None) -> Value:
        """The ONNX value of a Node, or a constant for a Python scalar/list (``dtype`` or its own)."""
        if isinstance(x, fx.Node):
            v = self.env[x]
            if isinstance(v, (list, tuple)):
                raise ExportError(f"node {x.name} has several outputs; index it first")
            return v
        return self.const(x, dtype)

    def const(self, value: Any, dtype: torch.dtype | None = None) -> Value:
        t = value if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=dtype)
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
        return self.builder.const(t)

    def emit(
        self, op: str, *inputs: Value | None, outputs: int = 1, domain: str = "", **attrs: Any
    ) -> Any:
        """Add an ONNX node; returns its output name (or a list when ``outputs`` > 1).
        ``None`` inputs stand for omitted optional inputs ("")."""
        names = [("" if i is None else i) for i in inputs]
        while names and names[-1] == "":
            names.pop()
        outs = self.builder.node(op, names, outputs, name=self.node.name, domain=domain, **attrs)
        return outs[0] if outputs == 1 else outs

    def cast(
        self, value: Value, dtype: torch.dtype, from_dtype: torch.dtype | None = None
    ) -> Value:
        if from_dtype == dtype:
            return value
        return self.emit("Cast", value, to=onnx_dtype(dtype))

    def input_as(self, x: Any, dtype: torch.dtype) -> Value:
        """``x`` (Node or scalar) as a value of ``dtype``, casting only when needed."""
        if isinstance(x, fx.Node):
            return self.cast(self.value(x), dtype, self.dtype(x))
        return self.const(x, dtype)

    # -- shapes as tensors -----------------------------------------------------------------
    def int_list(self, items: Sequence[Any]) -> Value:
        """A 1-D int64 tensor from ints and SymInt nodes (sizes computed from dynamic dims)."""
        if all(isinstance(i, int) for i in items):
            return self.const(list(items), torch.int64)
        pieces: list[Value] = []
        run: list[int] = []
        for item in items:
            if isinstance(item, int):
                run.append(item)
                continue
            if run:
                pieces.append(self.const(run, torch.int64))
                run = []
            pieces.append(self.value(item))
        if run:
            pieces.append(self.const(run, torch.int64))
        return pieces[0] if len(pieces) == 1 else self.emit("Concat", *pieces, axis=0)

    def int_scalar(self, item: Any) -> Value:
        """A 0-d int64 value from an int or a SymInt node."""
        if isinstance(item, int):
            return self.const(item, torch.int64)
        return self.emit("Squeeze", self.value(item), self.const([0], torch.int64))

    def shape_of(self, x: Any, start: int | None = None, end: int | None = None) -> Value:
        return self.emit("Shape", self.value(x), start=start, end=end)

    # -- control flow ----------------------------------------------------------------------
    def subgraph(self, gm: fx.GraphModule, operands: Sequence[Any], name: str) -> Any:
        """Lower ``gm`` as an ONNX subgraph whose placeholders read the outer ``operands``."""
        return self._lower_subgraph(gm, [self.value(o) for o in operands], name)
