"""Turn in-place ATen ops into their functional twins, where that is provably safe.

The fast path handles what inference graphs usually hold (``relu_``, ``add_`` on a fresh
tensor). A mutation of a view, of a graph input, or of a tensor that some view aliases
needs real functionalization; ``functionalize_simple`` then says so and capture falls back to
torch's own (``aot_export_module``), which is slower but exact.
"""

from __future__ import annotations

import operator

import torch
from torch import fx

aten = torch.ops.aten

# Ops whose only effect is on autograd metadata: drop them.
_NO_OP_INPLACE = {aten.detach_.default}


def is_view(node: object) -> bool:
    """A node whose result aliases its first input (a view op, or an item of one)."""
    if not isinstance(node, fx.Node) or node.op != "call_function":
        return False
    if node.target is operator.getitem:
        return is_view(node.args[0])
    target = node.target
    if not isinstance(target, torch._ops.OpOverload):
        return False
    schema = target._schema
    returns = schema.returns
    return bool(returns) and returns[0].alias_info is not None and not schema.is_mutable


# in-place view ops whose out-of-place twin has another overload name
_METADATA_TWINS = {
    aten.transpose_.default: aten.transpose.int,
    aten.t_.default: aten.t.default,
    aten.unsqueeze_.default: aten.unsqueeze.default,
    aten.squeeze_.default: aten.squeeze.default,
    aten.squeeze_.dim: aten.squeeze.dim,
}


def _functional_twin(op: torch._ops.OpOverload) -> torch._ops.OpOverload | None:
    if op in _METADATA_TWINS:
        return _METADATA_TWINS[op]
    name = op._schema.name.split("::")[-1]
    if not name.endswith("_"):
        return None
    packet = getattr(aten, name[:-1], None)
    overload = op._overloadname
    return getattr(packet, overload, None) if packet is not None else None


def _writes_only_self(op: torch._ops.OpOverload) -> bool:
    args = op._schema.arguments
    written = [a for a in args if a.alias_info is not None and a.alias_info.is_write]
    return len(written) == 1 and written[0] is args[0]


def functionalize_simple(gm: fx.GraphModule) -> str | None:
    """Rewrite safe in-place ops; return why the rest needs full functionalization (or None)."""
    graph = gm.graph
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        if not target._schema.is_mutable:
            continue
        if target in _NO_OP_INPLACE:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
            continue
        twin = _functional_twin(target)
        mutated = node.args[0]
        if twin is None or not _writes_only_self(target):
            return f"{target} has no functional twin"
        if not isinstance(mutated, fx.Node) or mutated.op == "placeholder":
            return f"{target} mutates a graph input"
        if is_view(mutated) or any(is_view(u) for u in mutated.users):
            return f"{target} mutates a view or an aliased tensor"
        with graph.inserting_before(node):
            new = graph.call_function(twin, node.args, node.kwargs)
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        for user in list(mutated.users):
            if user is not new and order.get(user, -1) > order[node]:
                user.replace_input_with(mutated, new)
        graph.erase_node(node)
    return None
