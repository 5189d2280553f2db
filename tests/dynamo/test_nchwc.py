"""fxonnx/dynamo/_nchwc: run-time-weight convolutions in onnxruntime's NCHWc kernels."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest
import torch
from dynamo_helpers import assert_outputs_match, sgd_step_matches
from onnx import TensorProto, helper
from torch import nn

import fxonnx.dynamo as fd
from fxonnx.dynamo import _nchwc as nchwc

BLOCK = nchwc.block_size()
needs_nchwc = pytest.mark.skipif(BLOCK is None, reason="onnxruntime does not block convs here")


def test_block_size_is_what_onnxruntime_uses_or_none():
    assert BLOCK in (None, 8, 16)


def _conv_model(
    cin: int = 32,
    cout: int = 32,
    k: int = 3,
    size: int = 32,
    group: int = 1,
    stride: int = 1,
    weight_const: bool = False,
) -> onnx.ModelProto:
    """x [1, cin, size, size] (batch dynamic) conv w [cout, cin/group, k, k] + b."""
    w_shape = [cout, cin // group, k, k]
    attrs = dict(pads=[k // 2] * 4, group=group, strides=[stride, stride])
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, size, size])]
    inits = [onnx.numpy_helper.from_array(np.linspace(-1, 1, cout, dtype=np.float32), "b")]
    w = np.random.default_rng(0).standard_normal(w_shape).astype(np.float32)
    if weight_const:
        inits.append(onnx.numpy_helper.from_array(w, "w"))
    else:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, w_shape))
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "conv",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@needs_nchwc
def test_rewritten_conv_matches_the_plain_one_for_every_weight():
    """The weight is reordered in the graph on every call: two different weights (and a
    second batch size) give the plain Conv's outputs."""
    model = _conv_model()
    done = nchwc.rewrite(model, BLOCK)
    blocked = done.model
    assert done.count == 1 and done.reorders == ()
    assert [n.op_type for n in blocked.graph.node if n.domain == nchwc.DOMAIN] == [
        "ReorderInput",
        "Conv",
        "ReorderOutput",
    ]
    rng = np.random.default_rng(1)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 32, 32, 32)).astype(np.float32)
        w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
        want, got = _run(model, {"x": x, "w": w}), _run(blocked, {"x": x, "w": w})
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "case,kwargs",
    [
        ("constant_weight", dict(weight_const=True)),  # onnxruntime's own optimizer does it
        ("grouped", dict(group=2)),
        ("channels_not_blocks", dict(cin=24)),  # more than one block, not whole blocks
        # 9 positions, under 0.05 of the 288 weights per output channel: the reorder costs more
        ("few_positions", dict(size=3)),
    ],
)
def test_rewrite_holds_back(case: str, kwargs: dict):
    model = _conv_model(**kwargs)
    done = nchwc.rewrite(model, 16)
    assert done.count == 0 and done.model is model, case


@needs_nchwc
@pytest.mark.parametrize(
    "case,kwargs",
    [
        ("strided", dict(stride=2, size=64)),
        ("pointwise", dict(k=1)),
        ("strided_pointwise", dict(k=1, stride=2, size=64)),
        ("three_channels", dict(cin=3)),  # the stem: NCHW input, weight (O/B, I, kh, kw, B)
        ("three_channels_strided", dict(cin=3, k=7, stride=2, size=64)),
    ],
)
def test_strided_pointwise_and_few_channel_convs_are_blocked(case: str, kwargs: dict):
    model = _conv_model(**kwargs)
    cin, k = kwargs.get("cin", 32), kwargs.get("k", 3)
    size = kwargs.get("size", 32)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, cin, size, size)).astype(np.float32)
    w = rng.standard_normal((32, cin, k, k)).astype(np.float32)
    want = _run(model, {"x": x, "w": w})
    for outside in (False, True):
        done = nchwc.rewrite(model, BLOCK, reorder_outside=outside)
        assert done.count == 1, case
        ops = [n.op_type for n in done.model.graph.node if n.domain == nchwc.DOMAIN]
        assert ops.count("ReorderInput") == (0 if cin < BLOCK else 1), ops
        feeds = {"x": x, "w": w}
        for r in done.reorders:
            feeds[r.name] = r.apply(torch.from_numpy(w)).numpy()
        names = {v.name for v in done.model.graph.input}
        got = _run(done.model, {n: a for n, a in feeds.items() if n in names})
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=case)


