"""Shared helpers for pass tests: capture, run passes, and compare with eager (outputs at two
batch sizes, parameter and input gradients through a seeded random cotangent)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from fxonnx.capture import Captured, capture
from fxonnx.passes import run_passes
from fxonnx.verify import compare

Inputs = Callable[[int], tuple[torch.Tensor, ...]]


def optimize(
    module: nn.Module,
    make: Inputs,
    passes: Sequence[Any],
    batch: int = 2,
    verify_each: bool = True,
    dynamic_dims: Any = "auto",
    **kw: Any,
) -> tuple[Captured, Captured, dict[str, dict]]:
    """(original, optimized, {pass name: stats}), by default with per-pass verification."""
    module.eval()
    x = make(batch)
    captured = capture(module, x, dynamic_dims=dynamic_dims)
    out, stats = run_passes(captured, list(passes), verify_each=verify_each, example_inputs=x, **kw)
    return captured, out, {s["name"]: s["stats"] for s in stats}


def assert_outputs_match(
    module: nn.Module, optimized: Captured, make: Inputs, batches: Sequence[int] = (2, 5)
) -> None:
    """The optimized graph (run in torch) equals eager at every batch (fp32 rtol 1e-4, atol 1e-5)."""
    for batch in batches:
        x = make(batch)
        with torch.no_grad():
            want = module(*x)
            got = optimized.run_torch(*x)
        want = list(want) if isinstance(want, (tuple, list)) else [want]
        assert len(got) == len(want)
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            check = compare(f"out{i}@{batch}", w, g)
            assert check.ok, check


def _graph_grads(
    optimized: Captured, x: tuple[torch.Tensor, ...], seed: int
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    params = {
        s.name: optimized.state[s.name].clone().requires_grad_(True)
        for s in optimized.state_inputs
        if s.kind == "parameter"
    }
    xs = [t.clone().requires_grad_(t.dtype.is_floating_point) for t in x]
    args = [params.get(s.name, optimized.state[s.name]) for s in optimized.state_inputs]
    outs = optimized.gm(*args, *xs)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    loss = _project(outs, seed)
    leaves = list(params.values()) + [t for t in xs if t.requires_grad]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    named = dict(zip(params, grads[: len(params)], strict=True))
    return named, list(grads[len(params) :])


def _project(outs: Sequence[torch.Tensor], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(())
    for o in outs:
        total = total + (o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum()
    return total


def assert_grads_match(
    module: nn.Module,
    optimized: Captured,
    make: Inputs,
    *,
    params: bool = True,
    batch: int = 3,
    seed: int = 0,
) -> None:
    """Gradients of <outputs, random cotangent> w.r.t. the inputs (and every parameter the graph
    still reads, by name) equal eager autograd's, with a tolerance scaled to their magnitude."""
    x = make(batch)
    module.eval()
    named, input_grads = _graph_grads(optimized, x, seed)
    xs = [t.clone().requires_grad_(t.dtype.is_floating_point) for t in x]
    eager_params = dict(module.named_parameters())
    out = module(*xs)
    loss = _project(list(out) if isinstance(out, (tuple, list)) else [out], seed)
    leaves = list(eager_params.values()) + [t for t in xs if t.requires_grad]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    want_params = dict(zip(eager_params, grads[: len(eager_params)], strict=True))
    want_inputs = list(grads[len(eager_params) :])
    pairs = list(zip(want_inputs, input_grads, strict=True))
    if params:
        assert named, "the graph reads no parameters"
        pairs += [(want_params[n], g) for n, g in named.items()]
    pairs = [
        (torch.zeros_like(g) if w is None else w, torch.zeros_like(w) if g is None else g)
        for w, g in pairs
    ]
    # analytically-zero gradients (a key bias under softmax) must not fail on rounding noise:
    # the absolute tolerance scales with the largest gradient of all
    scale = max(float(w.abs().max()) for w, _ in pairs if w.numel()) or 1.0
    for i, (want, got) in enumerate(pairs):
        check = compare(f"grad{i}", want, got, atol=1e-5 * scale)
        assert check.ok, check


def call_targets(captured: Captured) -> list[Any]:
    return [n.target for n in captured.gm.graph.nodes if n.op == "call_function"]


def randn(*shape: int) -> Inputs:
    """Inputs of ``shape`` with the batch in front, seeded by the batch size."""

    def make(batch: int) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(batch)
        return (torch.randn(batch, *shape, generator=gen),)

    return make
