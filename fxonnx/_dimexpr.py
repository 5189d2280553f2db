"""Named dynamic dims at run time, without torch: bind input sizes to names, check constraints.

A dim in a signature is an int (static), a name (``"seq"``) or an expression of names
(``"2*seq"``, ``"seq//2+1"``, ``"max(h,w)"``), as capture writes it into ONNX ``dim_param`` and
bundle manifests. ``constraints`` map a name to what the captured graph assumes of it
(``{"min": 1, "max": 512, "multiple_of": 8}``); the ONNX model carries them in its
``fxonnx.dims`` metadata so that every runtime (``Session``, bundles) checks the same thing.
"""

from __future__ import annotations

import ast
import functools
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._errors import InputError

METADATA_KEY = "fxonnx.dims"

_BINOPS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_CALLS: dict[str, Callable[..., int]] = {"max": max, "min": min, "abs": abs}


@functools.lru_cache(maxsize=1024)
def _parse(expr: str) -> ast.expr | None:
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None
    return tree if _valid(tree) else None


def _valid(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and not isinstance(node.value, bool)
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.BinOp):
        return type(node.op) in _BINOPS and _valid(node.left) and _valid(node.right)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.USub) and _valid(node.operand)
    if isinstance(node, ast.Call):
        return (
            isinstance(node.func, ast.Name)
            and node.func.id in _CALLS
            and not node.keywords
            and all(_valid(a) for a in node.args)
        )
    return False


def _eval(node: ast.expr, env: Mapping[str, int]) -> int | None:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        return None if v is None else -v
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env), _eval(node.right, env)
        if a is None or b is None or (b == 0 and type(node.op) in (ast.FloorDiv, ast.Mod)):
            return None
        return _BINOPS[type(node.op)](a, b)
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    args = [_eval(a, env) for a in node.args]
    return None if None in args else _CALLS[node.func.id](*args)


def evaluate(dim: int | str | None, env: Mapping[str, int]) -> int | None:
    """The size of ``dim`` given the sizes of named dims; None when it cannot be computed."""
    if isinstance(dim, int):
        return dim
    if not dim:
        return None
    tree = _parse(dim)
    return None if tree is None else _eval(tree, env)


def is_name(dim: Any) -> bool:
    return isinstance(dim, str) and dim.isidentifier()


def constraints_to_json(constraints: Mapping[str, Mapping[str, Any]]) -> str:
    return json.dumps({k: dict(v) for k, v in constraints.items()}, sort_keys=True)


def constraints_from_json(text: str | None) -> dict[str, dict[str, Any]]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)}


def describe(name: str, c: Mapping[str, Any]) -> str:
    """``"seq in [1, 512], a multiple of 8"``: what the graph supports for ``name``."""
    lo, hi, k = c.get("min", 0), c.get("max"), c.get("multiple_of", 1)
    text = f"{name} >= {lo}" if hi is None else f"{name} in [{lo}, {hi}]"
    return text + (f", a multiple of {k}" if k and k > 1 else "")


def describe_all(dims: Mapping[str, Mapping[str, Any]] | None) -> str:
    """Every dynamic dim in one line (``batch >= 1; seq in [1, 512]``), or "all static"."""
    if not dims:
        return "all static"
    return "; ".join(describe(n, c) for n, c in dims.items())


def bind(
    names: Sequence[str],
    signatures: Sequence[Sequence[int | str | None]],
    shapes: Sequence[Sequence[int]],
    constraints: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, int]:
    """Check runtime ``shapes`` against the inputs' dims and return the size of every name.

    Raises one InputError for the first problem: a static dim that differs, two inputs that
    disagree on a shared name, a size outside what the graph supports, an expression dim whose
    value does not follow from the names. Ranks must have been checked by the caller."""
    constraints = constraints or {}
    env: dict[str, int] = {}
    seen: dict[str, tuple[str, int]] = {}
    deferred: list[tuple[str, int, str, int]] = []
    for name, want, got in zip(names, signatures, shapes, strict=True):
        for d, (w, g) in enumerate(zip(want, got, strict=True)):
            if isinstance(w, int):
                if g != w:
                    raise InputError(
                        f"input {name!r} dim {d} is {g}, expected {w} (shape {_show(want)})",
                        hint="this dim is static in the exported graph; re-export with it in "
                        "dynamic_dims to vary it",
                    )
            elif is_name(w):
                assert isinstance(w, str)
                if w in seen and env[w] != g:
                    other, od = seen[w]
                    raise InputError(
                        f"input {name!r} dim {d} ({w!r}) is {g} but input {other!r} dim {od} "
                        f"({w!r}) is {env[w]}: dims named {w!r} must have the same size",
                        hint=f"pass inputs whose {w!r} dims agree",
                    )
                seen.setdefault(w, (name, d))
                env[w] = g
            elif w:
                deferred.append((name, d, str(w), g))
    for sym, size in env.items():
        c = constraints.get(sym)
        if c is not None and not _satisfies(size, c):
            where, d = seen[sym]
            raise InputError(
                f"input {where!r} dim {d} ({sym!r}) is {size}, but the compiled graph supports "
                f"{describe(sym, c)}" + (f" ({c['why']})" if c.get("why") else ""),
                hint=f"pass a {sym!r} size the graph supports, or change the model code that "
                "constrains it and recompile",
            )
    for name, d, expr, got in deferred:
        want = evaluate(expr, env)
        if want is not None and want != got:
            raise InputError(
                f"input {name!r} dim {d} is {got}, but the model needs {expr} = {want} there",
                hint="the model ties this dim to other inputs' dims",
            )
    return env


def _satisfies(size: int, c: Mapping[str, Any]) -> bool:
    if size < c.get("min", 0):
        return False
    hi = c.get("max")
    if hi is not None and size > hi:
        return False
    k = c.get("multiple_of", 1) or 1
    return size % k == 0


def _show(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
