"""Any dim dynamic, end to end: text models at several (batch, seq) pairs, CNNs at several image
sizes, recurrent layers in every layout at any sequence length, and the other entry points."""

from __future__ import annotations

import pytest
import torch
import torch.utils._pytree as pytree
from torch import nn

import fxonnx
from fxonnx import models
from fxonnx.capture import capture

PAIRS = [(1, 5), (3, 17), (2, 30)]


def _leaves(x: object) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(x) if isinstance(t, torch.Tensor)]


def _matches(cm: fxonnx.CompiledModel, model: nn.Module, inputs: tuple) -> None:
    with torch.no_grad():
        want = _leaves(model(*inputs))
    got = _leaves(cm(*inputs))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["bert_tiny", "llama_tiny", "rnn_tagger", "lstm_seq_first"])
def test_text_models_run_at_any_batch_and_sequence_length(name: str) -> None:
    info = models.info(name)
    model, inputs = models.get(name, 2)
    cm = fxonnx.compile(model, inputs, dynamic_dims=info.dynamic_dims, provider="cpu")
    assert set(cm.captured.shapes.names) == {"batch", "seq"}
    for batch, seq in PAIRS:
        _matches(cm, model, models.get(name, batch, seq=seq)[1])


def test_dynamic_sequence_onnx_carries_the_names() -> None:
    model, inputs = models.get("bert_tiny", 2)
    cm = fxonnx.compile(
        model, inputs, dynamic_dims=models.info("bert_tiny").dynamic_dims, provider="cpu"
    )
    graph = cm.onnx_model.graph
    for value in list(graph.input) + list(graph.output)[:1]:
        dims = value.type.tensor_type.shape.dim
        assert [dims[0].dim_param, dims[1].dim_param] == ["batch", "seq"]


@pytest.mark.parametrize(
    ("name", "example", "others"),
    [
        ("resnet18", (64, 64), [(96, 80), (33, 47)]),
        ("unet_small", (64, 64), [(96, 80), (48, 112)]),
    ],
)
def test_cnns_run_at_other_image_sizes(name: str, example: tuple, others: list) -> None:
    model, (x,) = models.get(name, 1)
    c = x.shape[1]
    spec = {"x": {0: "batch", 2: "height", 3: "width"}}
    cm = fxonnx.compile(model, (torch.randn(2, c, *example),), dynamic_dims=spec, provider="cpu")
    assert set(cm.captured.shapes.names) == {"batch", "height", "width"}
    for h, w in others:
        _matches(cm, model, (torch.randn(1, c, h, w),))


