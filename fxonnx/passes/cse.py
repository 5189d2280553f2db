"""Common-subexpression elimination: two calls of the same op on the same arguments compute the
same value (for deterministic ops), so the second one's users take the first."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import fx

from ._infra import Pass, PassContext, PassResult, register


def _key(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, *(_key(v) for v in x))
    if isinstance(x, dict):
        return ("dict", *sorted((k, _key(v)) for k, v in x.items()))
    if isinstance(x, slice):
        return ("slice", _key(x.start), _key(x.stop), _key(x.step))
    if isinstance(x, float):
        return ("float", x)  # keeps 1 and 1.0 (and True) apart
    if isinstance(x, bool):
        return ("bool", x)
    hash(x)
    return x


_RANDOM = ("rand", "bernoulli", "normal", "uniform", "multinomial", "dropout", "poisson")


def is_deterministic(target: Any) -> bool:
    """False for ops that draw random numbers (by tag, or by name for composite ops)."""
    if torch.Tag.nondeterministic_seeded in getattr(target, "tags", ()):
        return False
    name = getattr(target, "__name__", str(target)).split(".")[0]
    return not any(name.startswith(r) or name.startswith("native_" + r) for r in _RANDOM)


@register
class EliminateCommonSubexpressions(Pass):
    """Merge call_function nodes with equal (target, args, kwargs). Misses: ``nondeterministic``
    (random ops are never merged), ``unhashable_args``."""

    name = "cse"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        seen: dict[Any, fx.Node] = {}
        for node in list(ctx.gm.graph.nodes):
            if node.op != "call_function":
                continue
            if not is_deterministic(node.target):
                stats["miss:nondeterministic"] += 1
                continue
            try:
                key = (node.target, _key(node.args), _key(node.kwargs))
                hash(key)
            except TypeError:
                stats["miss:unhashable_args"] += 1
                continue
            first = seen.get(key)
            if first is None:
                seen[key] = node
                continue
            node.replace_all_uses_with(first)
            ctx.gm.graph.erase_node(node)
            stats["merged"] += 1
        return PassResult(ctx.gm, modified=stats["merged"] > 0, stats=dict(stats))
