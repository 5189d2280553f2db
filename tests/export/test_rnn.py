"""GRU, LSTM and Elman RNNs as ONNX GRU/LSTM/RNN ops, against eager at batches 2 and 5."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.utils._pytree as pytree
from torch import nn

from fxonnx import models
from fxonnx._errors import ExportError
from fxonnx.capture import capture
from fxonnx.export import lower

ONNX_OP = {"gru": "GRU", "lstm": "LSTM", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


def _layer(kind: str, **kwargs: object) -> nn.Module:
    if kind == "gru":
        return nn.GRU(6, 5, **kwargs)
    if kind == "lstm":
        return nn.LSTM(6, 5, **kwargs)
    return nn.RNN(6, 5, nonlinearity=kind.removeprefix("rnn_"), **kwargs)


class Recurrent(nn.Module):
    """Returns (output, h_n[, c_n]); passes the initial state only when given one."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> tuple:
        if not state:
            return self.layer(x)
        out, last = self.layer(x, state if len(state) == 2 else state[0])
        return (out, *last) if isinstance(last, tuple) else (out, last)


# name: (num_layers, bidirectional, batch_first, initial state, bias)
CONFIGS = {
    "one_layer": (1, False, False, False, True),
    "two_layers_bidirectional_batch_first_h0": (2, True, True, True, True),
    "bidirectional_no_bias_h0": (1, True, False, True, False),
    "two_layers_batch_first": (2, False, True, False, True),
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kind", ONNX_OP)
def test_recurrent_matches_eager(onnx_matches: Callable, kind: str, config: str) -> None:
    layers, bidirectional, batch_first, h0, bias = CONFIGS[config]
    layer = _layer(
        kind, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias
    )
    n_state = (2 if kind == "lstm" else 1) if h0 else 0
    state_rows = layers * (2 if bidirectional else 1)

    def make(batch: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(batch)
        x = torch.randn(*((batch, 7) if batch_first else (7, batch)), 6, generator=g)
        return (x, *(torch.randn(state_rows, batch, 5, generator=g) for _ in range(n_state)))

    model = onnx_matches(
        Recurrent(layer), make, batch_dims=[0 if batch_first else 1] + [1] * n_state
    )
    ops = [n for n in model.graph.node if n.op_type == ONNX_OP[kind]]
    assert len(ops) == layers  # one ONNX op per layer, both directions in it
    if kind == "gru":
        assert all(a.i == 1 for n in ops for a in n.attribute if a.name == "linear_before_reset")


@pytest.mark.parametrize("name", ["gru_lm", "lstm_tagger"])
def test_zoo_recurrent_models(onnx_matches: Callable, name: str) -> None:
    module, _ = models.get(name, batch=2)
    batch_dims = (0, 1) if name == "gru_lm" else "auto"
    onnx_matches(module, lambda b: models.get(name, batch=b)[1], batch_dims=batch_dims)


def test_training_dropout_between_layers_refused() -> None:
    layer = nn.GRU(6, 5, num_layers=2, dropout=0.5).train()
    captured = capture(Recurrent(layer).train(), (torch.randn(7, 2, 6),), batch_dims=[1])
    with pytest.raises(ExportError, match="training mode with dropout=0.5"):
        lower(captured)


def test_lstm_projection_is_a_scan_per_layer(onnx_matches: Callable) -> None:
    model = onnx_matches(
        Recurrent(nn.LSTM(6, 5, proj_size=3)), lambda b: (torch.randn(7, b, 6),), batch_dims=[1]
    )
    assert [n.op_type for n in model.graph.node].count("Scan") == 1


class _OnesState(nn.Module):
    """A state built in forward() that is not zero: it must stay an input of the ONNX op."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.ones(self.layer.num_layers, x.size(1), self.layer.hidden_size)
        state = (h, torch.full_like(h, 0.5)) if isinstance(self.layer, nn.LSTM) else h
        return self.layer(x, state)[0]


def _run_at(model, module: nn.Module, sizes: list[tuple[int, int]]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for seq, batch in sizes:
        x = torch.randn(seq, batch, 6, generator=torch.Generator().manual_seed(seq * 10 + batch))
        with torch.no_grad():
            want = pytree.tree_leaves(module(x))
        got = session.run(None, {"x": x.numpy()})
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == tuple(w.shape), f"seq={seq} batch={batch}: {g.shape} vs {w.shape}"
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ONNX_OP)
def test_a_default_zero_state_is_omitted_and_still_matches_eager(kind: str) -> None:
    """hx=None is torch's zeros(layers * dirs, N, H) at the run-time batch; ONNX's initial_h
    (and LSTM's initial_c) default to 0, so the op gets no state input and the graph builds
    none (no Shape/ConstantOfShape chain). Checked at two seq lengths and two batches."""
    module = Recurrent(_layer(kind, num_layers=2, bidirectional=True)).eval()
    dims = {"x": {0: "seq", 1: "batch"}}
    captured = capture(module, (torch.randn(7, 2, 6),), dynamic_dims=dims)
    model = lower(captured)
    ops = [n for n in model.graph.node if n.op_type == ONNX_OP[kind]]
    assert len(ops) == 2
    assert all(len(n.input) <= 5 or not any(n.input[5:]) for n in ops), [n.input for n in ops]
    kinds = {n.op_type for n in model.graph.node}
    assert not kinds & {"Shape", "ConstantOfShape", "Expand"}, kinds
    _run_at(model, module, [(7, 2), (3, 5), (11, 1)])


@pytest.mark.parametrize("kind", ["gru", "lstm", "rnn_tanh"])
def test_a_non_zero_state_built_in_forward_stays_an_input(kind: str) -> None:
    module = _OnesState(_layer(kind, num_layers=2)).eval()
    captured = capture(module, (torch.randn(7, 2, 6),), dynamic_dims={"x": {0: "seq", 1: "batch"}})
    model = lower(captured)
    ops = [n for n in model.graph.node if n.op_type == ONNX_OP[kind]]
    state_inputs = 2 if kind == "lstm" else 1
    assert all(len([i for i in n.input[5:] if i]) == state_inputs for n in ops)
    _run_at(model, lambda x: (module(x),), [(7, 2), (4, 3)])