def test_no_block_size_no_rewrite():
    model = _conv_model()
    assert nchwc.rewrite(model, None) == nchwc.Rewritten(model, 0)


def _conv_transpose_model(
    pad: int, dilation: int, stride: int = 1, depthwise: bool = False, kernel: int = 3
) -> onnx.ModelProto:
    """g [N, 32, 34, 34] conv-transposed with w [32, 16, k, k] (a conv's input gradient),
    or ``depthwise`` with w [32, 1, k, k] in 32 groups (a depthwise conv's)."""
    attrs = dict(pads=[pad] * 4, dilations=[dilation] * 2, strides=[stride] * 2)
    if depthwise:
        attrs["group"] = 32
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["g", "w"], ["y"], **attrs)],
        "conv_transpose",
        [
            helper.make_tensor_value_info("g", TensorProto.FLOAT, ["N", 32, 34, 34]),
            helper.make_tensor_value_info(
                "w", TensorProto.FLOAT, _transposed_weight(depthwise, kernel)
            ),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _transposed_weight(depthwise: bool, kernel: int = 3) -> list[int]:
    return [32, 1 if depthwise else 16, kernel, kernel]


@needs_nchwc
@pytest.mark.parametrize("depthwise", [False, True], ids=["one_group", "depthwise"])
@pytest.mark.parametrize(
    "pad,dilation,kernel", [(1, 1, 3), (0, 1, 3), (2, 1, 3), (2, 2, 3), (1, 2, 3), (0, 1, 1)]
)
def test_conv_transpose_becomes_the_flipped_conv(
    pad: int, dilation: int, kernel: int, depthwise: bool
):
    """A stride-1 ConvTranspose is the Conv with the weight's channels swapped (one group)
    and its kernel flipped, padded by d*(k-1) - p: same outputs, for two weights."""
    model = _conv_transpose_model(pad, dilation, depthwise=depthwise, kernel=kernel)
    done = nchwc.rewrite(model, BLOCK)
    blocked = done.model
    assert done.count == 1
    assert "ConvTranspose" not in [n.op_type for n in blocked.graph.node]
    rng = np.random.default_rng(2)
    for batch in (1, 2):
        g = rng.standard_normal((batch, 32, 34, 34)).astype(np.float32)
        w = rng.standard_normal(_transposed_weight(depthwise, kernel)).astype(np.float32)
        want, got = _run(model, {"g": g, "w": w}), _run(blocked, {"g": g, "w": w})
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("depthwise", [False, True], ids=["one_group", "depthwise"])
@pytest.mark.parametrize("pad,stride", [(3, 1), (1, 2)])  # negative conv pads; strided
def test_conv_transpose_rewrite_holds_back(pad: int, stride: int, depthwise: bool):
    model = _conv_transpose_model(pad, 1, stride, depthwise)
    assert nchwc.rewrite(model, 16) == nchwc.Rewritten(model, 0)


@needs_nchwc
@pytest.mark.parametrize("kind", ["conv", "conv_transpose", "depthwise_transpose"])
def test_weights_reordered_outside_the_graph_match(kind: str):
    """reorder_outside: the weight input is replaced by the blocked one, which
    Reorder.apply computes in torch; fed that, the model gives the plain model's outputs."""
    if kind == "conv":
        model, x_name, x_shape, w_shape = _conv_model(), "x", (2, 32, 32, 32), (32, 32, 3, 3)
    else:
        depthwise = kind == "depthwise_transpose"
        model, x_name, x_shape = (
            _conv_transpose_model(1, 1, depthwise=depthwise),
            "g",
            (2, 32, 34, 34),
        )
        w_shape = tuple(_transposed_weight(depthwise))
    done = nchwc.rewrite(model, BLOCK, reorder_outside=True)
    (reorder,) = done.reorders
    assert reorder.source == "w"
    inputs = [v.name for v in done.model.graph.input]
    assert "w" not in inputs and reorder.name in inputs
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    blocked = reorder.apply(torch.from_numpy(w)).numpy()
    want = _run(model, {x_name: x, "w": w})
    got = _run(done.model, {x_name: x, reorder.name: blocked})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def _two_convs_model() -> onnx.ModelProto:
    """x -> Conv(w1) -> Relu -> Conv(w2) -> y, plus the first conv's output as an output
    when ``tap``."""
    rng = np.random.default_rng(4)
    b = onnx.numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b"], ["c1"], pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["y"], pads=[1] * 4),
    ]
    graph = helper.make_graph(
        nodes,
        "two_convs",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 32, 32]),
            helper.make_tensor_value_info("w1", TensorProto.FLOAT, [32, 32, 3, 3]),
            helper.make_tensor_value_info("w2", TensorProto.FLOAT, [32, 32, 3, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


@needs_nchwc
def test_blocked_convs_fuse_their_relu_and_pass_the_blocked_tensor_on():
    """Conv -> Relu -> Conv: the Relu becomes the first blocked conv's activation and the
    blocked tensor goes straight into the second (one ReorderInput, one ReorderOutput);
    the outputs are the plain model's."""
    model = _two_convs_model()
    done = nchwc.rewrite(model, BLOCK)
    ops = [n.op_type for n in done.model.graph.node if n.op_type not in ("Reshape", "Transpose")]
    assert ops == ["ReorderInput", "Conv", "Conv", "ReorderOutput"], ops
    first = next(n for n in done.model.graph.node if n.op_type == "Conv")
    assert helper.get_attribute_value(first.attribute[-1]) == b"Relu"
    rng = np.random.default_rng(5)
    feeds = {
        "x": rng.standard_normal((2, 32, 32, 32)).astype(np.float32),
        "w1": rng.standard_normal((32, 32, 3, 3)).astype(np.float32),
        "w2": rng.standard_normal((32, 32, 3, 3)).astype(np.float32),
    }
    np.testing.assert_allclose(_run(done.model, feeds), _run(model, feeds), rtol=1e-4, atol=1e-3)


@needs_nchwc
def test_a_blocked_output_read_elsewhere_is_reordered_back():
    """When the first conv's output is also a graph output, nothing is fused away."""
    model = _two_convs_model()
    model.graph.output.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, None))
    done = nchwc.rewrite(model, BLOCK)
    ops = [n.op_type for n in done.model.graph.node if n.domain == nchwc.DOMAIN]
    assert ops.count("ReorderOutput") == 2 and ops.count("ReorderInput") == 2
    assert "Relu" in [n.op_type for n in done.model.graph.node]
    rng = np.random.default_rng(6)
    feeds = {
        "x": rng.standard_normal((1, 32, 32, 32)).astype(np.float32),
        "w1": rng.standard_normal((32, 32, 3, 3)).astype(np.float32),
        "w2": rng.standard_normal((32, 32, 3, 3)).astype(np.float32),
    }
    session = ort.InferenceSession(
        done.model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(None, feeds), plain.run(None, feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


class Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1)
        self.bn, self.fc = nn.BatchNorm2d(32), nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c2(self.c1(x).relu())
        return self.fc(self.bn(y).relu().mean((2, 3)))


@needs_nchwc
def test_compiled_inference_uses_nchwc_and_sees_weight_updates():
    model, x = Convs().eval(), torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, backend="fxonnx")
    with torch.no_grad():
        assert_outputs_match(model(x), compiled(x))
        (part,) = fd.stats().partitions()
        assert part.nchwc == 2  # c1 (3 input channels: NCHW input) and c2
        assert len(part._reorders) == 2  # their weights, blocked in torch on every call
        assert [r.norm is not None for r in part._inputs_reorders] == [False, True]  # bn
        model.c2.weight.mul_(-0.5)  # the weights are session inputs: seen at once
        assert_outputs_match(model(x), compiled(x))
        model.bn.running_var.mul_(3.0)  # so are the folded batch norm's statistics
        model.bn.bias.add_(0.5)
        assert_outputs_match(model(x), compiled(x))


