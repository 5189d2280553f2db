"""Done-means of the core pipeline: every zoo model compiles on the CPU and matches eager
(fp32 rtol 1e-4, atol 1e-5) at two batch sizes, and its ONNX passes the full checker."""

from __future__ import annotations

import onnx
import pytest
import torch
import torch.utils._pytree as pytree

import fxonnx
from fxonnx import models
from fxonnx.verify import compare


@pytest.mark.parametrize("name", models.names())
def test_zoo_model_compiles_and_matches_eager_at_two_batches(name: str) -> None:
    model, inputs = models.get(name, batch=2)
    info = models.info(name)
    cm = fxonnx.compile(model, inputs, provider="cpu", batch_dims=info.batch_dims)
    assert cm.report.ok and cm.report.verified
    assert cm.captured.shapes.names == ("batch",), cm.report.notes
    onnx.checker.check_model(cm.onnx_model, full_check=True)
    _, inputs5 = models.get(name, batch=5, seed=1)
    with torch.no_grad():
        want = [t for t in pytree.tree_leaves(model(*inputs5)) if isinstance(t, torch.Tensor)]
    got = [t for t in pytree.tree_leaves(cm(*inputs5)) if isinstance(t, torch.Tensor)]
    assert len(got) == len(want)
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        check = compare(f"{name}[{i}]", w, g)
        assert check.ok, check
