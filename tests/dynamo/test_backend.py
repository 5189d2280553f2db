"""backend="fxonnx": registration, options, partitioning, graph breaks, notes, verification."""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path

import pytest
import torch
from dynamo_helpers import assert_outputs_match, sgd_step_matches
from torch import nn

import fxonnx.dynamo as fd
from fxonnx import FxonnxError, VerificationError
from fxonnx.export._registry import RULES, rule_for

aten = torch.ops.aten
ROOT = Path(__file__).resolve().parents[2]


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_pyproject_declares_the_entry_point():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["torch_dynamo_backends"] == {"fxonnx": "fxonnx.dynamo:backend"}


def test_registered_under_its_name():
    assert "fxonnx" in torch._dynamo.list_backends()
    from torch._dynamo.backends.registry import lookup_backend

    assert lookup_backend("fxonnx") is fd.backend
    fd.register()  # idempotent


def test_small_model_runs_in_onnxruntime_and_matches():
    m = Small().eval()
    x = torch.randn(3, 8)
    compiled = torch.compile(m, backend="fxonnx", options={"provider": "cpu", "verify": True})
    with torch.no_grad():
        assert_outputs_match(m(x), compiled(x))
        assert_outputs_match(m(x + 1), compiled(x + 1))
    stats = fd.stats()
    assert stats.sessions == 1
    (graph,) = stats.graphs
    assert graph.torch_nodes == 0 and graph.onnx_nodes >= 3 and graph.unsupported == ()


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"verfy": True}, "unknown option 'verfy'"),
        ({"provider": "tpu"}, "options['provider'] is 'tpu'"),
        ({"verify": "yes"}, "options['verify'] must be True or False"),
        ({"freeze": 1}, "options['freeze'] must be True or False"),
        ({"opset": 3}, "options['opset'] is 3"),
    ],
)
def test_bad_options_are_one_clear_error(options, text):
    compiled = torch.compile(Small(), backend="fxonnx", options=options)
    with pytest.raises(Exception) as info:
        compiled(torch.randn(2, 8))
    # dynamo wraps what a backend raises in BackendCompilerFailed, keeping it
    err = getattr(info.value, "inner_exception", info.value)
    assert isinstance(err, FxonnxError), info.value
    assert text in str(err)


def test_unknown_option_suggests_the_close_name():
    with pytest.raises(FxonnxError, match="did you mean 'verify'"):
        fd.Options.parse({"verfy": True})


class WithBreaks(nn.Module):
    """print() and .item() split the function into several dynamo graphs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        print("fxonnx graph-break test")
        scale = h.abs().max().item()
        return self.b(h / scale) * 2


def test_graph_breaks_keep_working(capsys):
    m = WithBreaks()
    x = torch.randn(4, 6)
    compiled = torch.compile(m, backend="fxonnx", options={"verify": True})
    want = m(x)
    got = compiled(x)
    assert_outputs_match(want, got)
    assert capsys.readouterr().out.count("fxonnx graph-break test") == 2  # eager + compiled
    assert len(fd.stats().graphs) >= 2, fd.stats().graphs  # the break made two graphs
    assert fd.stats().sessions >= 2


class WithUnsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(5, 5), nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.special.erfcx(self.a(x)))


def test_unsupported_op_stays_in_torch_with_one_note(caplog):
    assert rule_for(aten.special_erfcx.default) is None, "pick another op without a rule"
    m = WithUnsupported().eval()
    compiled = torch.compile(m, backend="fxonnx", options={"verify": True})
    with caplog.at_level(logging.WARNING, logger="fxonnx.dynamo"), torch.no_grad():
        for n in (3, 3, 3):
            x = torch.randn(n, 5)
            assert_outputs_match(m(x), compiled(x))
    text = "fxonnx: no ONNX lowering for aten.special_erfcx.default; these ops run in torch"
    notes = [r.getMessage() for r in caplog.records if "no ONNX lowering" in r.getMessage()]
    assert notes == [text]  # once, not per call
    (graph,) = fd.stats().graphs
    assert graph.unsupported == ("aten.special_erfcx.default",)
    assert graph.notes[0] == text
    assert len(graph.partitions) == 2 and graph.torch_nodes == 1  # linear | erfcx | linear


def test_unsupported_op_trains_too():
    m = WithUnsupported()
    x = torch.randn(3, 5)
    ref = WithUnsupported()
    compiled = torch.compile(m, backend="fxonnx")
    compiled(x).square().sum().backward()
    ref(x).square().sum().backward()
    for (k, p), q in zip(m.named_parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5), k
    kinds = sorted(g.name.split(".")[1] for g in fd.stats().graphs)
    assert kinds == ["backward", "forward"]


def _record(monkeypatch, name: str) -> list:
    """Record what the backend's function ``name`` returns at each call."""
    from fxonnx.dynamo import _backend

    seen: list = []
    real = getattr(_backend, name)

    def recorded(*args):
        seen.append(real(*args))
        return seen[-1]

    monkeypatch.setattr(_backend, name, recorded)
    return seen