@needs_nchwc
def test_compiled_sgd_step_with_nchwc_matches_eager():
    stats = sgd_step_matches(Convs(), (torch.randn(2, 3, 32, 32),))
    by_kind = {p.name.split(".")[1]: p for p in stats.partitions()}
    assert by_kind["forward"].nchwc == 2  # c1 and c2
    assert by_kind["backward"].nchwc == 1  # c2's input gradient, a ConvTranspose


@needs_nchwc
def test_freeze_bakes_the_plain_model_and_thaws_back_to_nchwc():
    """freeze: the baked session is made from the plain model (onnxruntime blocks constant
    weights itself, no reorder fed); after an in-place update the weights are inputs again,
    through the NCHWc session and its torch-side reorder, and every call matches eager."""
    model, x = Convs().eval(), torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, backend="fxonnx", options={"freeze": True})
    with torch.no_grad():
        assert_outputs_match(model(x), compiled(x))
        (part,) = fd.stats().partitions()
        assert part._baked and part._reorders == ()
        model.c2.weight.add_(0.25)
        assert_outputs_match(model(x), compiled(x))
        assert not part._baked and len(part._reorders) == 2
        assert_outputs_match(model(x), compiled(x))


def _residual_model(tap: bool = False) -> onnx.ModelProto:
    """x -> Conv(w1) -> BN1 -> Relu -> MaxPool(3, stride 1) = p; p -> Conv(w2) -> BN2,
    + p -> Relu -> y (a residual block); with ``tap`` the first conv's output is an
    output too. Every weight and batch-norm parameter is a graph input."""
    vec = [("s", 32), ("b", 32), ("m", 32), ("v", 32)]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c1", "s1", "b1", "m1", "v1"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Conv", ["p", "w2"], ["c2"], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c2", "s2", "b2", "m2", "v2"], ["n2"]),
        helper.make_node("Add", ["n2", "p"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 32, 32])]
    for k in (1, 2):
        inputs.append(helper.make_tensor_value_info(f"w{k}", TensorProto.FLOAT, [32, 32, 3, 3]))
        inputs += [helper.make_tensor_value_info(f"{n}{k}", TensorProto.FLOAT, [c]) for n, c in vec]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if tap:
        outputs.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "residual", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _residual_feeds(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.standard_normal((batch, 32, 32, 32)).astype(np.float32)}
    for k in (1, 2):
        feeds[f"w{k}"] = (rng.standard_normal((32, 32, 3, 3)) * 0.2).astype(np.float32)
        feeds[f"s{k}"] = rng.uniform(0.5, 2, 32).astype(np.float32)
        feeds[f"b{k}"] = rng.standard_normal(32).astype(np.float32)
        feeds[f"m{k}"] = rng.standard_normal(32).astype(np.float32)
        feeds[f"v{k}"] = rng.uniform(0.1, 3, 32).astype(np.float32)
    return feeds


