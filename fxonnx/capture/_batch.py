"""A symbolic batch dimension without symbolic tracing.

Tracing with symbolic shapes costs 4x a plain fake-tensor trace. Instead capture traces with the
batch dims set to a large prime *sentinel*: every int in the graph that is a multiple of it
(``view(x, [S*8, 64])``, ``zeros([S, 3])``) is batch arithmetic, and is replaced by nodes that
compute it from the runtime batch size (``sym_size`` of an input), which both torch and the
ONNX lowering evaluate at run time. Scalars that might hide other arithmetic on the batch
(``S // 2``, ``1 / S``) make ``scan`` ask for a second trace at another sentinel; ``fit``
then solves ``value = a * batch + c`` per scalar, and gives up (static graph) when that fails.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import fx

SENTINEL = 1_000_003
SECOND_SENTINEL = 1_000_033
_HUGE = 1 << 60  # slice ends like sys.maxsize are not sizes


def _walk(value: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        return type(value)(_walk(v, fn) for v in value)
    if isinstance(value, torch.Size):
        return [_walk(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, fn) for k, v in value.items()}
    return fn(value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scalars(gm: fx.GraphModule) -> Iterator[tuple[fx.Node, int | float]]:
    """Every int/float argument of every call in graph order (a stable order across traces)."""
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        yield from ((node, v) for v in _scalars_of((node.args, node.kwargs)))


def _scalars_of(value: Any) -> list[int | float]:
    found: list[int | float] = []
    _walk(value, lambda v: found.append(v) if _is_scalar(v) else None)
    return found


def _suspicious(value: int | float, sentinel: int) -> bool:
    if isinstance(value, int):
        # ints from 8192 up may be S // k; smaller ones are taken as model constants
        if abs(value) >= _HUGE or abs(value) < 8192:
            return False
        a, c = divmod(value, sentinel)
        return c != 0 or a >= sentinel
    if value != value or abs(value) == float("inf"):
        return False
    # 1/S, k/S: tiny floats that are whole multiples of 1/S; or large ones like S/2.
    scaled = value * sentinel
    tiny_multiple = (
        abs(value) < 1e-3
        and round(scaled) != 0
        and (abs(scaled - round(scaled)) <= 1e-6 * abs(scaled))
    )
    return abs(value) >= 1000.0 or tiny_multiple


def scan(gm: fx.GraphModule, sentinel: int) -> str | None:
    """None when every batch-derived scalar is a plain multiple of the sentinel, else why not."""
    for node, value in scalars(gm):
        if _suspicious(value, sentinel):
            return f"{node.name} has the scalar {value!r}"
    return None


def scan_subgraphs(gm: fx.GraphModule, sentinel: int) -> str | None:
    """Branches of torch.cond may not use batch arithmetic: their sizes would be baked in."""
    for name, sub in gm.named_children():
        if isinstance(sub, fx.GraphModule):
            for node, value in scalars(sub):
                if isinstance(value, (int, float)) and abs(value) >= sentinel:
                    return f"subgraph {name} ({node.name}) uses a size computed from the batch"
    return None


Affine = tuple[int, int]  # value = a * batch + c


def multiples(gm: fx.GraphModule, sentinel: int) -> list[Affine | None]:
    """Per scalar (in ``scalars`` order): (a, 0) for a batch multiple, None for a constant."""
    out: list[Affine | None] = []
    for _node, value in scalars(gm):
        is_multiple = isinstance(value, int) and sentinel <= abs(value) < _HUGE
        out.append((value // sentinel, 0) if is_multiple else None)
    return out


def fit(gm1: fx.GraphModule, gm2: fx.GraphModule, s1: int, s2: int) -> list[Affine | None] | str:
    """Solve value = a*batch + c per scalar from traces at two sentinels, or say why not."""
    one, two = list(scalars(gm1)), list(scalars(gm2))
    targets1 = [n.target for n in gm1.graph.nodes]
    targets2 = [n.target for n in gm2.graph.nodes]
    if targets1 != targets2 or len(one) != len(two):
        return "the graph's structure depends on the batch size"
    out: list[Affine | None] = []
    for (node, v1), (_n, v2) in zip(one, two, strict=True):
        if v1 == v2:
            out.append(None)
            continue
        if not (isinstance(v1, int) and isinstance(v2, int)):
            return f"{node.name} uses a float computed from the batch size ({v1!r})"
        a, rem = divmod(v2 - v1, s2 - s1)
        if rem:
            return f"{node.name} uses {v1!r}, which is not linear in the batch size"
        out.append((a, v1 - a * s1))
    return out


def _batch_ref(gm: fx.GraphModule, sentinel: int) -> tuple[fx.Node, int] | None:
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        if node.op == "placeholder" and isinstance(val, torch.Tensor):
            for d, size in enumerate(val.shape):
                if int(size) == sentinel:
                    return node, d
    return None


def symbolize(gm: fx.GraphModule, affines: list[Affine | None], sentinel: int) -> str | None:
    """Replace batch-derived scalars by ``sym_size``-based nodes; None on success, else why not."""
    if all(a is None for a in affines):
        return None
    ref = _batch_ref(gm, sentinel)
    if ref is None:
        return "no graph input carries the batch dim the arithmetic refers to"
    placeholder, dim = ref
    graph = gm.graph
    last_placeholder = [n for n in graph.nodes if n.op == "placeholder"][-1]
    with graph.inserting_after(last_placeholder):
        batch = graph.call_function(torch.ops.aten.sym_size.int, (placeholder, dim))
    batch.meta["val"] = sentinel
    cache: dict[Affine, fx.Node] = {(1, 0): batch}

    def expr(affine: Affine, before: fx.Node) -> fx.Node:
        if affine not in cache:
            a, c = affine
            with graph.inserting_before(before):
                node = batch if a == 1 else graph.call_function(operator.mul, (batch, a))
                if c:
                    node = graph.call_function(operator.add, (node, c))
            node.meta["val"] = a * sentinel + c
            cache[affine] = node
        return cache[affine]

    queue = iter(affines)
    first_user = next(n for n in graph.nodes if n.op == "call_function" and n is not batch)
    for node in list(graph.nodes):
        if node.op != "call_function" or node is batch or node.meta.get("fxonnx.batch_expr"):
            continue

        def swap(value: Any, node: fx.Node = node) -> Any:
            if not _is_scalar(value):
                return value
            affine = next(queue)
            return value if affine is None else expr(affine, first_user)

        node.args, node.kwargs = _walk((node.args, node.kwargs), swap)
    for node in cache.values():
        node.meta["fxonnx.batch_expr"] = True
    return None