def _record_direct(monkeypatch) -> list:
    """What compile_graph's _direct returns for each graph (None: the GraphModule)."""
    return _record(monkeypatch, "_direct")


def test_a_graph_that_is_one_partition_is_called_directly(monkeypatch):
    """One partition and nothing else, its outputs the graph's (lenet_cifar's inference
    graph, which feeds its input out of placeholder order): aot's boxed call goes straight
    to it, with eager's outputs; a graph with an op left to torch, or whose outputs are not
    just the partition's (a training forward also returns saved inputs), keeps its
    GraphModule."""
    from fxonnx import models

    seen = _record_direct(monkeypatch)
    model, (x,) = models.get("lenet_cifar", batch=2)
    compiled = torch.compile(model, backend="fxonnx")
    with torch.no_grad():
        assert_outputs_match(model(x), compiled(x))
        assert_outputs_match(model(x), compiled(x))
    assert len(seen) == 1 and seen[0] is not None
    x = torch.randn(3, 8)
    unsupported = WithUnsupported().eval()
    with torch.no_grad():
        got = torch.compile(unsupported, backend="fxonnx")(x[:, :5])
        assert_outputs_match(unsupported(x[:, :5]), got)
    assert len(seen) == 2 and seen[1] is None
    m = Small()
    torch.compile(m, backend="fxonnx")(x).sum().backward()
    assert len(seen) == 4 and seen[2:] == [None, None]  # forward, backward


def test_verify_names_the_partition_and_output(monkeypatch):
    from fxonnx.export._registry import _emit_as

    monkeypatch.setitem(RULES, aten.relu.default, _emit_as("Abs"))  # a wrong lowering
    compiled = torch.compile(Small().eval(), backend="fxonnx", options={"verify": True})
    with pytest.raises(Exception) as info, torch.no_grad():
        compiled(torch.randn(4, 8))
    err = info.value
    assert isinstance(err, VerificationError), info.value
    assert "fxonnx partition graph0.inference.fused_0 differs from eager" in str(err)
    assert "output graph0.inference.fused_0 out0_" in str(err)


def test_without_verify_the_wrong_lowering_is_not_caught(monkeypatch):
    """The check above is what catches it: verify is off by default (one extra eager run)."""
    from fxonnx.export._registry import _emit_as

    monkeypatch.setitem(RULES, aten.relu.default, _emit_as("Abs"))
    m = Small().eval()
    compiled = torch.compile(m, backend="fxonnx")
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert not torch.allclose(m(x), compiled(x))