def _outside_feeds(done: nchwc.Rewritten, feeds: dict) -> dict:
    """The rewritten model's feeds: the plain ones it still reads, and the reorders'."""
    out = dict(feeds)
    for r in done.reorders:
        tensors = [torch.from_numpy(feeds[name]) for name in r.sources]
        for name, t in zip(r.outputs, r.compute(*tensors), strict=True):
            out[name] = t.numpy()
    names = {v.name for v in done.model.graph.input}
    return {n: a for n, a in out.items() if n in names}


@needs_nchwc
def test_residual_block_stays_blocked_with_batch_norms_folded():
    """With the reorders outside, both batch norms fold into the blocked weights and biases
    (computed in torch from their graph inputs), the pool runs blocked, the residual Add
    is the second conv's Sum and the Relus their activations: one ReorderInput, one
    ReorderOutput. Outputs match the plain model for two parameter sets and batch sizes."""
    model = _residual_model()
    done = nchwc.rewrite(model, BLOCK, reorder_outside=True)
    ops = [n.op_type for n in done.model.graph.node]
    assert ops == ["ReorderInput", "Conv", "MaxPool", "Conv", "ReorderOutput"], ops
    assert all(r.norm is not None for r in done.reorders)
    second = [n for n in done.model.graph.node if n.op_type == "Conv"][1]
    assert len(second.input) == 4 and second.input[3].endswith("_nchwc")  # Sum: the pool
    assert {helper.get_attribute_value(a) for a in second.attribute if a.name == "activation"} == {
        b"Relu"
    }
    for batch, seed in ((1, 8), (3, 9)):
        feeds = _residual_feeds(batch, seed)
        want = _run(model, feeds)
        got = _run(done.model, _outside_feeds(done, feeds))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@needs_nchwc
