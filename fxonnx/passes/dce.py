"""Dead-code elimination: nodes whose values nothing uses, then unused parameters, buffers and
constants (their placeholders, signature entries and state)."""

from __future__ import annotations

from ._graph import remove_unused_state
from ._infra import Pass, PassContext, PassResult, register


@register
class EliminateDeadCode(Pass):
    """Erase pure nodes without users (``fx.Graph.eliminate_dead_code``; ops with side effects
    stay) and drop state placeholders nothing reads. User inputs are never removed."""

    name = "dce"

    def run(self, ctx: PassContext) -> PassResult:
        graph = ctx.gm.graph
        before = len(graph.nodes)
        graph.eliminate_dead_code()
        removed_nodes = before - len(graph.nodes)
        removed_state = remove_unused_state(ctx.captured)
        stats = {"removed_nodes": removed_nodes, "removed_state": len(removed_state)}
        return PassResult(ctx.gm, modified=bool(removed_nodes or removed_state), stats=stats)