class UnevenMaxPool(nn.Module):
    """A conv, then adaptive max pooling with indices over uneven windows (refused by its
    rule: the indices would need per-window arithmetic)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.AdaptiveMaxPool2d((4, 4), return_indices=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = self.pool(torch.relu(self.conv(x)))
        return values * 2, indices


def test_refused_node_is_split_out_not_the_whole_graph():
    """A rule that refuses one node leaves that node in torch and the rest of its partition in
    onnxruntime."""
    torch.manual_seed(0)
    m = UnevenMaxPool().eval()
    x = torch.randn(2, 2, 6, 7)
    with torch.no_grad():
        got, want = torch.compile(m, backend="fxonnx")(x), m(x)
    torch.testing.assert_close(got[0], want[0])
    assert torch.equal(got[1], want[1])
    graph = next(g for g in fd.stats().graphs if g.name.endswith("inference"))
    assert any("uneven windows" in n for n in graph.notes), graph.notes
    assert graph.partitions, graph  # the conv and the scaling still run in onnxruntime


def test_weights_changed_between_calls_are_seen():
    """The partition keeps numpy views of the weights: an in-place update and a replaced
    storage (``.data = ...``) must both reach onnxruntime."""
    m = Small().eval()
    compiled = torch.compile(m, backend="fxonnx")
    x = torch.randn(2, 8)
    with torch.no_grad():
        assert_outputs_match(m(x), compiled(x))
        m.fc2.weight.mul_(-2.0)
        assert_outputs_match(m(x), compiled(x))
        m.fc1.weight.data = torch.randn(16, 8)
        assert_outputs_match(m(x), compiled(x))


def test_passes_option_runs_the_pipeline_on_each_partition():
    m = Small().eval()
    compiled = torch.compile(m, backend="fxonnx", options={"passes": "default", "verify": True})
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert_outputs_match(m(x), compiled(x))
    assert fd.stats().sessions == 1


def test_unknown_pass_name_is_a_pass_error():
    from fxonnx import PassError

    compiled = torch.compile(Small(), backend="fxonnx", options={"passes": ["no_such_pass"]})
    with pytest.raises(Exception) as info, torch.no_grad():
        compiled(torch.randn(2, 8))
    err = getattr(info.value, "inner_exception", info.value)
    assert isinstance(err, PassError), info.value
    assert "no_such_pass" in str(err)


class UpConv(nn.Module):
    """Bilinear up-sampling: aot_autograd decomposes it, its gradient is an accumulating
    index_put, lowered to ScatterND(reduction=add)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.conv(x), scale_factor=2, mode="bilinear")


def _threads(part: object) -> int:
    return part.session._session.get_session_options().intra_op_num_threads  # type: ignore[attr-defined]


def _grads_match_eager(model: nn.Module, compiled: object, x: torch.Tensor) -> None:
    eager = UpConv()
    (eager(x) ** 2).mean().backward()
    (compiled(x) ** 2).mean().backward()  # type: ignore[operator]
    for name, p in model.named_parameters():
        want = dict(eager.named_parameters())[name].grad
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_a_racy_scatter_runs_in_torch_and_the_rest_keeps_its_threads():
    """onnxruntime's CPU ScatterND with a reduction loses updates on >1 thread
    (fxonnx/runtime/_races.py): the nodes lowered to it (here the accumulating index_put of
    the bilinear gradient) run in torch, a note names them, every partition keeps the
    requested 2 threads, none has such a ScatterND, and the gradients match eager."""
    from fxonnx.runtime._races import racy_on_threads

    model, x = UpConv(), torch.randn(2, 2, 6, 7)
    compiled = torch.compile(model, backend="fxonnx", options={"threads": 2})
    _grads_match_eager(model, compiled, x)
    parts = fd.stats().partitions()
    assert {p.name.split(".")[1] for p in parts} == {"forward", "backward"}
    assert all(_threads(p) == 2 for p in parts)
    assert not any(racy_on_threads(p.onnx_model) for p in parts)
    notes = [n for g in fd.stats().graphs for n in g.notes]
    assert any("index_put" in n and "runs in torch" in n and "ScatterND" in n for n in notes), notes


def test_on_one_thread_a_racy_scatter_stays_in_onnxruntime():
    """options={"threads": 1}: nothing races, so the scatter stays in its partition."""
    from fxonnx.runtime._races import racy_on_threads

    model, x = UpConv(), torch.randn(2, 2, 6, 7)
    compiled = torch.compile(model, backend="fxonnx", options={"threads": 1})
    _grads_match_eager(model, compiled, x)
    backward = [p for p in fd.stats().partitions() if ".backward." in p.name]
    assert any(racy_on_threads(p.onnx_model) for p in backward)
    assert all(_threads(p) == 1 for p in backward)


def test_a_racy_scatter_not_traced_to_a_node_gets_a_one_thread_session(monkeypatch):
    """When the racy ONNX node cannot be traced back to an fx node, the partition keeps it
    and runs on 1 thread, with a note saying so."""
    import fxonnx.dynamo._onnx_module as om

    monkeypatch.setattr(om, "_racy_sources", lambda sub, racy: frozenset())
    model, x = UpConv(), torch.randn(2, 2, 6, 7)
    compiled = torch.compile(model, backend="fxonnx", options={"threads": 2})
    _grads_match_eager(model, compiled, x)
    by_kind = {p.name.split(".")[1]: p for p in fd.stats().partitions()}
    assert _threads(by_kind["forward"]) == 2
    assert _threads(by_kind["backward"]) == 1
    notes = [n for g in fd.stats().graphs for n in g.notes]
    assert any("runs on 1 onnxruntime thread" in n and "ScatterND" in n for n in notes), notes


