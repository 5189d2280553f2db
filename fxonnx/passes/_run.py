"""``run_passes``: the compiler's entry point into the passes, with per-pass verification."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx

from .._errors import PassError
from ..capture import Captured
from ..capture._lazy import lazy_graph_module
from ._infra import Pass, PassContext, Pipeline, get_pass

log = logging.getLogger(__name__)

# Pipelines are data: names from the registry, run in this order until nothing changes.
DEFAULT: tuple[str, ...] = (
    "noops",
    "views",
    "qkv_heads",
    "transpose",
    "cse",
    "known_values",
    "select_early",
    "fuse_gelu",
    "fuse_layer_norm",
    "fuse_attention",
    "fold_bn",
    "matmul_bias",
    "scalar_fold",
    "linear_chain",
    "linear_nd",
    "const_fold",
    "dedup_weights",
    "prune_zero",
    "dce",
    "fuse_activation",  # stage "onnx": on the lowered model, in compile, for its provider
)


def copy_captured(captured: Captured) -> Captured:
    """A Captured with its own graph, signature and state dict (tensors and FakeTensor metadata
    are shared, and passes never write into them)."""
    graph = fx.Graph()
    out = graph.graph_copy(captured.gm.graph, {})
    graph.output(out)
    gm = lazy_graph_module(captured.gm, graph)
    return captured.replace(gm=gm, state=dict(captured.state), notes=list(captured.notes))


def resolve(passes: str | Sequence[str | Pass], skip: Sequence[str] = ()) -> list[Pass]:
    """ "default", "none" or a list of names/Pass instances, minus ``skip``."""
    if isinstance(passes, str):
        if passes == "default":
            passes = DEFAULT
        elif passes == "none":
            passes = ()
        else:
            raise PassError(f"passes must be 'default', 'none' or a list of names, not {passes!r}")
    if not isinstance(passes, Sequence):
        raise PassError(
            f"passes must be 'default', 'none' or a list of names, not {type(passes).__name__}"
        )
    if isinstance(skip, str):
        raise PassError(
            f"skip must be a list of pass names, not the string {skip!r}", hint=f"skip=[{skip!r}]"
        )
    chosen = [get_pass(p) if isinstance(p, str) else p for p in passes]
    unknown = [s for s in skip if s not in {p.name for p in chosen}]
    for name in unknown:
        get_pass(name)  # an unknown name raises; a known one not in the pipeline is fine
    return [p for p in chosen if p.name not in set(skip)]


def chooses(passes: str | Sequence[str | Pass], skip: Sequence[str], name: str) -> bool:
    """Whether ``passes`` minus ``skip`` includes the pass ``name``."""
    return any(p.name == name for p in resolve(passes, skip))


def run_passes(
    captured: Captured,
    passes: str | Sequence[str | Pass] = "default",
    skip: Sequence[str] = (),
    *,
    verify_each: bool = False,
    example_inputs: Sequence[torch.Tensor] = (),
    prune: float | dict[str, float] | None = None,
    max_rounds: int = 3,
    opset: int | None = None,
) -> tuple[Captured, list[dict[str, Any]]]:
    """Optimize a copy of ``captured``; returns it with one stats dict per pass.

    ``passes``: "default" (``DEFAULT``), "none", or names/Pass instances; ``skip``: names to
    leave out. ``prune``: a ratio (or {layer name: ratio}) of conv/linear output channels to
    remove by L1 norm (adds the ``prune`` pass first, while layers still carry their names;
    its stats say how far the outputs on ``example_inputs`` moved). ``verify_each``: after
    every pass that changed the graph, run it in torch on ``example_inputs`` (flat user
    tensors) and compare with the unoptimized graph; a mismatch raises PassError naming the
    pass, the passes before it, and the first node whose value diverges. ``opset``: the ONNX opset the result
    will be lowered to (passes that only pay off with a newer op check it).
    """
    chosen = [p for p in resolve(passes, skip) if p.stage == "aten"]
    if prune:
        from .prune import PruneChannels

        chosen.insert(0, PruneChannels(prune))
    if verify_each and not example_inputs:
        raise PassError("verify_each needs example_inputs (the flat user tensors)")
    work = copy_captured(captured)
    ctx = PassContext(work, tuple(example_inputs), opset)
    after_each = None
    if verify_each:
        with torch.no_grad():
            base = [captured, captured.run_torch(*example_inputs)]  # graph and its outputs

        def after_each(p: Pass, before: list[str]) -> None:
            if p.lossy:  # later passes must preserve what the lossy pass produced
                snapshot = copy_captured(work)
                with torch.no_grad():
                    base[:] = [snapshot, snapshot.run_torch(*example_inputs)]
                return
            _check(base[0], work, base[1], p, before, ctx.example_inputs)

    stats = Pipeline(chosen, max_rounds=max_rounds).run(ctx, after_each)
    return work, stats


def _close(a: Any, b: Any) -> bool:
    from ..verify import compare

    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return compare("", a, b).ok
    return not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor)


def _check(
    original: Captured,
    work: Captured,
    reference: list[torch.Tensor],
    p: Pass,
    before: list[str],
    inputs: tuple[torch.Tensor, ...],
) -> None:
    """Compare the optimized graph's outputs with the reference; on a mismatch, find the first
    node (in the optimized graph's order) whose value differs from the same-named original."""
    with torch.no_grad():
        try:
            got = work.run_torch(*inputs)
        except Exception as e:
            raise PassError(
                f"pass {p.name!r} produced a graph that fails in torch: {type(e).__name__}: {e}"
                f" (passes before it: {before or 'none'})"
            ) from e
        if len(got) == len(reference) and all(
            _close(w, g) for w, g in zip(reference, got, strict=True)
        ):
            return
        old = _node_values(original, inputs)
        new = _node_values(work, inputs)
    first = next(
        (n for n, v in new.items() if n in old and not _close(old[n], v)),
        None,
    )
    where = f"; first diverging node: {first!r}" if first else ""
    raise PassError(
        f"pass {p.name!r} changed the model's outputs (passes before it: "
        f"{', '.join(before) or 'none'}){where}",
        hint=f"skip it with skip=[{p.name!r}] and report the model",
    )


def _node_values(captured: Captured, inputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            if n.op == "call_function":
                values[n.name] = out
            return out

    args = [captured.state[s.name] for s in captured.state_inputs] + list(inputs)
    Recorder(captured.gm).run(*args)
    return values


class GraphReference(torch.nn.Module):
    """The optimized graph run in torch, called like the eager model: what a lossy pipeline
    (``prune=``) is verified against, since eager is no longer the reference."""

    def __init__(self, captured: Captured) -> None:
        super().__init__()
        self.captured = captured

    def forward(self, *args: Any, **kwargs: Any) -> list[torch.Tensor]:
        from ..capture import ConstantLeaf

        leaves = torch.utils._pytree.tree_leaves((tuple(args), dict(kwargs)))
        tensors = [
            leaf
            for leaf, want in zip(leaves, self.captured.leaves, strict=True)
            if not isinstance(want, ConstantLeaf)
        ]
        return self.captured.run_torch(*tensors)
