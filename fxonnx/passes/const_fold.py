"""Constant folding: a subgraph whose inputs are all parameters, buffers or constants is
evaluated once in torch and its result becomes a new constant (a ``constant`` placeholder in
``captured.state``), as long as the result is no larger than ``max(limit, size of its inputs)``
so that folding never blows weights up (``expand`` of a bias to a batch, an outer product)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import fx

from ._graph import add_constant, placeholder_specs, state_of
from ._infra import Pass, PassContext, PassResult, register
from .cse import is_deterministic

DEFAULT_LIMIT = 4096  # elements; a result this small is always worth a constant
FOLDED_FROM = "fxonnx_folded_from"
"""``meta`` key of a folded constant's placeholder: the parameter/buffer names its value was
computed from, through earlier folds too (verification holds a parameter still when a
constant baked a copy of it)."""


@register
class FoldConstants(Pass):
    """Replace maximal constant subgraphs by their value. Misses: ``too_large`` (the result is
    bigger than the limit and than its inputs together), ``nondeterministic``, ``not_a_tensor``
    (a constant int/shape result stays a node)."""

    name = "const_fold"

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit

    def run(self, ctx: PassContext) -> PassResult:
        with torch.no_grad(), _one_thread():
            return self._fold(ctx)

    def _fold(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        captured = ctx.captured
        values: dict[fx.Node, Any] = {}
        cone: dict[fx.Node, dict[str, int]] = {}  # state leaves (name -> numel) a value reads
        sources: dict[fx.Node, frozenset[str]] = {}  # the state names behind a value
        specs = placeholder_specs(captured)
        for node in captured.gm.graph.nodes:
            if node.op in ("placeholder", "get_attr"):
                t = state_of(captured, node, specs)
                if t is not None:
                    values[node] = t
                    cone[node] = {node.name: t.numel()}
                    own = specs[node].name if node in specs else str(node.target)
                    sources[node] = frozenset(node.meta.get(FOLDED_FROM, (own,)))
                continue
            if node.op != "call_function":
                continue
            inputs = node.all_input_nodes
            if not inputs or not all(n in values for n in inputs):
                continue
            if not is_deterministic(node.target):
                stats["miss:nondeterministic"] += 1
                continue
            args = fx.node.map_arg(node.args, values.__getitem__)
            kwargs = fx.node.map_arg(node.kwargs, values.__getitem__)
            values[node] = node.target(*args, **kwargs)
            cone[node] = {k: v for n in inputs for k, v in cone[n].items()}
            sources[node] = frozenset().union(*(sources[n] for n in inputs))
        storages = {t.untyped_storage().data_ptr() for t in captured.state.values()}
        rejected: set[fx.Node] = set()  # constant nodes that stay nodes (too large, not tensors)
        for node, value in reversed(values.items()):  # users before producers
            if node.op != "call_function":
                continue
            if node.users and all(u in values and u not in rejected for u in node.users):
                continue  # interior of a constant subgraph that gets folded further down
            if not isinstance(value, torch.Tensor):
                stats["miss:not_a_tensor"] += 1
                rejected.add(node)
                continue
            if value.numel() > max(self.limit, sum(cone[node].values())):
                stats["miss:too_large"] += 1
                rejected.add(node)
                continue
            value = value.contiguous()  # one copy for a transposed weight, not clone + copy
            if value.untyped_storage().data_ptr() in storages:  # a view of a weight: copy it
                value = value.clone()
            const = add_constant(captured, value, f"folded_{node.name}")
            const.meta[FOLDED_FROM] = tuple(sorted(sources[node]))
            node.replace_all_uses_with(const)
            stats["folded"] += 1
        if stats["folded"]:
            captured.gm.graph.eliminate_dead_code()
        return PassResult(ctx.gm, modified=stats["folded"] > 0, stats=dict(stats))


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one intra-op thread while folding: the folded ops and copies are elementwise
    passes over weights of at most a few MB, where waking a second thread costs more than it
    saves (resnet18's const_fold on a busy 2-core machine: 167-247 ms with 2 threads, 27-41 ms
    with 1). Process-wide for the duration of the pass, restored after it."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
