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

from ._channels import PLAIN_CONVS, flops, keep_channels, match_chain, param_count
from ._graph import is_call, placeholder_specs, state_of
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

    def __init__(self, ratio: float | dict[str, float] = 0.0) -> None:
        if isinstance(ratio, (int, float)) and not 0 <= ratio < 1:
            raise ValueError(f"prune ratio must be in [0, 1), not {ratio}")
        self.ratio = ratio

    def _share(self, layer: str) -> float | None:
        if isinstance(self.ratio, dict):
            return self.ratio.get(layer)
        return float(self.ratio)

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        names = {node: spec.name for node, spec in placeholder_specs(ctx.captured).items()}
        params0, flops0 = param_count(ctx), flops(ctx)
        reference = _outputs(ctx)
        for node in list(ctx.gm.graph.nodes):
            if node._erased or not is_call(node, aten.linear.default, *PLAIN_CONVS):
                continue
            layer = names.get(node.args[1], node.name).removesuffix(".weight")
            share = self._share(layer)
            if share is None:
                stats["miss:not_listed"] += 1
                continue
            chain = match_chain(ctx, node)
            if isinstance(chain, str):
                stats["miss:" + chain] += 1
                continue
            w = state_of(ctx.captured, chain.weight)
            n_out = w.shape[0]
            n_drop = min(int(math.floor(share * n_out)), n_out - 1)
            if n_drop <= 0:
                stats["miss:nothing_to_remove"] += 1
                continue
            norms = w.detach().flatten(1).abs().sum(1)
            keep = torch.argsort(norms, descending=True, stable=True)[: n_out - n_drop]
            keep_channels(ctx, chain, torch.sort(keep).values)
            stats["layers"] += 1
            stats["channels_removed"] += n_drop
        result: dict[str, Any] = dict(stats)
        if stats["layers"]:
            result.update(params_before=params0, params_after=param_count(ctx))
            result.update(flops_before=flops0, flops_after=flops(ctx))
            after = _outputs(ctx)
            if reference is not None and after is not None:
                dev = max((a - r).abs().max().item() for a, r in zip(after, reference, strict=True))
                scale = max(r.abs().max().item() for r in reference) or 1.0
                result.update(max_abs_deviation=dev, max_rel_deviation=dev / scale)
        return PassResult(ctx.gm, modified=stats["layers"] > 0, stats=result)


def _outputs(ctx: PassContext) -> list[torch.Tensor] | None:
    if not ctx.example_inputs:
        return None
    ctx.gm.recompile()
    with torch.no_grad():
        outs = ctx.captured.run_torch(*ctx.example_inputs)
    return [o.float() for o in outs if isinstance(o, torch.Tensor)]