def test_unet_needs_a_multiple_and_says_so() -> None:
    model, (x,) = models.get("unet_small", 1)
    spec = {"x": {2: "height"}}
    cm = fxonnx.compile(model, (torch.randn(1, x.shape[1], 64, 64),), dynamic_dims=spec)
    k = cm.captured.shapes.symbol("height").multiple_of
    assert k > 1
    with pytest.raises(fxonnx.InputError, match=f"a multiple of {k}"):
        cm(torch.randn(1, x.shape[1], 64 + k // 2 + 1, 64))


class Recurrent(nn.Module):
    def __init__(self, layer: nn.Module, with_state: bool) -> None:
        super().__init__()
        self.layer, self.with_state = layer, with_state

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> torch.Tensor:
        if not self.with_state:
            out, _ = self.layer(x)
        elif isinstance(self.layer, nn.LSTM):
            out, _ = self.layer(x, (state[0], state[1]))
        else:
            out, _ = self.layer(x, state[0])
        return out


LAYERS = {
    "rnn_tanh": lambda bf: nn.RNN(6, 8, 2, batch_first=bf),
    "rnn_relu_bi": lambda bf: nn.RNN(
        6, 8, 1, nonlinearity="relu", bidirectional=True, batch_first=bf
    ),
    "gru_2x_bi": lambda bf: nn.GRU(6, 8, 2, bidirectional=True, batch_first=bf),
    "lstm": lambda bf: nn.LSTM(6, 8, 1, batch_first=bf),
    "lstm_2x_bi": lambda bf: nn.LSTM(6, 8, 2, bidirectional=True, batch_first=bf),
}


def _rnn_inputs(kind: str, layer: nn.Module, batch_first: bool, with_state: bool, b: int, s: int):
    x = torch.randn(b, s, 6) if batch_first else torch.randn(s, b, 6)
    if not with_state:
        return (x,)
    states = 2 if isinstance(layer, nn.LSTM) else 1
    dirs = 2 if layer.bidirectional else 1
    return (x, *(torch.randn(layer.num_layers * dirs, b, 8) for _ in range(states)))


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_recurrent_layers_in_every_layout_at_any_length(
    kind: str, batch_first: bool, with_state: bool
) -> None:
    torch.manual_seed(0)
    layer = LAYERS[kind](batch_first).eval()
    model = Recurrent(layer, with_state).eval()
    inputs = _rnn_inputs(kind, layer, batch_first, with_state, 2, 7)
    seq_dim, batch_dim = (1, 0) if batch_first else (0, 1)
    spec: dict = {"x": {batch_dim: "batch", seq_dim: "seq"}}
    for i in range(1, len(inputs)):
        spec[i] = {1: "batch"}
    cm = fxonnx.compile(model, inputs, dynamic_dims=spec, provider="cpu")
    for b, s in [(1, 3), (4, 19)]:
        _matches(cm, model, _rnn_inputs(kind, layer, batch_first, with_state, b, s))


@pytest.mark.parametrize(
    ("batch_first", "bidirectional", "layers", "bias"),
    [(False, False, 1, True), (True, True, 2, True), (False, True, 2, False)],
)
def test_lstm_with_proj_size_scans_at_any_length(
    batch_first: bool, bidirectional: bool, layers: int, bias: bool
) -> None:
    torch.manual_seed(0)
    layer = nn.LSTM(
        6, 8, layers, batch_first=batch_first, bidirectional=bidirectional, proj_size=3, bias=bias
    )
    model = Recurrent(layer.eval(), with_state=False).eval()
    seq_dim, batch_dim = (1, 0) if batch_first else (0, 1)
    spec = {"x": {batch_dim: "batch", seq_dim: "seq"}}
    x = torch.randn(2, 7, 6) if batch_first else torch.randn(7, 2, 6)
    cm = fxonnx.compile(model, (x,), dynamic_dims=spec, provider="cpu")
    assert {n.op_type for n in cm.onnx_model.graph.node} >= {"Scan"}
    for b, s in [(1, 2), (3, 11)]:
        x = torch.randn(b, s, 6) if batch_first else torch.randn(s, b, 6)
        _matches(cm, model, (x,))


def test_capture_of_a_seq_first_rnn_does_not_unroll_time_steps() -> None:
    model = Recurrent(nn.RNN(8, 16, 2), with_state=False).eval()
    # a huge example length: tracing runs on fake tensors, and the layer stays one op
    captured = capture(model, (torch.randn(100_000, 2, 8),), dynamic_dims={"x": {0: "seq"}})
    assert captured.user_inputs[0].shape == ("seq", 2, 8)
    assert len(captured.gm.graph.nodes) < 40
    targets = {str(n.target) for n in captured.gm.graph.nodes if n.op == "call_function"}
    assert "fxonnx.rnn_tanh.default" in targets


def test_packed_sequences_are_refused_clearly() -> None:
    class Packed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            packed = nn.utils.rnn.pack_padded_sequence(x, [3, 2])
            out, _ = self.gru(packed)
            return nn.utils.rnn.pad_packed_sequence(out)[0]

    with pytest.raises(fxonnx.CaptureError, match="PackedSequence"):
        capture(Packed().eval(), (torch.randn(3, 2, 4),), dynamic_dims=None)


def test_check_gradients_takes_dynamic_dims() -> None:
    model, inputs = models.get("bert_tiny", 2)
    report = fxonnx.check_gradients(
        model, inputs, dynamic_dims=models.info("bert_tiny").dynamic_dims, directions=0
    )
    assert report.ok, report


def test_export_training_takes_dynamic_dims(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).train()
    x, y = torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    spec = {"input": {0: "batch", 1: "seq"}, "target": {0: "batch", 1: "seq"}}
    proto = fxonnx.export_training(model, nn.MSELoss(), x, y, dynamic_dims=spec)
    names = {v.name: v for v in proto.graph.input}
    dims = names["input"].type.tensor_type.shape.dim
    assert [dims[0].dim_param, dims[1].dim_param] == ["batch", "seq"]
    from fxonnx.training import TrainingSession

    session = TrainingSession(proto.SerializeToString())
    x2, y2 = torch.randn(3, 9, 4), torch.randn(3, 9, 3)
    got = session.run(x2.numpy(), y2.numpy())["loss"]
    with torch.no_grad():
        want = nn.MSELoss()(model(x2), y2)
    assert abs(float(got) - float(want)) <= 1e-5 * max(1.0, float(want))


def test_bundle_manifest_and_triton_config_carry_every_dynamic_dim(tmp_path) -> None:
    model, inputs = models.get("bert_tiny", 2)
    cm = fxonnx.compile(
        model, inputs, dynamic_dims=models.info("bert_tiny").dynamic_dims, provider="cpu"
    )
    bundle = cm.save_bundle(tmp_path / "b")
    import json

    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert set(manifest["dynamic_dims"]) == {"batch", "seq"}
    assert manifest["inputs"][0]["shape"] == ["batch", "seq"]
    loaded = fxonnx.load(tmp_path / "b")
    ids, mask = models.get("bert_tiny", 3, seq=9)[1]
    out = loaded(ids.numpy(), mask.numpy())
    assert out["last_hidden_state"].shape == (3, 9, 32)
    with pytest.raises(fxonnx.InputError, match="dims named 'seq' must have the same size"):
        loaded(ids.numpy(), mask[:, :-1].numpy())
    del bundle
    cm.save_bundle(tmp_path / "repo", fmt="triton", name="bert")
    config = (tmp_path / "repo" / "bert" / "config.pbtxt").read_text()
    assert "dims: [ -1 ]" in config  # batch is Triton's; seq stays -1


def test_all_dims_from_a_batch_one_example_unify_what_the_model_ties() -> None:
    model, (ids, mask) = models.get("bert_tiny", 1, seq=7)
    cm = fxonnx.compile(
        model, (), {"input_ids": ids, "attention_mask": mask}, dynamic_dims="all", provider="cpu"
    )
    # the mask meets the scores in a broadcast: its dims become the ids' dims
    assert cm.captured.user_inputs[0].shape == cm.captured.user_inputs[1].shape
    assert len(cm.captured.shapes.names) == 2
    ids, mask = models.get("bert_tiny", 4, seq=33)[1]
    want, got = model(ids, mask), cm(input_ids=ids, attention_mask=mask)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)


class _HeadSplit(nn.Module):
    """What attention code does with a dynamic (batch, seq): split heads, broadcast a mask
    over them, index with None and full slices."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        heads = x.view(b, s, 4, 16).transpose(1, 2)  # (b, 4, s, 16)
        m = mask[:, None, :, None].expand(b, 4, s, 16)  # (b, 1, s, 1) -> (b, 4, s, 16)
        y = (heads * m)[:, :, :s]  # a slice to the dim's own size
        return y.transpose(1, 2).reshape(b, s, -1)


def test_reshapes_expands_and_full_slices_need_no_shape_arithmetic() -> None:
    """Dynamic dims that a reshape copies or an expand keeps are written as ONNX's 0 and
    broadcast 1, and full slices vanish: the graph has no Shape/Concat chain for onnxruntime
    to run on every call, and still matches eager at other sizes."""
    model = _HeadSplit()
    dims = {"x": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}}
    x, mask = torch.randn(2, 7, 64), (torch.rand(2, 7) > 0.3).float()
    cm = fxonnx.compile(model, (x, mask), dynamic_dims=dims, provider="cpu")
    ops = [n.op_type for n in cm.onnx_model.graph.node]
    assert "Shape" not in ops and "Concat" not in ops and "Slice" not in ops, ops
    for batch, seq in PAIRS:
        inputs = (torch.randn(batch, seq, 64), (torch.rand(batch, seq) > 0.3).float())
        _matches(cm, model, inputs)


class _TwoReads(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1])
        again = torch.arange(positions.shape[0])  # seq read from another tensor
        return x * positions.float() + again.float().unsqueeze(0)


def test_a_size_read_twice_is_one_shape() -> None:
    """``seq`` read from the input and again from a tensor of that size: one Shape value."""
    x = torch.randn(2, 6)
    cm = fxonnx.compile(_TwoReads(), (x,), dynamic_dims={"x": {1: "seq"}}, provider="cpu")
    assert [n.op_type for n in cm.onnx_model.graph.node].count("Shape") == 1
    _matches(cm, _TwoReads(), (torch.randn(2, 11),))
