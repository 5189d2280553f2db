"""Integer and bool tensors whose every element follows from the shapes alone, and the masks
they make trivial.

Decoders written the way current model libraries write them build their attention mask from
positions: ``position_ids = arange(seq)``, then a packed-sequence check (a new sequence starts
where ``diff(position_ids) != 1``; ``cumsum`` numbers the sequences; a key is visible when its
number equals the query's) and-ed with the causal comparison. On positions from ``arange`` the
check is all True, but with a dynamic ``seq`` nothing folds it: onnxruntime runs its 13 nodes
on every call. This pass follows such values through the graph as affine facts,
``value[i] = offset + sum(step[d] * i[d])`` (``arange`` has step 1, a ``diff`` of one has a
constant value, comparisons of constants are constants, ``cumsum`` of a constant is affine
again), and where an all-True (or all-False) operand of ``&``/``|`` makes the op return its
other operand, the op is replaced by that operand. When that operand broadcasts to the op's
shape instead of having it (the causal ``[1, seq, seq]`` against the check's ``[batch, seq,
seq]``), the replacement is made only when every use broadcasts anyway (views on the way to
an attention mask).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from ..capture import same_dim, same_shape, static_dim
from ._graph import call, infer_meta, is_call, slice_args, static_shape, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten
_BIG = 2**62  # a slice end at least this large means "to the end"
_EXACT = (torch.bool, torch.int32, torch.int64)  # casts that keep positions' values


@dataclass(frozen=True)
class Affine:
    """``value[i] = offset + sum(steps[d] * i[d])`` over the tensor's dims; a dim of size 1
    always has step 0 (its only index is 0)."""

    offset: int
    steps: tuple[int, ...]

    @property
    def uniform(self) -> bool:
        return not any(self.steps)


def _normalized(offset: int, steps: list[int], node: fx.Node) -> Affine:
    sizes = static_shape(node)
    return Affine(
        offset, tuple(0 if size == 1 else s for s, size in zip(steps, sizes, strict=True))
    )


def _is_int_like(node: Any) -> bool:
    v = val(node)
    return isinstance(v, torch.Tensor) and (v.dtype == torch.bool or not v.dtype.is_floating_point)


_COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}
_LOGICAL = {
    "__and__": lambda a, b: a & b,
    "bitwise_and": lambda a, b: a & b,
    "logical_and": lambda a, b: a & b,
    "__or__": lambda a, b: a | b,
    "bitwise_or": lambda a, b: a | b,
    "logical_or": lambda a, b: a | b,
}
_VIEWS = (
    aten.alias.default,
    aten.clone.default,
    aten.contiguous.default,
    aten.detach.default,
    aten.lift_fresh_copy.default,
)


_FILLS = {  # factories of one value: how to read it from the args
    aten.ones.default: lambda args: 1,
    aten.zeros.default: lambda args: 0,
    aten.new_ones.default: lambda args: 1,
    aten.new_zeros.default: lambda args: 0,
    aten.ones_like.default: lambda args: 1,
    aten.zeros_like.default: lambda args: 0,
    aten.full.default: lambda args: args[1],
    aten.new_full.default: lambda args: args[2],
    aten.full_like.default: lambda args: args[1],
    aten.scalar_tensor.default: lambda args: args[0],
}


class Facts:
    """The affine fact of each int/bool node that has one, computed in graph order."""

    def __init__(self, graph: fx.Graph) -> None:
        self.facts: dict[fx.Node, Affine] = {}
        for node in graph.nodes:
            if node.op == "call_function" and _is_int_like(node):
                fact = self._infer(node)
                if fact is not None:
                    self.facts[node] = fact

    def of(self, x: Any) -> Affine | None:
        if isinstance(x, bool) or isinstance(x, int):
            return Affine(int(x), ())
        return self.facts.get(x) if isinstance(x, fx.Node) else None

    def _infer(self, node: fx.Node) -> Affine | None:
        target, args = node.target, node.args
        name = getattr(target, "__name__", "").split(".")[0]
        if target in (aten.arange.default, aten.arange.start, aten.arange.start_step):
            start, step = (0, 1) if target is aten.arange.default else (args[0], 1)
            if target is aten.arange.start_step:
                step = args[2]
            if type(start) is int and type(step) is int:
                return _normalized(start, [step], node)
            return None
        if target in _FILLS:
            fill = _FILLS[target](args)
            if type(fill) not in (int, bool):
                return None
            return Affine(_cast(int(fill), val(node).dtype), (0,) * val(node).dim())
        if target in _VIEWS or target in (aten.to.dtype, aten._to_copy.default):
            x, dtype = self.of(args[0]), val(node).dtype
            if x is None or dtype not in _EXACT or (dtype == torch.bool and not x.uniform):
                return None  # a narrow integer type could wrap
            return Affine(_cast(x.offset, val(node).dtype), x.steps) if x.uniform else x
        if target is aten.unsqueeze.default:
            return self._unsqueeze(node)
        if target in (aten.view.default, aten.reshape.default, aten._unsafe_view.default):
            return self._reshape(node)
        if target is aten.expand.default:
            x = self.of(args[0])
            if x is None:
                return None
            lead = val(node).dim() - len(x.steps)
            return _normalized(x.offset, [0] * lead + list(x.steps), node)
        if target is aten.slice.Tensor:
            return self._slice(node)
        if target in (aten.add.Tensor, aten.sub.Tensor):
            return self._sum(node, -1 if target is aten.sub.Tensor else 1)
        if target in (aten.mul.Tensor, aten.mul.Scalar):
            a, b = (self.of(x) for x in args[:2])
            if a is None or b is None or not (a.uniform or b.uniform):
                return None
            (scale, x) = (a, b) if a.uniform else (b, a)
            rank = val(node).dim()
            steps = (0,) * (rank - len(x.steps)) + x.steps
            return _normalized(scale.offset * x.offset, [scale.offset * t for t in steps], node)
        if target is aten.neg.default:
            x = self.of(args[0])
            return None if x is None else Affine(-x.offset, tuple(-t for t in x.steps))
        if target is aten.diff.default:
            return self._diff(node)
        if target is aten.cumsum.default:
            x = self.of(args[0])
            if x is None or not x.uniform:
                return None
            steps = [0] * val(node).dim()
            steps[args[1] % len(steps)] = x.offset  # x[0] + ... + x[i] = c * (i + 1)
            return _normalized(x.offset, steps, node)
        if name in _COMPARE or name in _LOGICAL:
            a, b = (self.of(x) for x in args[:2])
            if a is None or b is None or not (a.uniform and b.uniform):
                return None
            op = _COMPARE.get(name) or _LOGICAL[name]
            return Affine(int(op(a.offset, b.offset)), (0,) * val(node).dim())
        if target in (aten.logical_not.default, aten.bitwise_not.default):
            x = self.of(args[0])
            if x is None or not x.uniform or val(node).dtype != torch.bool:
                return None
            return Affine(int(not x.offset), x.steps)
        return None

    def _unsqueeze(self, node: fx.Node) -> Affine | None:
        x = self.of(node.args[0])
        if x is None:
            return None
        dim = node.args[1] % val(node).dim()
        return Affine(x.offset, x.steps[:dim] + (0,) + x.steps[dim:])

    def _reshape(self, node: fx.Node) -> Affine | None:
        """A reshape that only adds or drops dims of size 1 keeps each other dim's step."""
        x = self.of(node.args[0])
        if x is None:
            return None
        before = [(d, s) for d, s in zip(val(node.args[0]).shape, x.steps, strict=True)]
        kept = [(d, s) for d, s in before if static_dim(d) != 1]
        after = [i for i, d in enumerate(val(node).shape) if static_dim(d) != 1]
        if len(kept) != len(after):
            return None
        steps = [0] * val(node).dim()
        for (d, step), i in zip(kept, after, strict=True):
            if not same_dim(d, val(node).shape[i]):
                return None
            steps[i] = step
        return Affine(x.offset, tuple(steps))

    def _slice(self, node: fx.Node) -> Affine | None:
        x = self.of(node.args[0])
        dim, start, _end, step = slice_args(node)
        start = 0 if start is None else start
        if x is None or type(start) is not int or start < 0 or type(step) is not int:
            return None
        dim %= len(x.steps)
        steps = list(x.steps)
        offset = x.offset + steps[dim] * start
        steps[dim] *= step
        return _normalized(offset, steps, node)

    def _sum(self, node: fx.Node, sign: int) -> Affine | None:
        alpha = node.kwargs.get("alpha", 1)
        a, b = (self.of(x) for x in node.args[:2])
        if a is None or b is None or type(alpha) is not int:
            return None
        rank = val(node).dim()
        pa, pb = (0,) * (rank - len(a.steps)) + a.steps, (0,) * (rank - len(b.steps)) + b.steps
        steps = [s + sign * alpha * t for s, t in zip(pa, pb, strict=True)]
        return _normalized(a.offset + sign * alpha * b.offset, steps, node)

    def _diff(self, node: fx.Node) -> Affine | None:
        """``diff(x, 1, dim, prepend)`` of an affine ``x`` is its step along ``dim`` everywhere,
        when ``prepend`` (if any) continues ``x`` backwards: one element, ``x[0] - step``."""
        args = list(node.args) + [1, -1, None, None][len(node.args) - 1 :]
        x_node, n, dim, prepend, append = args[:5]
        x = self.of(x_node)
        if x is None or n != 1 or append is not None:
            return None
        dim %= len(x.steps)
        step = x.steps[dim]
        if prepend is not None:
            p = self.of(prepend)
            if p is None or static_dim(val(prepend).shape[dim]) != 1:
                return None
            others = [s for d, s in enumerate(x.steps) if d != dim]
            if [s for d, s in enumerate(p.steps) if d != dim] != others:
                return None
            if p.offset != x.offset - step:
                return None
        return Affine(step, (0,) * val(node).dim())


