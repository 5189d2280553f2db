"""Tiny matchers for hand-written patterns: scalar multiplies, commutative pairs, lowering checks."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx

from ._graph import is_call, scalar_operand

aten = torch.ops.aten


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4)


def scaled(node: Any, factor: float) -> fx.Node | None:
    """``x`` when ``node`` is ``x * factor`` or ``x / (1 / factor)`` (approximately), else None."""
    if not is_call(node, aten.mul.Tensor, aten.div.Tensor):
        return None
    op = scalar_operand(node)
    if op is None or op[1] == 0:
        return None
    x, c = op
    c = 1.0 / c if node.target == aten.div.Tensor else c
    return x if close(c, factor) else None


def plus(node: Any, value: float) -> fx.Node | None:
    """``x`` when ``node`` is ``x + value`` (either order)."""
    if not is_call(node, aten.add.Tensor):
        return None
    op = scalar_operand(node)
    return op[0] if op is not None and close(op[1], value) else None


def other(node: fx.Node, one: fx.Node) -> Any:
    """The operand of a binary ``node`` that is not ``one`` (None when neither is)."""
    a, b = node.args[:2]
    if a is one:
        return b
    if b is one:
        return a
    return None


def lowerable(target: Any) -> bool:
    """Whether the exporter has a rule for ``target``: a fusion must not turn a graph that exports
    into one that does not (the import is lazy: passes otherwise never look at export)."""
    from ..export._registry import rule_for

    return rule_for(target) is not None
