"""The pass contract, pipelines, the registry, run_passes and the compile wiring."""

from __future__ import annotations

import pytest
import torch
from pass_helpers import randn
from torch import nn

import fxonnx
from fxonnx import PassError
from fxonnx.capture import capture
from fxonnx.passes import (
    DEFAULT,
    Pass,
    PassContext,
    PassResult,
    Pipeline,
    available_passes,
    register,
    resolve,
    run_passes,
    unregister,
)

aten = torch.ops.aten


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x)).clone() * 1.0


def _captured():
    return capture(Small().eval(), randn(4)(2))


def test_every_default_pass_is_registered_and_the_list_is_data() -> None:
    assert set(DEFAULT) <= set(available_passes())
    assert {"prune", "dce", "fold_bn", "linear_chain", "const_fold"} <= set(available_passes())


def test_resolve_none_default_skip_and_unknown_names() -> None:
    assert resolve("none") == []
    assert [p.name for p in resolve("default", skip=["dce"])] == [n for n in DEFAULT if n != "dce"]
    with pytest.raises(PassError, match="unknown pass 'nope'"):
        resolve(["nope"])
    with pytest.raises(PassError, match="unknown pass"):
        resolve("default", skip=["nope"])


def test_run_passes_leaves_the_input_captured_alone() -> None:
    c = _captured()
    before = [n.format_node() for n in c.gm.graph.nodes]
    out, stats = run_passes(c)
    assert [n.format_node() for n in c.gm.graph.nodes] == before
    assert len(list(out.gm.graph.nodes)) < len(before)
    # fuse_activation rewrites the lowered model in compile, for its provider
    assert [s["name"] for s in stats] == [n for n in DEFAULT if n != "fuse_activation"]
    assert all({"name", "rounds", "modified", "ms", "stats"} <= set(s) for s in stats)


class Liar(Pass):
    name = "test_liar"

    def run(self, ctx: PassContext) -> PassResult:
        return PassResult(ctx.gm, modified=True)


class Swapper(Pass):
    name = "test_swapper"

    def run(self, ctx: PassContext) -> PassResult:
        return PassResult(torch.fx.GraphModule(ctx.gm, ctx.gm.graph), modified=False)


def test_contract_dishonest_modified_flag_and_new_module_raise() -> None:
    ctx = PassContext(_captured())
    with pytest.raises(PassError, match="test_liar.*modified=True.*did not change"):
        Liar().apply(ctx)
    with pytest.raises(PassError, match="different graph module"):
        Swapper().apply(ctx)


class CountDown(Pass):
    """Changes the graph (adds a no-op alias) a fixed number of times, then stops."""

    name = "test_countdown"

    def __init__(self, times: int) -> None:
        self.left = times

    def run(self, ctx: PassContext) -> PassResult:
        if not self.left:
            return PassResult(ctx.gm, modified=False, stats={"miss:done": 1})
        self.left -= 1
        out = next(n for n in ctx.gm.graph.nodes if n.op == "output")
        x = out.args[0][0]
        with ctx.gm.graph.inserting_before(out):
            alias = ctx.gm.graph.call_function(aten.alias.default, (x,))
        alias.meta = dict(x.meta)
        out.args = ([alias],)
        return PassResult(ctx.gm, modified=True, stats={"added": 1})


def test_pipeline_runs_to_a_fixed_point_within_max_rounds() -> None:
    stats = Pipeline([CountDown(2)], max_rounds=5).run(PassContext(_captured()))
    assert stats[0]["rounds"] == 3 and stats[0]["stats"] == {"added": 2, "miss:done": 1}
    stats = Pipeline([CountDown(10)], max_rounds=3).run(PassContext(_captured()))
    assert stats[0]["rounds"] == 3 and stats[0]["stats"] == {"added": 3}


def test_apply_recompiles_only_a_changed_graph_and_hands_on_its_digest() -> None:
    ctx = PassContext(_captured())
    code = ctx.gm.code
    idle = CountDown(0).apply(ctx)
    assert not idle.modified and ctx.gm.code is code  # unchanged: the compiled code stays
    changed = CountDown(1).apply(ctx, idle.graph_hash)
    assert changed.modified and "alias" in ctx.gm.code  # changed: recompiled
    assert changed.graph_hash != idle.graph_hash
    again = CountDown(0).apply(ctx, changed.graph_hash)
    assert again.graph_hash == changed.graph_hash
    with pytest.raises(PassError, match="modified=True.*did not change"):
        Liar().apply(ctx, changed.graph_hash)


class BreakRelu(Pass):
    """Deliberately wrong: relu -> sigmoid (keeps the node name)."""

    name = "test_break_relu"

    def run(self, ctx: PassContext) -> PassResult:
        n = 0
        for node in ctx.gm.graph.nodes:
            if node.target == aten.relu.default:
                node.target = aten.sigmoid.default
                n += 1
        return PassResult(ctx.gm, modified=n > 0, stats={"broken": n})


@pytest.fixture
def broken_pass():
    register(BreakRelu)
    yield BreakRelu.name
    unregister(BreakRelu.name)


def test_verify_each_names_the_pass_the_passes_before_and_the_node(broken_pass: str) -> None:
    model, make = Small().eval(), randn(4)
    with pytest.raises(PassError) as info:
        fxonnx.compile(
            model,
            make(2),
            provider="cpu",
            passes=["noops", "dce", broken_pass, "const_fold"],
            verify="each-pass",
        )
    msg = str(info.value)
    assert "'test_break_relu'" in msg
    assert "passes before it: noops, dce" in msg
    assert "first diverging node: 'relu'" in msg


def test_verify_each_catches_nothing_on_honest_passes() -> None:
    model = Small().eval()
    cm = fxonnx.compile(model, randn(4)(2), provider="cpu", verify="each-pass")
    assert cm.report.ok


def test_compile_reports_pass_stats_and_timing_and_export_takes_passes() -> None:
    model, x = fxonnx.models.get("mlp")
    cm = fxonnx.compile(model, x, provider="cpu")
    names = [p["name"] for p in cm.report.passes]
    assert names == list(DEFAULT)
    assert "passes" in cm.report.stages
    assert cm.report.to_dict()["passes"][names.index("linear_chain")]["stats"] == {"collapsed": 1}
    assert [n.op_type for n in cm.onnx_model.graph.node] == ["Gemm"]
    plain = fxonnx.compile(model, x, provider="cpu", passes="none")
    assert plain.report.passes == () and "passes" not in plain.report.stages
    assert len(plain.onnx_model.graph.node) == 2
    proto = fxonnx.export(model, x, skip=["linear_chain"])
    assert len(proto.graph.node) == 2
    with pytest.raises(ValueError, match="verify"):
        fxonnx.compile(model, x, verify="sometimes")


def test_a_pipeline_regenerates_the_code_once_at_the_end() -> None:
    ctx = PassContext(_captured())
    code = ctx.gm.code
    changed = CountDown(1).apply(ctx, recompile=False)
    assert changed.modified and ctx.gm.code is code  # left to the caller
    ctx = PassContext(_captured())
    recompiles = []
    real = ctx.gm.recompile
    ctx.gm.recompile = lambda: recompiles.append(1) or real()  # type: ignore[method-assign]
    Pipeline([CountDown(2)], max_rounds=5).run(ctx)
    assert recompiles == [1] and ctx.gm.code.count("aten.alias.default(") == 2