def _cast(value: int, dtype: torch.dtype) -> int:
    return int(bool(value)) if dtype == torch.bool else value


def _broadcast_only_uses(node: fx.Node) -> bool:
    """Every use of ``node`` reaches an attention mask through views that keep its rank, so a
    value that broadcasts to ``node``'s shape gives the same result."""
    for user in node.users:
        if is_call(user, aten.scaled_dot_product_attention.default):
            mask = user.args[3] if len(user.args) > 3 else user.kwargs.get("attn_mask")
            if mask is not node or node in user.args[:3]:
                return False
            continue
        if is_call(user, *_VIEWS, aten.unsqueeze.default):
            if _broadcast_only_uses(user):
                continue
            return False
        if is_call(user, aten.slice.Tensor) and _full_slice(user):
            if _broadcast_only_uses(user):
                continue
        return False
    return True


def _full_slice(node: fx.Node) -> bool:
    _dim, start, end, step = slice_args(node)
    return start in (0, None) and (end is None or (type(end) is int and end >= _BIG)) and step == 1


def _reinfer(users: list[fx.Node]) -> None:
    """Refresh the metadata of the views between a replaced node and the attention masks it
    feeds (``_broadcast_only_uses`` said these are all there is)."""
    for user in users:
        if not is_call(user, aten.scaled_dot_product_attention.default):
            infer_meta(user)
            _reinfer(list(user.users))


