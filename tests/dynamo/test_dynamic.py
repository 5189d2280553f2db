"""Dynamic shapes: a new size inside dynamo's guards runs the cached session, no re-export."""

from __future__ import annotations

import torch
from dynamo_helpers import assert_outputs_match

import fxonnx.dynamo as fd
from fxonnx import models


def test_text_model_at_three_lengths_recompiles_at_most_once():
    model, _ = models.get("bert_tiny")
    compiled = torch.compile(model, backend="fxonnx", options={"verify": True})
    sessions = []
    for seq in (9, 13, 21):
        _, inputs = models.get("bert_tiny", 2, seq=seq)
        with torch.no_grad():
            assert_outputs_match(model(*inputs), compiled(*inputs), f"seq={seq}")
        sessions.append(fd.stats().sessions)
    # dynamo compiles the first length static, then once with seq symbolic, which serves 21
    assert sessions == [1, 2, 2], sessions
    static, dynamic = fd.stats().graphs
    assert static.partitions and dynamic.partitions
    assert dynamic.torch_nodes == 0


def test_dynamic_batch_without_a_recompile_when_marked():
    """A batch marked dynamic (torch._dynamo.mark_dynamic): one graph, one session."""
    model, _ = models.get("lenet_cifar")
    compiled = torch.compile(model, backend="fxonnx", options={"verify": True})
    for batch in (2, 5, 3, 7):
        _, (x,) = models.get("lenet_cifar", batch)
        torch._dynamo.mark_dynamic(x, 0)
        with torch.no_grad():
            assert_outputs_match(model(x), compiled(x), f"batch={batch}")
    assert fd.stats().sessions == 1
    assert len(fd.stats().graphs) == 1


def test_dynamic_training_step_reuses_sessions():
    """Forward and backward graphs with a symbolic batch: two sessions for three batches."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    ref = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    ref.load_state_dict(model.state_dict())
    compiled = torch.compile(model, backend="fxonnx", dynamic=True)
    for batch in (3, 4, 9):
        x = torch.randn(batch, 6)
        compiled(x).square().mean().backward()
        ref(x).square().mean().backward()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    assert fd.stats().sessions == 2
