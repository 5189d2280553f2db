"""Symbolic dims: one torch ``ShapeEnv`` symbol per dim name, and what tracing made of them.

Capture makes fake inputs whose named dims are SymInts of one ``ShapeEnv`` (dims that share a
name share the symbol) and traces with ``make_fx``; shape arithmetic then appears in the graph
as ``sym_size`` and SymInt nodes, and every size in ``node.meta["val"]`` is an int or a SymInt.
After tracing, ``analyze`` reads the environment back: which names stayed dynamic, which the
model fixed (``x + pos_table`` fixes ``seq``), and the ranges and multiples torch inferred
(``if seq > 512`` gives ``seq <= 512``). The recording environment notes the user's source line
of each such decision for the error message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
from torch._dynamo.source import ConstantSource
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, statically_known_true
from torch.utils._sympy.printers import PythonPrinter

from ._captured import DimSymbol, Shapes
from ._dims import PerInput
from ._shape_kernels import lean_node_meta, shape_kernel_mode

_MACHINERY = (
    "/torch/",
    "/functorch/",
    "/fxonnx/",
    "<frozen",
    "/contextlib.py",
    "/sympy/",
    "<string>",
    "<eval_with_key",
)
# frames that only evaluate a guard (SymInt comparison machinery): look past them
_GUARD_PLUMBING = (
    "/torch/fx/experimental/",
    "/torch/__init__.py",
    "/torch/utils/_sympy/",
    "/sympy/",
    "<string>",
    "/fxonnx/capture/_symbolic.py",
)
# fake kernels' own heuristics (conv picks a memory format by batch size): the graph they leave
# does not depend on the decision, so a range they narrow is not the model's constraint (shape
# checks in meta functions and refs are: a pooling window must fit)
_KERNEL_INTERNALS = ("/torch/_subclasses/fake_impls.py",)


def _format(frame: traceback.FrameSummary) -> str:
    return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}: {(frame.line or '').strip()}"


def _user_frame() -> str | None:
    """The innermost frame of the model's own code on the current stack."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not any(m in frame.filename for m in _MACHINERY):
            return _format(frame)
    return None


def _decision_site() -> str | None:
    """Where the guard being added was decided: the user's line (or torch.nn code), or None
    when a kernel's internal heuristic asked."""
    stack = traceback.extract_stack()[:-2]
    for frame in reversed(stack):
        if any(p in frame.filename for p in _GUARD_PLUMBING):
            continue
        if any(k in frame.filename for k in _KERNEL_INTERNALS):
            return None
        return _user_frame() or _format(frame)
    return None


class RecordingShapeEnv(ShapeEnv):
    """A ShapeEnv that remembers the user's source line where a symbol was fixed to a value,
    and which range narrowings came from the model's code (``if x.shape[1] > 512``) rather
    than from a kernel's internal heuristic (conv picking a memory format by batch size)."""

    def __init__(self) -> None:
        super().__init__()
        self.fixed_at: dict[sympy.Symbol, str | None] = {}
        self.bounded_at: dict[sympy.Symbol, str] = {}
        self.model_ranges: dict[sympy.Symbol, Any] = {}
        self.watched: set[sympy.Symbol] = set()

    def watch(self, symbols: Sequence[sympy.Symbol]) -> None:
        self.watched = set(symbols)
        self.model_ranges = {s: self.var_to_range[s] for s in symbols}

    def _set_replacement(self, a: sympy.Symbol, tgt: sympy.Expr, msg: str) -> None:
        if a in self.watched and a not in self.fixed_at:
            self.fixed_at[a] = _user_frame()
        super()._set_replacement(a, tgt, msg)

    def _update_var_to_range(self, symbol: sympy.Symbol, vr: Any, *args: Any, **kw: Any) -> None:
        old = self.var_to_range.get(symbol)
        super()._update_var_to_range(symbol, vr, *args, **kw)
        if symbol not in self.watched or old is None or self.var_to_range[symbol] == old:
            return
        site = _decision_site()
        if site is not None:
            self.model_ranges[symbol] = self.model_ranges[symbol] & vr
            self.bounded_at[symbol] = site


