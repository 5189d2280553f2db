"""Duplicate-weight dedup: parameters, buffers and constants with bit-identical values (same
dtype, shape and bytes) become one input; the others' placeholders and state are dropped."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch import fx

from ._graph import placeholder_specs, remove_unused_state
from ._infra import Pass, PassContext, PassResult, register
from .const_fold import FOLDED_FROM


@register
class DedupWeights(Pass):
    """Reroute the users of a state tensor equal to an earlier one to the earlier one. Misses:
    ``near_duplicate`` (same shape and dtype, close but not bit-identical: not merged)."""

    name = "dedup_weights"

    def run(self, ctx: PassContext) -> PassResult:
        stats: Counter[str] = Counter()
        captured = ctx.captured
        groups: dict[tuple, list[tuple[fx.Node, torch.Tensor, np.ndarray]]] = {}
        specs = placeholder_specs(captured)
        for node, spec in specs.items():
            if spec.kind == "input" or not node.users:
                continue
            t = captured.state[spec.name]
            key = (t.dtype, tuple(t.shape), t.device)
            match = None
            head = _head(t)
            for first, ft, fh in groups.get(key, []):
                if np.array_equal(fh, head) and _equal(ft, t):
                    match = first
                    break
                close = t.dtype.is_floating_point and np.allclose(fh, head)
                if close and torch.allclose(ft, t):
                    stats["miss:near_duplicate"] += 1
            if match is None:
                groups.setdefault(key, []).append((node, t, head))
                continue
            _merge_sources(match, node, specs)
            node.replace_all_uses_with(match)
            stats["merged"] += 1
        if stats["merged"]:
            remove_unused_state(captured)
        return PassResult(ctx.gm, modified=stats["merged"] > 0, stats=dict(stats))


def _merge_sources(kept: fx.Node, gone: fx.Node, specs: dict) -> None:
    """A folded constant merged with a parameter (a zero bias scaled by a folded scalar, equal
    to another zero bias) makes the survivor stand for a baked value too: it carries the
    constant's sources and its own name (``FOLDED_FROM``), so verification holds it still."""
    if FOLDED_FROM not in kept.meta and FOLDED_FROM not in gone.meta:
        return
    names = set(kept.meta.get(FOLDED_FROM, ())) | set(gone.meta.get(FOLDED_FROM, ()))
    names |= {specs[n].name for n in (kept, gone) if specs[n].kind != "constant"}
    kept.meta[FOLDED_FROM] = tuple(sorted(names))


def _head(t: torch.Tensor) -> np.ndarray:
    """The first 64 elements in numpy, to compare every pair of same-shaped weights cheaply
    (two torch calls per pair were most of this pass's time on a transformer); bfloat16, which
    numpy lacks, widened exactly to float32."""
    h = t.detach().flatten()[:64].cpu()
    return (h.float() if h.dtype == torch.bfloat16 else h).numpy()


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """torch.equal, in numpy where it can (torch's took 2-3 ms per pair of small tensors when
    the two cores were busy)."""
    if a.dtype == torch.bfloat16:
        return torch.equal(a, b)
    return bool(np.array_equal(a.detach().cpu().numpy(), b.detach().cpu().numpy()))
