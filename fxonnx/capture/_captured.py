"""What capture hands to the passes and the exporter: an ATen graph plus its signature.

Graph metadata (documented keys, see STYLE.md rule 3):
- ``node.meta["val"]``: a FakeTensor (or tuple of them, or a SymInt/int) from tracing. When the batch
  is dynamic, batch dims in it hold the sentinel size ``Captured.batch.sentinel``; use
  ``Captured.dims(val)`` to read them as ``"batch"`` expressions.
- ``node.meta["fxonnx.source"]``: ``"file.py:42: <line>"`` of the user's code, only after
  ``Captured.attach_sources()``.
"""

from __future__ import annotations

import dataclasses
import re
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
class BatchInfo:
    """How the batch dimension was captured.

    ``dims`` gives, per user tensor input, which dim is the batch (None: no batch dim). When
    ``dynamic`` is False, ``reason`` says why the graph is specialised to ``example``.
    """

    dynamic: bool
    example: int | None
    dims: tuple[int | None, ...]
    sentinel: int | None = None
    reason: str | None = None

    def dim_of(self, value: int) -> Dim:
        """Read a traced size back as an int or a batch expression: ``"batch"``,
        ``"batch*8"``, ``"batch-1"`` (from ``x[:-1]``)."""
        s = self.sentinel
        if not self.dynamic or s is None or value < s - _NEAR:
            return value
        a = max(1, round(value / s))
        c = value - a * s
        if abs(c) > _NEAR:
            return value
        base = "batch" if a == 1 else f"batch*{a}"
        return base if c == 0 else f"{base}{c:+d}"


_NEAR = 4096  # sizes this close to a multiple of the sentinel are batch arithmetic
_DIM_EXPR = re.compile(r"^batch(?:\*(\d+))?([+-]\d+)?$")


def resolve_dim(dim: Dim, batch: int | None) -> int | None:
    """The size of ``dim`` (an int or a ``dim_of`` expression) at ``batch``; None if unknown."""
    if isinstance(dim, int):
        return dim
    match = _DIM_EXPR.match(dim)
    if match is None or batch is None:
        return None
    return batch * int(match.group(1) or 1) + int(match.group(2) or 0)


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
    batch: BatchInfo
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
        return tuple(self.batch.dim_of(int(d)) for d in val.shape)

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