@dataclass
class SymbolicInputs:
    """The symbols of one trace: name -> (symbol, SymInt, example size, uses)."""

    env: RecordingShapeEnv
    mode: FakeTensorMode
    per_input: list[PerInput]
    names: list[str]
    symbols: dict[str, sympy.Symbol] = field(default_factory=dict)
    sizes: dict[str, torch.SymInt] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create(
        cls, tensors: Sequence[torch.Tensor], names: Sequence[str], per_input: list[PerInput]
    ) -> SymbolicInputs:
        env = RecordingShapeEnv()
        mode = shape_kernel_mode(shape_env=env, allow_non_fake_inputs=True)
        # the fake-tensor cache costs more than it saves on symbolic shapes (2x, measured)
        mode.cache_enabled = False
        self = cls(env, mode, per_input, list(names))
        for t, dims in zip(tensors, per_input, strict=True):
            for d, name in dims.items():
                self.examples.setdefault(name, int(t.shape[d]))
        # 0 and 1 are special sizes to torch's tracing (broadcasting, squeeze): trace such a
        # dim at a size no example has, the same one for equal examples (dims that meet in a
        # broadcast must be able to agree), and let verification run the example's size
        taken = set(self.examples.values())
        substitute: dict[int, int] = {}
        for small in sorted(v for v in taken if v < 2):
            substitute[small] = next(
                v for v in range(2, 10**6) if v not in taken and v not in substitute.values()
            )
        for name, example in self.examples.items():
            hint = substitute.get(example, example)
            source = ConstantSource(name)
            sym = env.create_symbol(hint, source, dynamic_dim=DimDynamic.DYNAMIC)
            self.symbols[name] = sym
            self.sizes[name] = env.create_symintnode(sym, hint=hint, source=source)
        env.watch(list(self.symbols.values()))
        return self

    def tracing(self) -> Any:
        """The config to trace under: sizes are reasoned about "size-obliviously", so that
        ``x[1:]`` at an example batch of 2 (size 1) does not fix the batch at 2 through a
        broadcasting check; verification at the example's size then checks that choice.
        Node meta skips what costs most and nothing reads (``lean_node_meta``)."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.fx.experimental._config.patch(backed_size_oblivious=True))
        stack.enter_context(lean_node_meta())
        return stack

    def fake(self, t: torch.Tensor, dims: PerInput) -> torch.Tensor:
        shape = [self.sizes[dims[d]] if d in dims else int(s) for d, s in enumerate(t.shape)]
        with self.mode:
            return torch.empty(shape, dtype=t.dtype, device=t.device)

    def analyze(
        self, requested: str, user_fakes: Sequence[torch.Tensor]
    ) -> tuple[Shapes, list[Fixed]]:
        """The dims as traced, and the requested names the model fixed to a value."""
        env = self.env
        fixed: list[Fixed] = []
        printed: dict[sympy.Symbol, sympy.Symbol] = {}
        for name, sym in self.symbols.items():
            expr = env.replace(sym)
            if expr.is_number:
                where = [
                    (i, d)
                    for i, dims in zip(self.names, self.per_input, strict=True)
                    for d, n in dims.items()
                    if n == name
                ]
                fixed.append(Fixed(name, tuple(where), int(expr), env.fixed_at.get(sym)))
            elif expr == sym:
                printed[sym] = sympy.Symbol(name, integer=True, positive=True)
        shapes = Shapes(requested=requested, env=env, printed=printed)
        uses: dict[str, list[tuple[str, int]]] = {}
        for name, fake in zip(self.names, user_fakes, strict=True):
            for d, size in enumerate(fake.shape):
                dim = shapes.dim(size)
                if isinstance(dim, str) and dim.isidentifier():
                    uses.setdefault(dim, []).append((name, d))
        symbols = []
        for name, sym in self.symbols.items():
            if sym not in printed:
                continue
            vr = env.model_ranges.get(sym)
            lo = int(vr.lower) if vr is not None and vr.lower.is_Integer else 0
            hi = int(vr.upper) if vr is not None and vr.upper.is_Integer else None
            symbols.append(
                DimSymbol(
                    name=name,
                    example=self.examples[name],
                    # torch assumes >= 2 (0/1 specialisation); the graph still holds at 1
                    min=1 if lo <= 2 else lo,
                    max=hi,
                    multiple_of=_multiple_of(env, sym),
                    uses=tuple(uses.get(name, ())),
                    why=env.bounded_at.get(sym),
                )
            )
        return dataclasses.replace(shapes, symbols=tuple(symbols)), fixed


@dataclass(frozen=True)
class Fixed:
    """A requested dynamic dim that the model's code fixed to ``value`` (at ``source``)."""

    name: str
    where: tuple[tuple[str, int], ...]
    value: int
    source: str | None

    def describe(self) -> str:
        dims = ", ".join(f"input {i!r} dim {d}" for i, d in self.where)
        at = f" by {self.source}" if self.source else ""
        return f"{dims} ({self.name!r}) is fixed to {self.value}{at}"


