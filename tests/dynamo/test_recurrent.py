"""Recurrent layers under backend="fxonnx" with dynamo's ``allow_rnn``: without grad each
layer is one ONNX RNN/GRU/LSTM node in onnxruntime, at every sequence length; training
graphs keep torch's per-step decomposition and still give eager's step."""

from __future__ import annotations

import pytest
import torch
from dynamo_helpers import assert_outputs_match, sgd_step_matches
from torch import nn

import fxonnx.dynamo as fd

LAYERS = [
    (nn.LSTM, {}),
    (nn.GRU, {}),
    (nn.RNN, {}),
    (nn.LSTM, {"bidirectional": True, "proj_size": 4}),
    (nn.RNN, {"nonlinearity": "relu", "batch_first": False}),
]


@pytest.fixture(autouse=True)
def allow_rnn():
    with torch._dynamo.config.patch(allow_rnn=True):
        yield


@pytest.mark.parametrize("cls,kwargs", LAYERS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_inference_runs_each_layer_as_one_onnx_op(cls: type, kwargs: dict) -> None:
    torch.manual_seed(0)
    layer = cls(8, 16, 2, **({"batch_first": True} | kwargs)).eval()
    compiled = torch.compile(layer, backend="fxonnx")
    with torch.no_grad():
        for seq in (7, 4, 11):  # new lengths: a symbolic graph (LSTM) or a recompile (dynamo's)
            x = torch.randn(3, seq, 8) if layer.batch_first else torch.randn(seq, 3, 8)
            assert_outputs_match(layer(x), compiled(x))
    records = fd.stats().graphs
    assert records and all(r.torch_nodes == 0 for r in records), records
    # one recurrent node per graph, not one set of ops per time step
    assert all(r.onnx_nodes <= 4 for r in records), [r.onnx_nodes for r in records]


def test_training_keeps_the_per_step_decomposition() -> None:
    torch.manual_seed(0)

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(8, 16, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0])

    sgd_step_matches(Tagger(), [torch.randn(2, 5, 8)])