def test_batch_norm_stays_when_the_conv_output_is_read_elsewhere_or_reordered_in_graph():
    """A conv whose output is also a graph output keeps its batch norm (and a reorder back);
    without reorder_outside nothing is folded (there is no caller to compute it)."""
    model = _residual_model(tap=True)
    done = nchwc.rewrite(model, BLOCK, reorder_outside=True)
    ops = [n.op_type for n in done.model.graph.node]
    assert ops.count("BatchNormalization") == 1 and done.count == 2
    assert [r.norm is not None for r in done.reorders] == [False, True]
    feeds = _residual_feeds(2, 10)
    session = ort.InferenceSession(
        done.model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, _outside_feeds(done, feeds))
    for g, w in zip(got, plain.run(None, feeds), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    inside = nchwc.rewrite(_residual_model(), BLOCK)
    assert [n.op_type for n in inside.model.graph.node].count("BatchNormalization") == 2


class Residual(nn.Module):
    """A resnet stem and block: 3-channel stride-2 conv, batch norm, ReLU, max pool, then
    two 3x3 convs with batch norm and the residual add."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 7, 2, 3, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        self.c1, self.n1 = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.c2, self.n2 = nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        for bn in (self.stem[1], self.n1, self.n2):  # non-trivial statistics to fold
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.stem(x)
        return (self.n2(self.c2(self.n1(self.c1(p)).relu())) + p).relu().mean((2, 3))


@needs_nchwc
def test_compiled_residual_block_is_blocked_throughout_at_any_batch():
    """torch.compile of a resnet block with a dynamic batch: one session, every conv blocked
    with its batch norm folded, no Add/Relu/BatchNormalization left in the session's model,
    and eager's outputs at three batch sizes and after a statistics update."""
    model = Residual().eval()
    compiled = torch.compile(model, backend="fxonnx")
    with torch.no_grad():
        for batch in (2, 3, 5):
            x = torch.randn(batch, 3, 96, 96)  # 24x24 after the pool: enough positions
            torch._dynamo.mark_dynamic(x, 0)
            assert_outputs_match(model(x), compiled(x), f"batch={batch}")
        model.n2.running_mean.add_(0.3)
        assert_outputs_match(model(x), compiled(x), "after an update")
    (part,) = fd.stats().partitions()
    assert part.nchwc == 3
    done = nchwc.rewrite(part.onnx_model, BLOCK, reorder_outside=True)
    ops = [n.op_type for n in done.model.graph.node]
    assert not {"Add", "Relu", "BatchNormalization"} & set(ops), ops
    assert ops.count("ReorderOutput") == 1 and "ReorderInput" not in ops  # the stem reads NCHW


def _depthwise_clip_model(stride: int) -> onnx.ModelProto:
    """x [N, 32, 32, 32] -> depthwise Conv(w [32, 1, 3, 3]) -> Clip(0, 6) -> 1x1 Conv(w2)."""
    bounds = [
        onnx.numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", 0), ("hi", 6))
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4, group=32, strides=[stride] * 2),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "depthwise",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 64, 64]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [32, 1, 3, 3]),
            helper.make_tensor_value_info("w2", TensorProto.FLOAT, [32, 32, 1, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        bounds,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


@needs_nchwc
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv_and_its_relu6_run_blocked(stride: int):
    """A depthwise conv is blocked too (weight (C/B, 1, kh, kw, B)), a Clip with constant
    bounds (ReLU6) becomes its activation, and the 1x1 conv after it takes the blocked
    tensor: the plain model's outputs for two weights, in the graph and outside."""
    model = _depthwise_clip_model(stride)
    rng = np.random.default_rng(11)
    for outside in (False, True):
        done = nchwc.rewrite(model, BLOCK, reorder_outside=outside)
        ops = [
            n.op_type for n in done.model.graph.node if n.op_type not in ("Reshape", "Transpose")
        ]
        assert ops == ["ReorderInput", "Conv", "Conv", "ReorderOutput"], ops
        depthwise = next(n for n in done.model.graph.node if n.op_type == "Conv")
        attrs = {a.name: helper.get_attribute_value(a) for a in depthwise.attribute}
        assert attrs["group"] == 32 and attrs["activation"] == b"Clip"
        assert attrs["activation_params"] == [0.0, 6.0]
        for _ in range(2):
            feeds = {
                "x": (rng.standard_normal((2, 32, 64, 64)) * 4).astype(np.float32),
                "w": rng.standard_normal((32, 1, 3, 3)).astype(np.float32),
                "w2": rng.standard_normal((32, 32, 1, 1)).astype(np.float32),
            }
            got = _run(done.model, _outside_feeds(done, feeds))
            np.testing.assert_allclose(got, _run(model, feeds), rtol=1e-4, atol=1e-4)