@register
class KnownValues(Pass):
    """Rewritten: ``and``/``or`` with an operand that is all True (all False) become their other
    operand; ``index_as_view``: ``x[arange(n0)[:, None], arange(n1)]``-style indexing that
    reads every element in order (how model libraries broadcast a padding mask) becomes
    unsqueezes of ``x``. Misses: ``shape_differs`` (the other operand broadcasts, and some use
    would see the smaller shape, or it has fewer dims)."""

    name = "known_values"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        facts = Facts(ctx.gm.graph)
        for node in list(ctx.gm.graph.nodes):
            if is_call(node, aten.index.Tensor):
                if _index_as_unsqueezes(facts, node):
                    stats["index_as_view"] += 1
                continue
            name = getattr(node.target, "__name__", "").split(".")[0]
            if node.op != "call_function" or name not in _LOGICAL or len(node.args) != 2:
                continue
            identity = 1 if "and" in name else 0
            other = _other_operand(facts, node, identity)
            if other is None or not isinstance(other, fx.Node):
                continue
            if val(other).dtype != val(node).dtype:
                continue
            users = list(node.users)
            same = same_shape(val(other).shape, val(node).shape)
            # a lower-rank operand would shift every dim the views after it address
            broadcasts = val(other).dim() == val(node).dim() and _broadcast_only_uses(node)
            if not same and not broadcasts:
                stats["miss:shape_differs"] += 1
                continue
            node.replace_all_uses_with(other)
            ctx.gm.graph.erase_node(node)
            if not same:
                _reinfer(users)
            stats["rewritten"] += 1
        modified = stats["rewritten"] + stats["index_as_view"] > 0
        return PassResult(ctx.gm, modified=modified, stats=dict(stats))


def _other_operand(facts: Facts, node: fx.Node, identity: int) -> Any:
    """The operand ``node`` returns unchanged because the other one is all ``identity``."""
    a, b = node.args
    for known, other in ((a, b), (b, a)):
        fact = facts.of(known)
        if isinstance(known, fx.Node) and fact is not None and fact.uniform:
            if fact.offset == identity:
                return other
    return None


def _index_as_unsqueezes(facts: Facts, node: fx.Node) -> bool:
    """``x[i0, ..., ik]`` where each ``id`` is ``arange(x.shape[d])`` laid along its own output
    dim, in order, and every other output dim has size 1: that is ``x`` with unsqueezes."""
    x, indices = node.args
    out = val(node)
    if len(indices) != val(x).dim() or any(i is None for i in indices):
        return False
    placed: list[int] = []
    for d, index in enumerate(indices):
        fact = facts.of(index)
        if fact is None or fact.offset != 0:
            return False
        steps = (0,) * (out.dim() - len(fact.steps)) + fact.steps
        along = [o for o, step in enumerate(steps) if step]
        if len(along) != 1 or steps[along[0]] != 1:
            return False
        if not same_dim(out.shape[along[0]], val(x).shape[d]):
            return False
        placed.append(along[0])
    if placed != sorted(set(placed)):
        return False
    if any(static_dim(out.shape[o]) != 1 for o in range(out.dim()) if o not in placed):
        return False
    graph, y = node.graph, x
    with graph.inserting_before(node):
        for o in range(out.dim()):
            if o not in placed:
                y = call(graph, aten.unsqueeze.default, (y, o))
    node.replace_all_uses_with(y)
    graph.erase_node(node)
    return True