def _multiple_of(env: ShapeEnv, sym: sympy.Symbol) -> int:
    """k when the trace guards that ``sym`` is a multiple of k: ``sym % k == 0`` or
    ``sym == k * (sym // k)`` (the skip connections of a U-Net: a multiple of 4)."""
    k = 1
    for guard in env.guards:
        expr = guard.expr
        if isinstance(expr, sympy.Eq) and expr.free_symbols == {sym}:
            for a, b in (expr.args, expr.args[::-1]):
                k = math.lcm(k, _divisor(a, b, sym))
    return k


def _divisor(a: sympy.Expr, b: sympy.Expr, sym: sympy.Symbol) -> int:
    """k for ``a % k == 0`` (b = 0) or ``a == k * (a // k)`` with ``a`` the symbol, else 1."""
    name = type(a).__name__
    if b == 0 and name in ("Mod", "PythonMod") and a.args[0] == sym and a.args[1].is_Integer:
        return int(a.args[1])
    if a == sym and isinstance(b, sympy.Mul) and len(b.args) == 2:
        coeff, floor = b.args if b.args[0].is_Integer else b.args[::-1]
        if coeff.is_Integer and type(floor).__name__ == "FloorDiv":
            base, div = floor.args
            if base == sym and div == coeff:
                return int(coeff)
    return 1


class _DimPrinter(PythonPrinter):
    """Python syntax that reads like the model's code: ``seq-1``, not ``(-1)+seq``."""

    def _print_Add(self, expr: sympy.Expr, order: Any = None) -> str:
        terms = sorted(expr.args, key=lambda t: (t.is_number, str(t)))
        out = self._print(terms[0])
        for t in terms[1:]:
            neg = t.could_extract_minus_sign()
            out += (" - " if neg else " + ") + self.parenthesize(-t if neg else t, 40)
        return out


_PRINTER = _DimPrinter()


def print_expr(expr: sympy.Expr, printed: dict[sympy.Symbol, sympy.Symbol]) -> str | None:
    """A SymInt expression in the users' names (``2*seq``), or None if it has foreign symbols."""
    if not expr.free_symbols <= set(printed):
        return None
    text = _PRINTER.doprint(expr.xreplace(printed))
    return text.replace(" ", "")


def static_dim(d: Any) -> int | None:
    """The int value of a traced size, or None when it varies at run time (never guards)."""
    if isinstance(d, int):
        return d
    if isinstance(d, torch.SymInt):
        node = d.node
        expr = node.shape_env.replace(node.expr) if node.shape_env is not None else node.expr
        return int(expr) if expr.is_number else None
    return int(d)


def same_dim(a: Any, b: Any) -> bool:
    """True only when two sizes are equal for every value of the symbols (never guards)."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return statically_known_true(a == b)


def same_shape(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) == len(b) and all(same_dim(x, y) for x, y in zip(a, b, strict=True))


def size_hint(d: Any) -> int:
    """A traced size as an int for estimates (FLOP counts): the trace's example value."""
    if isinstance(d, torch.SymInt):
        hint = d.node.hint
        return int(hint) if hint is not None else 1
    return int(d)
