"""The default pipeline on the whole zoo: outputs equal eager at two batch sizes, never more ONNX
nodes than without passes; batch norms folded away, the MLP one Gemm."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.utils._pytree as pytree

from fxonnx import models
from fxonnx.capture import capture
from fxonnx.export import lower
from fxonnx.passes import run_passes
from fxonnx.verify import compare


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", models.names())
def test_default_passes_on_zoo_model(name: str) -> None:
    model, inputs = models.get(name, batch=2)
    info = models.info(name)
    captured = capture(model.eval(), inputs, batch_dims=info.batch_dims)
    plain = lower(captured)
    optimized, stats = run_passes(captured, "default")
    proto = lower(optimized)
    onnx.checker.check_model(proto, full_check=True)
    ops = Counter(n.op_type for n in proto.graph.node)
    assert len(proto.graph.node) <= len(plain.graph.node), stats
    if name in ("resnet18", "mobilenet_v2"):
        assert ops["BatchNormalization"] == 0
    if name == "mlp":
        assert [n.op_type for n in proto.graph.node] == ["Gemm"]
    session = _session(proto)
    for batch, seed in ((2, 0), (3, 1)):
        _, x = models.get(name, batch=batch, seed=seed)
        with torch.no_grad():
            want = [t for t in pytree.tree_leaves(model(*x)) if isinstance(t, torch.Tensor)]
        feeds = {s.name: t.numpy() for s, t in zip(optimized.user_inputs, x, strict=True)}
        got = session.run(None, feeds)
        assert len(got) == len(want)
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            check = compare(f"{name}[{i}]@{batch}", w, torch.from_numpy(np.asarray(g)))
            assert check.ok, check
