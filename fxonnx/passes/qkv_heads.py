"""Packed QKV split into heads with one transpose. ``nn.MultiheadAttention`` (torch's
``_in_projection_packed``) splits the packed projection ``Y`` of shape ``(S, B, 3 * D)`` as

    c = reshape(Y, [1, S, B, 3, D]).transpose(0, -2).squeeze(-2).contiguous()   # (3, S, B, D)
    q_i = reshape(c[i], [S, B * H, Dh]).transpose(0, 1).reshape([B, H, S, Dh])  # i = 0, 1, 2

which exports as 16 layout nodes per attention. The same values, element for element, are

    p = reshape(Y, [S, B, 3, H, Dh]).permute(2, 1, 3, 0, 4)                      # (3, B, H, S, Dh)
    q_i = p[i]

(5 nodes: one Reshape, one Transpose, three Gathers). Pure layout: training-safe.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import fx

from ..capture import same_shape, static_dim
from ._graph import call, erase_dead, is_call, only_user, same_meta, val
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten

_RESHAPES = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)


@register
class SplitQkvHeads(Pass):
    """Misses: ``not_three_selects`` (the packed tensor has other users), ``head_chain`` (a
    q/k/v does not go through reshape, transpose(0, 1), reshape into (B, H, S, Dh)),
    ``dynamic_dims`` (more than one dim of the packed projection varies at run time, or a head
    size is not static), ``shape_mismatch`` (the rewrite would not give the same shapes)."""

    name = "qkv_heads"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        graph = ctx.gm.graph
        for node in list(graph.nodes):
            if node._erased or not is_call(node, aten.select.int):
                continue
            packed = _packed(node)
            if packed is None:
                continue
            result = _rewrite(ctx, *packed)
            stats["rewritten" if result is None else "miss:" + result] += 1
        return PassResult(ctx.gm, modified=stats["rewritten"] > 0, stats=dict(stats))


def _packed(select: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """(the packed (3, S, B, D) node, Y viewed as (1, S, B, 3, D)) when ``select``
    reads torch's packed split; None when it is some other select (not counted)."""
    c = select.args[0]
    if select.args[1] != 0 or select.args[2] != 0:
        return None  # match once per attention, at q's select
    squeeze = c.args[0] if is_call(c, aten.contiguous.default, aten.clone.default) else c
    if not is_call(squeeze, aten.squeeze.dim):
        return None
    transpose = squeeze.args[0]
    if not is_call(transpose, aten.transpose.int):
        return None
    reshape = transpose.args[0]  # (1, S, B, 3, D): a reshape, or unflatten + unsqueeze
    r = val(reshape)
    if not isinstance(r, torch.Tensor) or r.dim() != 5:
        return None
    if static_dim(r.shape[0]) != 1 or static_dim(r.shape[3]) != 3:
        return None
    if squeeze.args[1] not in (-2, 3) or sorted(transpose.args[1:3]) not in ([-2, 0], [0, 3]):
        return None
    return c, reshape


def _heads(select: fx.Node) -> tuple[fx.Node, fx.Node] | None:
    """(the first reshape, the final reshape) of one of q, k, v, if the chain has torch's ops."""
    first = only_user(select)
    if not is_call(first, *_RESHAPES):
        return None
    t = only_user(first)
    if not is_call(t, aten.transpose.int) or sorted(t.args[1:3]) != [0, 1]:
        return None
    last = only_user(t)
    if not is_call(last, *_RESHAPES) or not isinstance(val(last), torch.Tensor):
        return None
    return (first, last) if val(last).dim() == 4 else None


def _rewrite(ctx: PassContext, c: fx.Node, reshape: fx.Node) -> str | None:
    selects = sorted(c.users, key=lambda u: u.args[2] if is_call(u, aten.select.int) else -1)
    if len(selects) != 3 or [
        (u.target, u.args[1], u.args[2]) for u in selects if is_call(u, aten.select.int)
    ] != [(aten.select.int, 0, i) for i in range(3)]:
        return "not_three_selects"
    chains = [_heads(s) for s in selects]
    if any(ch is None for ch in chains):
        return "head_chain"
    _, s, b, _, d = val(reshape).shape
    _, h, _, dh = val(chains[0][1]).shape
    h, dh, d = static_dim(h), static_dim(dh), static_dim(d)
    if h is None or dh is None or d is None:
        return "dynamic_dims"
    # the element mapping holds only for exactly these shapes at every step (compared without
    # guarding: symbolic sizes must be equal for every value of the symbols)
    want = [(val(c).shape, (3, s, b, d))]
    for first, last in chains:
        want += [(val(first).shape, (s, b * h, dh)), (val(last).shape, (b, h, s, dh))]
    if h * dh != d or not all(same_shape(got, exp) for got, exp in want):
        return "shape_mismatch"
    dims = _reshape_dims((s, b, 3, h, dh))
    if dims is None:
        return "dynamic_dims"
    graph = c.graph
    with graph.inserting_before(reshape.next):  # in order, right after the source
        r = call(graph, aten.reshape.default, (reshape, dims))
        p = call(graph, aten.permute.default, (r, [2, 1, 3, 0, 4]))
        new = [call(graph, aten.select.int, (p, 0, i)) for i in range(3)]
    if not all(same_meta(n, last) for n, (_, last) in zip(new, chains, strict=True)):
        for n in [*new, p, r]:
            graph.erase_node(n)
        return "shape_mismatch"
    for n, (_, last) in zip(new, chains, strict=True):
        last.replace_all_uses_with(n)
        erase_dead(last)
    return None


def _reshape_dims(dims: tuple[Any, ...]) -> list[int] | None:
    """Reshape sizes for ``dims``: ints, -1 for the one dim that varies at run time (None when
    several do)."""
    out = [static_dim(d) for d in dims]
    return [-1 if d is None else d for d in out] if out.count(None) <= 1 else None
