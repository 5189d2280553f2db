"""Structured pruning (opt-in, lossy): remove the given share of each conv/linear layer's output
channels, those with the smallest L1 norm of their weights, together with the matching input
channels of the next layer, so the exported model is physically smaller. Only simple chains
(``conv -> [bn] -> act -> conv``, ``linear -> act -> linear``) are pruned. The stats report
parameters and FLOPs (batch 1) before and after and the deviation of the outputs from the
unpruned graph on the example inputs."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch

from .._errors import PassError
from ._channels import (
    PLAIN_CONVS,
    PRUNED,
    flops,
    keep_channels,
    match_chain,
    param_count,
    weight_name,
    weight_value,
)
from ._graph import is_call
from ._infra import Pass, PassContext, PassResult, register

aten = torch.ops.aten


@register
class PruneChannels(Pass):
    """``ratio``: a share for every layer, or {layer name: share} where the layer name is its
    weight's name without ``.weight`` (``"layer1.0.conv1"``). Runs once per pipeline. Misses:
    ``not_listed`` (a dict without this layer), ``nothing_to_remove`` (the share rounds to no
    channel), ``weight_not_state``, ``grouped_conv``, ``has_other_users``,
    ``consumer_not_simple``, ``training_mode``."""

    name = "prune"
    once = True
    lossy = True

    def __init__(self, ratio: float | dict[str, float] = 0.0) -> None:
        if isinstance(ratio, (int, float)) and not 0 <= ratio < 1:
            raise ValueError(f"prune ratio must be in [0, 1), not {ratio}")
        self.ratio = ratio

    def _share(self, layer: str) -> float | None:
        if isinstance(self.ratio, dict):
            return self.ratio.get(layer)
        return float(self.ratio)

    def _prune(self, ctx: PassContext, node: Any) -> str | None:
        """Prune ``node``'s output channels, or say why not."""
        why = self._why_not(ctx, node)
        if why != "ok":
            return why
        chain = match_chain(ctx, node)
        assert not isinstance(chain, str)
        w = weight_value(ctx, chain.weight)
        n_out = w.shape[0]
        n_drop = self._drop(ctx, node, n_out)
        norms = w.detach().flatten(1).abs().sum(1)
        keep = torch.argsort(norms, descending=True, stable=True)[: n_out - n_drop]
        keep_channels(ctx, chain, torch.sort(keep).values)
        self.done["layers"] += 1
        self.done["channels_removed"] += n_drop
        return None

    def _drop(self, ctx: PassContext, node: Any, n_out: int) -> int:
        share = self._share(self._layer(ctx, node)) or 0.0
        return min(int(math.floor(share * n_out)), n_out - 1)

    def _layer(self, ctx: PassContext, node: Any) -> str:
        return (weight_name(ctx, node.args[1]) or node.name).removesuffix(".weight")

    def _why_not(self, ctx: PassContext, node: Any) -> str:
        if self._share(self._layer(ctx, node)) is None:
            return "not_listed"
        chain = match_chain(ctx, node)
        if isinstance(chain, str):
            return chain
        w = weight_value(ctx, chain.weight)
        if self._drop(ctx, node, w.shape[0]) <= 0:
            return "nothing_to_remove"
        return "ok"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        layers = {
            self._layer(ctx, n)
            for n in ctx.gm.graph.nodes
            if is_call(n, aten.linear.default, *PLAIN_CONVS)
        }
        params0, flops0 = param_count(ctx), flops(ctx)
        reference = _outputs(ctx)
        progress = True
        while progress:  # a pruned chain's consumer is a new node: scan again for it
            progress = False
            for node in list(ctx.gm.graph.nodes):
                if node._erased or node.meta.get(PRUNED):
                    continue
                if not is_call(node, aten.linear.default, *PLAIN_CONVS):
                    continue
                miss = self._prune(ctx, node)
                if miss is None:
                    progress = True
                    break
        for node in ctx.gm.graph.nodes:  # what is left unpruned, and why
            if is_call(node, aten.linear.default, *PLAIN_CONVS) and not node.meta.get(PRUNED):
                stats["miss:" + self._why_not(ctx, node)] += 1
        if isinstance(self.ratio, dict):
            unknown = sorted(set(self.ratio) - layers)
            if unknown:
                raise PassError(
                    f"prune names layers that are not conv/linear layers of the model: {unknown}",
                    hint=f"the layers are {sorted(layers)[:20]}",
                )
        stats.update(self.done)
        result: dict[str, Any] = dict(stats)
        if self.done["layers"]:
            result.update(params_before=params0, params_after=param_count(ctx))
            result.update(flops_before=flops0, flops_after=flops(ctx))
            after = _outputs(ctx)
            if reference is not None and after is not None:
                dev = max((a - r).abs().max().item() for a, r in zip(after, reference, strict=True))
                scale = max(r.abs().max().item() for r in reference) or 1.0
                result.update(max_abs_deviation=dev, max_rel_deviation=dev / scale)
        return PassResult(ctx.gm, modified=self.done["layers"] > 0, stats=result)


def _outputs(ctx: PassContext) -> list[torch.Tensor] | None:
    if not ctx.example_inputs:
        return None
    ctx.gm.recompile()
    with torch.no_grad():
        outs = ctx.captured.run_torch(*ctx.example_inputs)
    return [o.float() for o in outs if isinstance(o, torch.Tensor)]
