"""Repeated layers traced once (``capture/_replay``): the graph is the one a full trace gives,
node for node, and a call that could trace differently is traced, not replayed."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import pytest
import torch
from torch import fx, nn

import fxonnx
from fxonnx import models
from fxonnx.capture import _trace, capture
from fxonnx.capture._replay import _SIZE_READS, replayed_layers


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch) -> list[Counter[str]]:
    """The replay counts of every trace in the test."""
    seen: list[Counter[str]] = []

    @contextlib.contextmanager
    def spy(model: nn.Module) -> Iterator[Counter[str]]:
        with replayed_layers(model) as stats:
            seen.append(stats)
            yield stats

    monkeypatch.setattr(_trace, "replayed_layers", spy)
    return seen


def _canonical(gm: fx.GraphModule) -> list[tuple]:
    """The graph with nodes as positions; size reads as (tensor, dim), wherever they sit."""
    index: dict[fx.Node, object] = {}
    rows: list[tuple] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            index[node] = ("input", len(index))
            continue
        args = fx.node.map_arg(node.args, lambda n: index[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: index[n])
        if node.target in _SIZE_READS:
            index[node] = ("size", str(node.target), args)
            continue
        meta = node.meta.get("val")
        shape = tuple(str(s) for s in meta.shape) if isinstance(meta, torch.Tensor) else None
        rows.append((node.op, str(node.target), args, kwargs, shape))
        index[node] = ("node", len(rows) - 1)
    return rows


@contextlib.contextmanager
def _without_replay(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    @contextlib.contextmanager
    def off(model: nn.Module) -> Iterator[Counter[str]]:
        yield Counter()

    with monkeypatch.context() as m:
        m.setattr(_trace, "replayed_layers", off)
        yield


@pytest.mark.parametrize(
    "name,dynamic",
    [
        ("transformer_encoder", "auto"),
        ("vit_tiny", "auto"),
        ("bert_tiny", "zoo"),
        ("llama_tiny", "zoo"),
        ("mobilenet_v2", None),
        ("resnet18", "auto"),
    ],
)
def test_replayed_graph_is_the_traced_graph(
    name: str, dynamic: str | None, replays: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, inputs = models.get(name, batch=2)
    dims = models.info(name).dynamic_dims if dynamic == "zoo" else dynamic
    replayed = capture(model, inputs, dynamic_dims=dims)
    assert replays[-1]["replayed"] > 0, replays[-1]
    with _without_replay(monkeypatch):
        traced = capture(model, inputs, dynamic_dims=dims)
    assert _canonical(replayed.gm) == _canonical(traced.gm)
    assert [s.shape for s in replayed.outputs] == [s.shape for s in traced.outputs]


def test_replayed_layers_keep_their_own_weights(replays: list) -> None:
    """Four encoder layers, three replayed: each reads its own parameters (verification at
    two batch sizes would fail otherwise)."""
    model, inputs = models.get("transformer_encoder", batch=2)
    compiled = fxonnx.compile(model, inputs)
    assert replays[0]["replayed"] >= 3
    assert compiled.report.ok
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs), rtol=1e-4, atol=1e-5)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x))


class _Stack(nn.Module):
    def __init__(self, block: type[nn.Module], n: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pre = nn.Linear(6, 6)
        self.blocks = nn.ModuleList(block() for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre(x)
        for b in self.blocks:
            h = b(h)
        return h


class _TensorAttribute(_Block):
    """A plain tensor attribute: each block's own constant."""

    count = 0

    def __init__(self) -> None:
        super().__init__()
        _TensorAttribute.count += 1
        self.scale = torch.tensor(float(_TensorAttribute.count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale


class _Counting(_Block):
    """Changes its own attribute while called."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x)


class _WritesInput(_Block):
    """Writes into a view of its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x[:, :2].mul_(2.0)
        return super().forward(x) + x


class _Identity(nn.Module):
    """Returns its input (no nodes of its own), like a disabled branch."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _check(model: nn.Module, x: torch.Tensor) -> None:
    compiled = fxonnx.compile(model.eval(), (x,))
    assert compiled.report.ok
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_blocks_with_plain_tensor_attributes_are_traced(replays: list) -> None:
    _check(_Stack(_TensorAttribute), torch.randn(2, 6))
    assert replays[0]["replayed"] == 0


def test_a_block_that_changes_its_attributes_is_traced(replays: list) -> None:
    capture(_Stack(_Counting), (torch.randn(2, 6),))
    assert replays[0]["replayed"] == 0
    assert replays[0]["not_replayable"] == 1


def test_a_block_that_writes_its_input_is_traced(replays: list) -> None:
    _check(_Stack(_WritesInput), torch.randn(2, 6))
    assert replays[0]["replayed"] == 0


def test_a_block_that_returns_its_input_is_traced(replays: list) -> None:
    model = _Stack(_Identity)
    capture(model.eval(), (torch.randn(2, 6),))
    assert replays[0]["replayed"] == 0


def test_a_hooked_block_is_traced(replays: list) -> None:
    model = _Stack(_Block)
    model.blocks[1].register_forward_hook(lambda m, args, out: out + 1.0)
    _check(model, torch.randn(2, 6))
    assert replays[0]["replayed"] == 1  # blocks 0 and 2 still match each other


def test_calls_on_other_shapes_are_traced(replays: list) -> None:
    class Halves(_Stack):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.blocks[0](x).sum(-1) + self.blocks[1](x[::2].repeat(2, 1)).sum(-1)

    _check(Halves(_Block, n=2), torch.randn(4, 6))
    assert replays[0]["replayed"] == 0


def test_identical_blocks_are_replayed(replays: list) -> None:
    _check(_Stack(_Block, n=4), torch.randn(3, 6))
    assert replays[0]["replayed"] == 3