def test_transformer_training_step_runs_in_one_partition_per_graph_on_all_threads():
    """A token-embedding transformer encoder's SGD step (dropout off): the forward graph is one
    2-thread partition, the backward graph too, with only the embedding gradient (its
    ScatterND would race) left to torch; the step matches eager autograd."""
    from dynamo_helpers import sgd_step_matches

    from fxonnx.models.transformer import TransformerClassifier

    torch.manual_seed(0)
    model = TransformerClassifier(50, 12, 32, 4, 2, 64, 3)
    tokens = torch.randint(0, 50, (2, 12))
    stats = sgd_step_matches(model, (tokens,), options={"threads": 2})
    by_graph = {g.name.split(".")[1]: g for g in stats.graphs}
    assert set(by_graph) == {"forward", "backward"}
    assert [len(g.partitions) for g in (by_graph["forward"], by_graph["backward"])] == [1, 1]
    assert by_graph["forward"].torch_nodes == 0 and by_graph["backward"].unsupported == ()
    assert by_graph["backward"].torch_nodes == 1  # the embedding gradient
    assert all(_threads(p) == 2 for p in stats.partitions())
    in_torch = [n for n in by_graph["backward"].notes if "runs in torch" in n]
    assert len(in_torch) == 1 and "embedding_dense_backward" in in_torch[0], in_torch


class Dropped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.drop, self.fc2 = nn.Linear(8, 32), nn.Dropout(0.3), nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.fc1(x).relu()))


def test_real_dropout_forward_stays_in_torch_its_backward_does_not():
    """Train-mode dropout with p > 0: native_dropout runs in torch (its random mask, the same
    generator as eager), native_dropout_backward in the one backward partition; with the
    same seed the gradients are eager's."""
    model, x = Dropped().train(), torch.randn(16, 8)
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, backend="fxonnx")
    torch.manual_seed(1)
    (eager(x) ** 2).mean().backward()
    torch.manual_seed(1)
    (compiled(x) ** 2).mean().backward()
    for name, p in model.named_parameters():
        want = dict(eager.named_parameters())[name].grad
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    by_kind = {g.name.split(".")[1]: g for g in fd.stats().graphs}
    assert by_kind["forward"].unsupported == ("aten.native_dropout.default",)
    assert by_kind["backward"].unsupported == ()
    assert len(by_kind["backward"].partitions) == 1 and by_kind["backward"].torch_nodes == 0


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 4)
        self.bn.running_mean.uniform_(-1, 1)
        self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).relu().mean((2, 3)))


def _inputs_of(part: object) -> list[str]:
    return [i.name for i in part.session._session.get_inputs()]  # type: ignore[attr-defined]


def test_freeze_bakes_the_weights_and_notices_when_they_change():
    """options={"freeze": True}: an inference graph's parameters and buffers become
    initializers at the first call (the session's only input is x); an in-place update, a
    load_state_dict and a swapped parameter each make them inputs again, and every call
    matches eager."""
    m, x = ConvBN().eval(), torch.randn(2, 3, 9, 9)
    compiled = torch.compile(m, backend="fxonnx", options={"freeze": True})
    with torch.no_grad():
        assert_outputs_match(m(x), compiled(x))
        (part,) = fd.stats().partitions()
        assert len(_inputs_of(part)) == 1  # the weights are baked in
        assert_outputs_match(m(x + 1), compiled(x + 1))
        m.conv.weight.mul_(2)  # an optimizer-style in-place update
        assert_outputs_match(m(x), compiled(x))
        assert len(_inputs_of(part)) > 1  # thawed: the weights are inputs again
        m.load_state_dict(ConvBN().state_dict())
        assert_outputs_match(m(x), compiled(x))


def test_freeze_leaves_training_graphs_alone():
    m, x = ConvBN().train(), torch.randn(2, 3, 9, 9)
    compiled = torch.compile(m, backend="fxonnx", options={"freeze": True})
    compiled(x).sum().backward()
    assert all(len(_inputs_of(p)) > 1 for p in fd.stats().partitions())


