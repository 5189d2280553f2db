"""Captured and optimized graph modules generate their Python code when first run: export
only reads the graph, and codegen was four compiles per export."""

from __future__ import annotations

import torch
from torch import nn
from torch.fx._lazy_graph_module import _LazyGraphModule

from fxonnx.capture import capture
from fxonnx.passes import run_passes


def _pending(gm: torch.fx.GraphModule) -> bool:
    return isinstance(gm, _LazyGraphModule) and type(gm)._needs_recompile()


def test_code_is_generated_at_the_first_call_and_runs_the_final_graph() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    captured = capture(model, (x,))
    optimized, _ = run_passes(captured, "default", example_inputs=[x])
    assert _pending(captured.gm) and _pending(optimized.gm)
    for c in (captured, optimized):
        (got,) = c.run_torch(x)
        torch.testing.assert_close(got, model(x))
        assert not _pending(c.gm)
