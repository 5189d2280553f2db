"""The trace budget: work that grows with a tensor's size stops early with a CaptureError."""

from __future__ import annotations

import logging
import time

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from fxonnx import CaptureError
from fxonnx.capture import _trace
from fxonnx.capture._budget import BASE_OPS, OPS_PER_UNIT, guarded_trace, op_budget, trace_budget
from fxonnx.models import get


class AddLoop(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n):
            x = x + 1
        return x


def _bounded_trace(model: nn.Module, *inputs: torch.Tensor, limit: int | None = None):
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fakes = [mode.from_tensor(t) for t in inputs]
    with mode, torch.no_grad(), trace_budget(model, limit) as budget:
        gm = make_fx(model, pre_dispatch=True)(*fakes)
    return gm, budget


def test_budget_grows_with_the_model() -> None:
    assert op_budget(AddLoop(1)) == BASE_OPS + OPS_PER_UNIT
    lin = nn.Linear(3, 4)  # module, weight, bias
    assert op_budget(lin) == BASE_OPS + 3 * OPS_PER_UNIT


def test_a_python_loop_of_100k_adds_stops_quickly_with_a_capture_error() -> None:
    model = AddLoop(10**5)
    t0 = time.perf_counter()
    with pytest.raises(CaptureError) as info:
        _bounded_trace(model, torch.randn(2, 3))
    elapsed = time.perf_counter() - t0
    msg = str(info.value)
    assert f"budget of {op_budget(model)} ops" in msg
    assert "aten.add.Tensor" in msg  # what grew
    assert "test_budget.py" in msg and "x = x + 1" not in msg  # the line, as file:line (forward)
    assert "'<root>' (AddLoop)" in msg
    assert elapsed < 30, elapsed  # 2,200 fake ops; unbounded it would be 10^5


def test_a_small_loop_stays_within_the_budget_and_traces_every_op() -> None:
    gm, budget = _bounded_trace(AddLoop(50), torch.randn(2, 3))
    adds = [n for n in gm.graph.nodes if n.target is torch.ops.aten.add.Tensor]
    assert len(adds) == 50
    assert budget.counts["aten.add.Tensor"] == 50 and budget.total <= budget.limit


def test_a_recurrent_layer_unrolled_over_a_long_dynamic_dim_names_the_module() -> None:
    # the seq-first RNN traced with the batch sentinel on dim 0 unrolls a million time steps
    model = nn.Sequential(nn.RNN(4, 8))
    with pytest.raises(CaptureError) as info:
        _bounded_trace(model, torch.randn(20_000, 2, 4))
    msg = str(info.value)
    assert "'0' (RNN)" in msg and "time step" in msg


def test_an_explicit_limit_wins() -> None:
    with pytest.raises(CaptureError, match="budget of 10 ops"):
        _bounded_trace(AddLoop(11), torch.randn(2), limit=10)
    _, budget = _bounded_trace(AddLoop(10), torch.randn(2), limit=10)
    assert budget.total == 10


@pytest.mark.parametrize("name", ["mlp", "lenet_cifar", "gru_lm", "self_attention"])
def test_zoo_captures_are_unchanged_under_the_budget(name: str, monkeypatch) -> None:
    """What the lead's one-line hook in _trace.py will do: the same graph, within budget."""
    model, inputs = get(name)
    plain = _trace.capture(model, inputs)
    seen = []
    real = _trace.make_fx

    def guarded(fn, **kw):
        traced = real(fn, **kw)

        def run(*args):
            with trace_budget(model) as budget:
                out = traced(*args)
            seen.append(budget.total)
            return out

        return run

    monkeypatch.setattr(_trace, "make_fx", guarded)
    bounded = _trace.capture(model, inputs)
    assert seen and max(seen) <= op_budget(model)
    targets = [str(n.target) for n in plain.gm.graph.nodes]
    assert [str(n.target) for n in bounded.gm.graph.nodes] == targets


def test_unbind_over_a_huge_dim_is_refused_before_it_runs() -> None:
    class Unbind(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack(x.unbind(0)).sum(0)

    t0 = time.perf_counter()
    with pytest.raises(CaptureError, match=r"aten.unbind.int x1000004"):
        _bounded_trace(Unbind(), torch.empty(1_000_003, 2))
    assert time.perf_counter() - t0 < 10  # unbinding it would take minutes
    _, budget = _bounded_trace(Unbind(), torch.empty(7, 2))
    assert budget.counts["aten.unbind.int"] == 8  # the op and its 7 outputs


def test_guarded_trace_quiets_the_fake_tensor_traceback_log(caplog) -> None:
    model = nn.Linear(4, 3)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    bad = mode.from_tensor(torch.randn(2, 5))  # wrong feature size: the meta kernel fails
    with pytest.raises(RuntimeError), mode, guarded_trace(model):
        make_fx(model, pre_dispatch=True)(bad)
    assert not [r for r in caplog.records if r.name == "torch._subclasses.fake_tensor"]
    assert logging.getLogger("torch._subclasses.fake_tensor").level == logging.NOTSET