def _record_inference_graphs(monkeypatch) -> list:
    """What the backend's _inference_graph returns for each graph (None: the graph went
    through aot_autograd)."""
    return _record(monkeypatch, "_inference_graph")


def test_inference_graphs_are_called_without_aot_autograds_wrappers(monkeypatch):
    """Under no_grad, a graph that mutates nothing is exported with dynamo's own calling
    convention and called straight through its one partition (no aot_autograd run-time
    wrappers), at two batch sizes; with grad on, the same model trains through aot."""
    graphs = _record_inference_graphs(monkeypatch)
    direct = _record_direct(monkeypatch)
    m = Small().eval()
    compiled = torch.compile(m, backend="fxonnx")
    with torch.no_grad():
        for batch in (3, 5):
            x = torch.randn(batch, 8)
            assert_outputs_match(m(x), compiled(x))
    assert graphs and all(g is not None for g in graphs)
    assert direct and all(d is not None for d in direct)
    kinds = {g.name.split(".")[1] for g in fd.stats().graphs}
    assert kinds == {"inference"}
    compiled(torch.randn(3, 8)).sum().backward()  # grad on: a new graph, through aot
    assert len(graphs) == len(direct) - 2  # forward and backward did not ask for one
    assert all(p.grad is not None for p in m.parameters())


def test_an_inference_graph_that_updates_a_buffer_goes_through_aot_autograd(monkeypatch):
    """Train-mode batch norm under no_grad writes its running stats: that graph takes aot's
    wrappers, and the stats and outputs after two calls are eager's."""
    graphs = _record_inference_graphs(monkeypatch)
    m, x = ConvBN().train(), torch.randn(2, 3, 9, 9)
    eager = copy.deepcopy(m)
    compiled = torch.compile(m, backend="fxonnx")
    with torch.no_grad():
        for _ in range(2):
            assert_outputs_match(eager(x), compiled(x))
    assert graphs == [None]
    assert torch.allclose(m.bn.running_mean, eager.bn.running_mean, atol=1e-6)
    assert torch.allclose(m.bn.running_var, eager.bn.running_var, atol=1e-6)


def test_a_class_token_head_computes_its_last_block_for_that_token():
    """vit_tiny under no_grad reads token 0: in the inference graph (aot's addmm views,
    native_layer_norm and decomposed attention) select_early moves the pick into the last
    attention's queries, and outputs match eager at two batch sizes."""
    from fxonnx import models

    model, (x,) = models.get("vit_tiny", batch=2)
    compiled = torch.compile(model, backend="fxonnx")
    with torch.no_grad():
        assert_outputs_match(model(x), compiled(x))
        assert_outputs_match(model(x[:1]), compiled(x[:1]))
    (part, *_) = fd.stats().partitions()
    moved = part.pass_stats["select_early"]
    assert moved["moved:_safe_softmax.default"] == 1 and moved["moved:matmul.default"] >= 4, moved


class PackedAttention(nn.Module):
    """nn.MultiheadAttention (its packed q/k/v projection) then a linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.attn, self.out = nn.MultiheadAttention(16, 2, batch_first=True), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.attn(x, x, x, need_weights=False)[0])


def test_packed_projection_backward_stacks_and_trains_as_eager() -> None:
    """Under torch.compile the backward of MultiheadAttention's packed projection has the
    summed select gradients: they are stacked, and one SGD step matches eager's."""
    x = torch.randn(2, 5, 16)
    sgd_step_matches(PackedAttention(), (x,))
    backward = [p for p in fd.stats().partitions() if ".backward." in p.name]
    assert sum(p.pass_stats["stack_select_grads"].get("stacked", 0) for p in backward) == 1


def test_an_export_refusal_without_a_message_still_falls_back_to_aot(monkeypatch):
    """Whatever the inference export raises, even a bare AssertionError, the graph goes
    through aot_autograd and matches eager."""
    import torch._functorch.aot_autograd as aot

    def refuse(*args, **kwargs):
        raise AssertionError

    monkeypatch.setattr(aot, "aot_export_joint_simple", refuse)
    graphs = _record_inference_graphs(monkeypatch)
    m, x = Small().eval(), torch.randn(3, 8)
    with torch.no_grad():
        assert_outputs_match(m(x), torch.compile(m, backend="fxonnx")(x))
    assert graphs == [None]
