"""Compute only the rows an output reads: move a ``select`` (or a narrowing ``slice``) on a
dim that the ops before it treat row by row up through those ops, towards the inputs.

A classifier that reads one token (ViT's class token ``x[:, 0]``, BERT's pooler, a decoder's
last position ``x[:, -1]``) runs its last block on every token and drops all but one
afterwards. Row by row means: elementwise ops (broadcast operands are picked where they have
the dim), layer and RMS norms over later dims, linears and matmuls with a 2-D weight (and
aot_autograd's ``addmm``/``mm`` between views), softmax over another dim, the rows of a
batched matmul's left operand, transposes, reshapes that keep the dims up to the picked one,
and the query side of attention (a query row's output reads every key and value but no other
query). In the zoo's ViT the
select moves through the last block's MLP, its output projection and into its attention's
queries: 18% of the model's FLOPs go. Where the pick reaches an op that mixes rows (the
attention's keys and values, a mean over the dim, a convolution), or a value with other users,
it stays there: the rows are still all computed once, and nothing is computed twice. A causal
attention (``is_causal``) is moved through only for its last row, which reads every key.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from ..capture import same_dim, same_shape, static_dim
from ._graph import call, erase_dead, fake_mode, is_call, slice_args, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten
_END = 2**63 - 1  # slice.Tensor's "to the end"

# ops whose first argument is the only tensor and that act on each element
_UNARY = {
    aten.relu.default,
    aten.gelu.default,
    aten.silu.default,
    aten.sigmoid.default,
    aten.tanh.default,
    aten.neg.default,
    aten.exp.default,
    aten.erf.default,
    aten.sqrt.default,
    aten.rsqrt.default,
    aten.abs.default,
    aten.hardtanh.default,
    aten.leaky_relu.default,
    aten.elu.default,
    aten.hardswish.default,
    aten.hardsigmoid.default,
    aten.clone.default,
    aten._to_copy.default,
    aten.mul.Scalar,
    aten.add.Scalar,
    aten.sub.Scalar,
    aten.div.Scalar,
    aten.pow.Tensor_Scalar,
}
# elementwise over broadcast tensor operands
_BROADCAST = {
    aten.add.Tensor,
    aten.sub.Tensor,
    aten.mul.Tensor,
    aten.div.Tensor,
    aten.maximum.default,
    aten.minimum.default,
    aten.where.self,
    aten.pow.Tensor_Tensor,
}
_NORMS = {aten.layer_norm.default, aten.rms_norm.default}  # (x, normalized_shape, ...)
_VIEWS = {aten.view.default, aten.reshape.default, aten._unsafe_view.default}
_SOFTMAX = {  # (x, dim, ...)
    aten.softmax.int,
    aten.log_softmax.int,
    aten._softmax.default,
    aten._safe_softmax.default,
    aten._log_softmax.default,
}


@dataclass(frozen=True)
class Pick:
    """``x.select(dim, start)`` (``end`` None: the dim goes) or ``x[start:end]`` on ``dim``."""

    start: int
    end: int | None = None

    @property
    def drops_dim(self) -> bool:
        return self.end is None

    def on(self, graph: fx.Graph, x: fx.Node, dim: int) -> fx.Node:
        if self.drops_dim:
            return call(graph, aten.select.int, (x, dim, self.start))
        return call(graph, aten.slice.Tensor, (x, dim, self.start, self.end))

    def kept(self) -> Pick:
        """The same rows with their dim kept (a select of one row as a slice of one)."""
        return Pick(*self.as_slice())

    def as_slice(self) -> tuple[int, int]:
        """The rows as a slice that keeps the dim (a select of -1 is ``[-1:]``)."""
        if not self.drops_dim:
            return self.start, self.end  # type: ignore[return-value]
        return self.start, _END if self.start == -1 else self.start + 1


def _pick_of(node: fx.Node) -> tuple[fx.Node, int, Pick] | None:
    """(input, dim, pick) of a select, or of a step-1 slice that leaves out some rows."""
    if is_call(node, aten.select.int):
        x, dim, index = node.args
        if not isinstance(index, int):
            return None  # a run-time index
        return x, dim % val(x).dim(), Pick(index)
    if is_call(node, aten.slice.Tensor):
        dim, start, end, step = slice_args(node)
        x = node.args[0]
        if step != 1 or not isinstance(start, int) or not isinstance(end, (int, type(None))):
            return None
        dim %= val(x).dim()
        end = _END if end is None else end
        if same_dim(val(node).shape[dim], val(x).shape[dim]):
            return None  # every row: a view, not a pick
        return x, dim, Pick(start, end)
    return None


def _full_slice(node: fx.Node) -> bool:
    """A slice that keeps every row (``x[:, 0]`` traces as ``x[:]`` then the select)."""
    return is_call(node, aten.slice.Tensor) and same_shape(val(node).shape, val(node.args[0]).shape)


class _Rewrite:
    """The nodes one push made (to take them back if the result's metadata is off)."""

    def __init__(self, graph: fx.Graph, pick: Pick) -> None:
        self.graph, self.pick, self.made = graph, pick, []
        self.picks: list[fx.Node] = []  # picks that may move further up

    def pick_on(self, x: fx.Node, dim: int, pick: Pick | None = None) -> fx.Node:
        """``pick`` (by default the one being moved) of ``x`` at ``dim``: one that exists
        already (a residual's value picked on both of its paths is picked once, and may then
        move on), else a new one."""
        pick = self.pick if pick is None else pick
        for user in x.users if x.op == "call_function" else ():
            if _pick_of(user) == (x, dim, pick):
                x.append(user)  # right after x: before whatever it is about to feed
                return user
        node = pick.on(self.graph, x, dim)
        self.made.append(node)
        self.picks.append(node)
        return node

    def call(
        self, target: Any, args: tuple, kwargs: dict | None = None, like: fx.Node | None = None
    ) -> fx.Node:
        """A new node; ``like``: a node whose metadata it has (a symbolic fake layer norm or
        attention costs milliseconds, and the picked result's shape is known)."""
        node = call(self.graph, target, args, kwargs, like=like)
        self.made.append(node)
        return node

    def undo(self) -> None:
        for node in reversed(self.made):
            if not node.users:
                self.graph.erase_node(node)


def _operand(rw: _Rewrite, a: Any, dim: int, out: fx.Node) -> Any:
    """A broadcast operand of ``out``'s op, picked where it has the dim."""
    if not isinstance(a, fx.Node) or not isinstance(val(a), torch.Tensor):
        return a
    own = dim - (val(out).dim() - val(a).dim())
    if own < 0:
        return a
    if static_dim(val(a).shape[own]) == 1 and static_dim(val(out).shape[dim]) != 1:
        return rw.call(aten.select.int, (a, own, 0)) if rw.pick.drops_dim else a
    return rw.pick_on(a, own)


def _permuted(rw: _Rewrite, y: fx.Node, perm: list[int], dim: int) -> fx.Node:
    source = perm[dim]
    picked = rw.pick_on(y, source)
    if rw.pick.drops_dim:
        perm = [p - (p > source) for p in perm if p != source]
    if perm == list(range(len(perm))):
        return picked
    return rw.call(aten.permute.default, (picked, perm))


def _through_view(rw: _Rewrite, x: fx.Node, dim: int, picked: fx.Node) -> fx.Node | str:
    y, target = x.args[0], list(x.args[1])
    shape_in, shape_out = val(y).shape, val(x).shape
    if dim < len(shape_in) and all(same_dim(shape_in[j], shape_out[j]) for j in range(dim + 1)):
        if rw.pick.drops_dim:
            target = target[:dim] + target[dim + 1 :]
        else:
            rows = static_dim(val(picked).shape[dim])
            if rows is None and any(type(t) is int and t < 0 for t in target):
                return "dynamic_rows"  # the kept rows vary, and the view infers another dim
            target[dim] = -1 if rows is None else rows
        # reshape, not view: the picked rows of a contiguous tensor need not be contiguous
        return rw.call(aten.reshape.default, (rw.pick_on(y, dim), target))
    if is_call(y, *_VIEWS) and len(y.users) == 1:  # a view of a view is one view
        merged = rw.call(aten.reshape.default, (y.args[0], list(x.args[1])))
        return rw.pick_on(merged, dim)
    # a view over the leading dims of a linear is the linear over the view of its input
    if len(y.users) == 1 and same_dim(shape_in[-1], shape_out[-1]) and dim < len(shape_out) - 1:
        moved = _product_over_view(rw, y, target, x)
        if moved is not None:
            return moved if isinstance(moved, str) else rw.pick_on(moved, dim)
    return "view_mixes_rows"


def _product_over_view(rw: _Rewrite, y: fx.Node, target: list, view: fx.Node) -> Any:
    """``view`` (of ``target``, splitting the leading dim) of the row-wise product ``y``
    (``linear``; aot_autograd's ``addmm``/``mm`` of a 2-D view) as the same product over its
    input viewed to ``target``'s leading dims; None when ``y`` is none of those."""
    if is_call(y, aten.linear.default):
        z = y.args[0]
    elif is_call(y, aten.mm.default) or (is_call(y, aten.addmm.default) and not y.kwargs):
        z = y.args[-2]
    else:
        return None
    k = static_dim(val(z).shape[-1])
    if k is None:
        return "dynamic_features"
    z_view = rw.call(aten.reshape.default, (z, [*target[:-1], k]))
    if is_call(y, aten.linear.default):
        return rw.call(aten.linear.default, (z_view, *y.args[1:]), dict(y.kwargs), like=view)
    product = rw.call(aten.matmul.default, (z_view, y.args[-1]), like=view)
    if is_call(y, aten.mm.default):
        return product
    return rw.call(aten.add.Tensor, (product, y.args[0]), like=view)


def _keep_dim_result(rw: _Rewrite, out: fx.Node, dim: int, picked: fx.Node) -> fx.Node:
    """``out`` computed on rows kept as a dim: the picked value, that dim squeezed for a
    select (``out``'s metadata is the picked value's with the dim kept)."""
    if not rw.pick.drops_dim:
        out.meta["val"] = val(picked)
        return out
    with fake_mode(rw.graph.owning_module):
        out.meta["val"] = val(picked).unsqueeze(dim)
    return rw.call(aten.squeeze.dim, (out, dim))


def _rows_of_batched(rw: _Rewrite, x: fx.Node, dim: int, picked: fx.Node) -> fx.Node:
    """A batched matmul's output rows from its left operand's rows. A select keeps its dim
    through the product (a matrix of one row, not a vector, which would broadcast)."""
    a_rows = rw.pick_on(x.args[0], dim, rw.pick.kept())
    out = rw.call(x.target, (a_rows, *x.args[1:]), dict(x.kwargs), like=picked)
    return _keep_dim_result(rw, out, dim, picked)


def _through_attention(rw: _Rewrite, x: fx.Node, dim: int, picked: fx.Node) -> fx.Node | str:
    q, k, v = x.args[:3]
    rank = val(x).dim()
    if dim != rank - 2:
        return "attention_batch_dim"
    names = ("attn_mask", "dropout_p", "is_causal")
    given = dict(zip(names, x.args[3:6], strict=False)) | {
        n: x.kwargs[n] for n in names if n in x.kwargs
    }
    if given.get("dropout_p", 0.0):
        return "dropout"
    keep = rw.pick.kept()
    args = [rw.pick_on(q, dim, keep), k, v, *x.args[3:]]
    kwargs = dict(x.kwargs)
    if given.get("is_causal", False):
        # a causal row reads the keys up to its own position: the last row of a square
        # attention reads them all (a decoder's last token), any other pick would need a mask
        square = same_dim(val(q).shape[dim], val(k).shape[dim])
        if not square or keep.as_slice() != (-1, _END) or given.get("attn_mask") is not None:
            return "causal"
        if "is_causal" in kwargs:
            kwargs["is_causal"] = False
        else:
            args[5] = False
    mask = given.get("attn_mask")
    if isinstance(mask, fx.Node):
        own = dim - (rank - val(mask).dim())
        if own >= 0 and static_dim(val(mask).shape[own]) != 1:
            rows = rw.call(aten.slice.Tensor, (mask, own, *keep.as_slice()))
            if "attn_mask" in kwargs:
                kwargs["attn_mask"] = rows
            else:
                args[3] = rows
    out = rw.call(x.target, tuple(args), kwargs, like=picked)
    return _keep_dim_result(rw, out, dim, picked)


def _on_picked_input(rw: _Rewrite, x: fx.Node, dim: int, picked: fx.Node) -> fx.Node:
    """x's op on the pick of its first input, its other arguments as they are."""
    args = (rw.pick_on(x.args[0], dim), *x.args[1:])
    return rw.call(x.target, args, dict(x.kwargs), like=picked)


def _push(rw: _Rewrite, x: fx.Node, dim: int, picked: fx.Node) -> fx.Node | str:
    """A node computing ``picked`` (the pick of x) from x's inputs, or why there is none."""
    target = x.target
    rank = val(x).dim()
    if target in _UNARY:
        return _on_picked_input(rw, x, dim, picked)
    if target in _BROADCAST:
        args = tuple(_operand(rw, a, dim, x) for a in x.args)
        kwargs = {k: _operand(rw, a, dim, x) for k, a in x.kwargs.items()}
        return rw.call(target, args, kwargs)  # inferred (cheap here): checked against picked
    if target in _NORMS:
        if dim >= rank - len(x.args[1]):
            return "normalized_dim"
        return _on_picked_input(rw, x, dim, picked)
    if target in (aten.linear.default, aten.matmul.default, aten.mm.default, aten.bmm.default):
        a, w = x.args[:2]
        if dim >= rank - 1 or val(a).dim() < 2:
            return "contracted_dim"
        if target is not aten.linear.default and val(w).dim() > 2:
            # batched: a's rows are the output's rows (the batch dims would pick both)
            if val(a).dim() != rank or dim != rank - 2:
                return "batch_dim"
            return _rows_of_batched(rw, x, dim, picked)
        return _on_picked_input(rw, x, dim, picked)
    if target is operator.getitem:  # aot_autograd's layer norm returns (out, mean, rstd)
        norm, index = x.args
        if index != 0 or not is_call(norm, aten.native_layer_norm.default) or len(norm.users) > 1:
            return "mixes_rows"
        if dim >= rank - len(norm.args[1]):
            return "normalized_dim"
        picked_norm = rw.call(norm.target, (rw.pick_on(norm.args[0], dim), *norm.args[1:]))
        return rw.call(operator.getitem, (picked_norm, 0), like=picked)
    if target in _SOFTMAX:
        over = x.args[1] % rank
        if dim == over:
            return "normalized_dim"
        over -= 1 if rw.pick.drops_dim and over > dim else 0
        args = (rw.pick_on(x.args[0], dim), over, *x.args[2:])
        return rw.call(target, args, like=picked)
    if target is aten.permute.default:
        return _permuted(rw, x.args[0], [p % rank for p in x.args[1]], dim)
    if target is aten.transpose.int:
        a, b = x.args[1] % rank, x.args[2] % rank
        perm = list(range(rank))
        perm[a], perm[b] = perm[b], perm[a]
        return _permuted(rw, x.args[0], perm, dim)
    if target in _VIEWS:
        return _through_view(rw, x, dim, picked)
    if target is aten.scaled_dot_product_attention.default:
        return _through_attention(rw, x, dim, picked)
    return "mixes_rows"


def _moved(graph: fx.Graph, node: fx.Node, stats: Counter[str]) -> list[fx.Node]:
    """Move one pick up by one op; the new picks that may move further."""
    if _pick_of(node) is None:
        return []
    while _full_slice(node.args[0]) and len(node.args[0].users) == 1:
        whole = node.args[0]
        node.replace_input_with(whole, whole.args[0])
        graph.erase_node(whole)
        stats["dropped:whole_slice"] += 1
    found = _pick_of(node)
    assert found is not None
    x, dim, pick = found
    if x.op != "call_function":
        return []
    if any(_pick_of(u) != found for u in x.users):
        stats["miss:shared"] += 1
        return []
    for twin in [u for u in x.users if u is not node]:  # the same pick made twice
        twin.replace_all_uses_with(node)
        graph.erase_node(twin)
    rw = _Rewrite(graph, pick)
    with graph.inserting_before(x):
        new = _push(rw, x, dim, node)
    if isinstance(new, str):
        rw.undo()
        if new != "mixes_rows":
            stats["miss:" + new] += 1
        return []
    if not (same_shape(val(new).shape, val(node).shape) and val(new).dtype == val(node).dtype):
        rw.undo()  # a rule got a shape wrong: keep the graph as it was
        stats["miss:metadata"] += 1
        return []
    node.replace_all_uses_with(new)
    erase_dead(node)
    stats[f"moved:{getattr(x.target, '__name__', x.target)}"] += 1
    return rw.picks


@register
class SelectEarly(Pass):
    """Misses: ``shared`` (the picked value has other users: its rows are computed anyway),
    ``normalized_dim``/``contracted_dim`` (the op mixes the picked dim), ``causal`` (a causal
    attention picked other than at its last row), ``dropout``, ``attention_batch_dim`` and
    ``batch_dim`` (picks of batch dims), ``view_mixes_rows``, ``dynamic_rows``/
    ``dynamic_features`` (a view it would need a run-time size for)."""

    name = "select_early"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        work = [n for n in graph.nodes if is_call(n, aten.select.int, aten.slice.Tensor)]
        while work:
            node = work.pop()
            if node.graph is graph and not node._erased:
                work += _moved(graph, node, stats)
        moved = sum(v for k, v in stats.items() if k.startswith(("moved:", "dropped:")))
        return PassResult(ctx.gm, modified=moved > 0, stats=dict(stats))
