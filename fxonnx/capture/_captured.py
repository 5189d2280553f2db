"""What capture hands to the passes and the exporter: an ATen graph plus its signature.

Graph metadata (documented keys, see STYLE.md rule 3):
- ``node.meta["val"]``: a FakeTensor (or tuple of them, or a SymInt/int) from tracing. Dynamic
  dims in it are SymInts of ``Captured.shapes.env``; ``Captured.dims(val)`` reads them as names
  (``"seq"``) or expressions (``"2*seq"``). Read sizes with ``static_dim``/``same_dim`` (they
  never add guards): ``int()`` or ``==`` on a SymInt would specialise the graph.
- ``node.meta["fxonnx.source"]``: ``"file.py:42: <line>"`` of the user's code, only after
  ``Captured.attach_sources()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.utils._pytree as pytree
from torch import fx

Dim = int | str
TensorKind = Literal["input", "parameter", "buffer", "constant"]


@dataclass(frozen=True)
class TensorSpec:
    """Name, kind, shape (ints, or strings such as ``"batch"`` for dynamic dims) and dtype."""

    name: str
    kind: TensorKind | Literal["output"]
    shape: tuple[Dim, ...]
    dtype: torch.dtype

    @property
    def is_dynamic(self) -> bool:
        return any(isinstance(d, str) for d in self.shape)


@dataclass(frozen=True)
class DimSymbol:
    """One named dynamic dim as traced: its example size, the range and multiple the graph
    supports (torch's inferred constraints), and the input dims that carry it."""

    name: str
    example: int
    min: int = 1
    max: int | None = None
    multiple_of: int = 1
    uses: tuple[tuple[str, int], ...] = ()
    why: str | None = None  # the user's source line that narrowed the range

    def constraint(self) -> dict[str, Any]:
        c: dict[str, Any] = {"min": self.min, "max": self.max, "multiple_of": self.multiple_of}
        if self.why:
            c["why"] = f"constrained by {self.why}"
        return c


@dataclass(frozen=True)
class Shapes:
    """The dynamic dims of a captured graph.

    ``symbols`` are the names that stayed dynamic; ``requested`` is how they were asked for
    ("auto", "all", "explicit" or "static"). ``dim`` reads a traced size (int or SymInt) as an
    int, a name (``"seq"``) or an expression of names (``"2*seq"``); None for a size that
    depends on something else (a data-dependent size)."""

    symbols: tuple[DimSymbol, ...] = ()
    requested: str = "static"
    env: Any = field(default=None, repr=False, compare=False)
    printed: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def dynamic(self) -> bool:
        return bool(self.symbols)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.symbols)

    def symbol(self, name: str) -> DimSymbol | None:
        return next((s for s in self.symbols if s.name == name), None)

    def constraints(self) -> dict[str, dict[str, Any]]:
        return {s.name: s.constraint() for s in self.symbols}

    def dim(self, size: Any) -> Dim | None:
        if isinstance(size, int):
            return size
        if not isinstance(size, torch.SymInt):
            return int(size)
        from ._symbolic import print_expr

        node = size.node
        expr = self.env.replace(node.expr) if self.env is not None else node.expr
        if expr.is_number:
            return int(expr)
        return print_expr(expr, self.printed)

    def snapshot(self) -> dict[str, int | None]:
        """Each symbol's fixed value, or None while it is dynamic."""
        out: dict[str, int | None] = {}
        for sym, printed in self.printed.items():
            expr = self.env.replace(sym)
            out[printed.name] = int(expr) if expr.is_number else None
        return out

    def fixed_since(self, before: dict[str, int | None]) -> list[str]:
        """Names dynamic in ``before`` (a ``snapshot()``) that something has fixed since."""
        now = self.snapshot()
        return [n for n, v in now.items() if v is not None and before.get(n) is None]


@dataclass(frozen=True)
class ConstantLeaf:
    """A non-tensor input leaf (int, float, bool, None, str) baked into the graph at capture."""

    name: str
    value: Any


@dataclass
class Captured:
    """An ATen-level ``fx.GraphModule`` with a named signature.

    ``gm`` placeholders are, in order, ``inputs`` (parameters and buffers first, then the user's
    tensor inputs). ``state`` holds the values of parameter/buffer inputs and of ``get_attr``
    constants. ``in_spec`` flattens ``(args, kwargs)`` into ``leaves`` (tensor inputs and baked
    constants); ``out_spec`` rebuilds the user's output structure from ``out_leaves``.
    """

    gm: fx.GraphModule
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    state: dict[str, torch.Tensor]
    in_spec: pytree.TreeSpec
    leaves: tuple[TensorSpec | ConstantLeaf, ...]
    out_spec: pytree.TreeSpec
    out_leaves: tuple[TensorSpec | ConstantLeaf, ...]
    shapes: Shapes
    method: str
    notes: list[str] = field(default_factory=list)
    retrace: Callable[[], fx.GraphModule] | None = field(default=None, repr=False)

    @property
    def user_inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(s for s in self.inputs if s.kind == "input")

    @property
    def state_inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(s for s in self.inputs if s.kind != "input")

    def dims(self, val: torch.Tensor) -> tuple[Dim, ...]:
        return tuple(self.shapes.dim(d) for d in val.shape)

    def replace(self, **changes: Any) -> Captured:
        return dataclasses.replace(self, **changes)

    def attach_sources(self) -> None:
        """Fill ``node.meta["fxonnx.source"]`` by re-tracing with stack traces (slow path only)."""
        if self.retrace is None:
            return
        try:
            traced = self.retrace()
        except Exception:  # the source lines are a courtesy for error messages
            return
        sources = {n.name: user_source(n.meta.get("stack_trace")) for n in traced.graph.nodes}
        for node in self.gm.graph.nodes:
            src = sources.get(node.name)
            if src:
                node.meta["fxonnx.source"] = src

    def run_torch(self, *user_tensors: torch.Tensor) -> list[torch.Tensor]:
        """Run the captured graph in PyTorch on flat user tensors (for verification of passes)."""
        args = [self.state[s.name] for s in self.state_inputs] + list(user_tensors)
        out = self.gm(*args)
        return list(out) if isinstance(out, (list, tuple)) else [out]


# Frames of these files are the machinery, not the user's model (the zoo in fxonnx/models is).
_TORCH_DIRS = (
    "/torch/",
    "/functorch/",
    "/fxonnx/capture/",
    "/fxonnx/export/",
    "/fxonnx/passes/",
    "/fxonnx/_compile.py",
    "<frozen",
    "/contextlib.py",
)


def user_source(stack_trace: str | None) -> str | None:
    """The innermost frame of a recorded stack trace that is the user's own code."""
    if not stack_trace:
        return None
    lines = stack_trace.strip().splitlines()
    best = None
    for i, line in enumerate(lines):
        line = line.strip()
        if line.startswith("File ") and not any(d in line for d in _TORCH_DIRS):
            code = lines[i + 1].strip() if i + 1 < len(lines) else ""
            path, _, rest = line[len('File "') :].partition('", line ')
            lineno = rest.split(",")[0]
            best = f"{path.rsplit('/', 1)[-1]}:{lineno}: {code}"
    return best
