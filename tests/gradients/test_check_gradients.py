"""check_gradients: graph gradients (after passes) vs eager, float64 gradcheck, and the ONNX
artifact's directional derivatives vs eager forward mode."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

import fxonnx
from fxonnx.models import get, names
from fxonnx.passes import Pass, PassContext, PassResult

aten = torch.ops.aten


def _kinds(report: fxonnx.Report) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in report.checks:
        out[c.kind] = out.get(c.kind, 0) + 1
    return out


@pytest.mark.parametrize("passes", ["none", "default"])
def test_mlp(passes: str) -> None:
    model, (x,) = get("mlp", batch=3)
    report = fxonnx.check_gradients(model, x, passes=passes)
    assert report.ok, str(report)
    by_name = {c.name: c for c in report.checks if c.kind == "grad"}
    assert set(by_name) == {"x"} | {n for n, _ in model.named_parameters()}
    assert by_name["x"].note == ""  # the input gradient is always compared
    # const_fold is held back, so linear_chain's collapse stays a computation on fc1/fc2
    assert all(c.note == "" for c in by_name.values())
    assert _kinds(report)["directional"] == 2
    assert "float64" in next(c.note for c in report.checks if c.kind == "directional")


@pytest.mark.parametrize("passes", ["none", "default"])
def test_lenet_cifar(passes: str) -> None:
    model, (x,) = get("lenet_cifar", batch=2)
    report = fxonnx.check_gradients(model, x, passes=passes)
    assert report.ok, str(report)
    # onnxruntime's CPU Conv has no float64 kernel: the directional check falls back to fp32
    assert any("float32" in n for n in report.notes)
    assert all(c.max_abs <= c.atol for c in report.checks if c.kind == "grad" and c.note == "")


def test_float64_gradcheck() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    report = fxonnx.check_gradients(model, torch.randn(2, 3), dtype=torch.float64, passes="none")
    assert report.ok, str(report)
    gradcheck = next(c for c in report.checks if c.name == "gradcheck")
    assert gradcheck.ok and "fast mode" in gradcheck.note
    assert all(c.rtol == 1e-7 for c in report.checks if c.kind == "grad" and c.name != "gradcheck")


class _SkewedGrad(torch.autograd.Function):
    """Identity forward, the true gradient 5% too large backward: a wrong derivative to catch."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return 1.05 * grad


def test_gradcheck_catches_a_wrong_gradient_of_one_small_tensor(monkeypatch) -> None:
    """All tensors are checked as one vector: the smallest one (the last bias, 30 of the
    mlp's 860 numbers) must still carry enough of the random direction to fail."""
    from fxonnx.verify import _gradients

    real = _gradients._graph_forward
    bias = "fc2.bias"

    def skewed_bias_grad(captured, params, user):  # noqa: ANN001, ANN202
        params = {**params, bias: _SkewedGrad.apply(params[bias])}
        return real(captured, params, user)

    model, (x,) = get("mlp", batch=2)
    model = model.double()
    good = fxonnx.check_gradients(model, x.double(), dtype=torch.float64, passes="none")
    assert next(c for c in good.checks if c.name == "gradcheck").ok
    monkeypatch.setattr(_gradients, "_graph_forward", skewed_bias_grad)
    captured = fxonnx.capture.capture(model, (x.double(),))
    check = _gradients._gradcheck(captured, [x.double()])
    assert not check.ok and "Jacobian mismatch" in check.note


class _Centered(nn.Module):
    """The bias cancels in the centering: its gradient is analytically zero (rounding noise)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return self.out(torch.tanh(h - h.mean(0, keepdim=True)))


def test_analytically_zero_gradient_is_not_a_failure() -> None:
    torch.manual_seed(0)
    model = _Centered()
    report = fxonnx.check_gradients(model, torch.randn(5, 4) * 3, passes="none", directions=0)
    assert report.ok, str(report)
    bias = next(c for c in report.checks if c.name == "fc.bias")
    assert bias.max_abs <= bias.atol  # absolute noise, scaled by the largest gradient


class _ReluToAbs(Pass):
    """A broken 'optimization': relu -> abs (outputs change for negative inputs)."""

    name = "test_relu_to_abs"

    def run(self, ctx: PassContext) -> PassResult:
        hits = 0
        for node in ctx.gm.graph.nodes:
            if node.op == "call_function" and node.target is aten.relu.default:
                node.target = aten.abs.default
                hits += 1
        return PassResult(ctx.gm, modified=hits > 0, stats={"hits": hits})


class _DropSecondLayer(Pass):
    """Replaces the second Linear's weight by a constant copy: the parameter leaves the graph."""

    name = "test_bake_weight"

    def run(self, ctx: PassContext) -> PassResult:
        captured = ctx.captured
        gm: fx.GraphModule = ctx.gm
        ph = next((n for n in gm.graph.nodes if n.name == "fc2_weight"), None)
        if ph is None:  # done in an earlier round
            return PassResult(gm, modified=False)
        gm.register_buffer("baked_fc2_weight", captured.state["fc2.weight"].clone())
        with gm.graph.inserting_before(ph.next):
            const = gm.graph.get_attr("baked_fc2_weight")
        const.meta = dict(ph.meta)
        ph.replace_all_uses_with(const)
        gm.graph.erase_node(ph)
        captured.inputs = tuple(s for s in captured.inputs if s.name != "fc2.weight")
        captured.state = {k: v for k, v in captured.state.items() if k != "fc2.weight"}
        captured.state["baked_fc2_weight"] = gm.baked_fc2_weight
        return PassResult(gm, modified=True, stats={"baked": 1})


def test_wrong_gradients_are_caught() -> None:
    model, (x,) = get("simple_net", batch=4)
    report = fxonnx.check_gradients(model, x, passes=[_ReluToAbs()])
    bad = {(c.kind, c.name) for c in report.failures()}
    assert ("grad", "fc1.weight") in bad
    assert any(kind == "directional" for kind, _ in bad)


def test_removed_parameter_is_reported_not_compared() -> None:
    model, (x,) = get("simple_net", batch=4)
    report = fxonnx.check_gradients(model, x, passes=[_DropSecondLayer()])
    assert report.ok, str(report)
    check = next(c for c in report.checks if c.name == "fc2.weight")
    assert check.ok and "removed by the passes" in check.note


def test_bake_constants_reports_the_baked_parameters_as_removed() -> None:
    model, (x,) = get("mlp", batch=3)
    default = fxonnx.check_gradients(model, x, directions=0)
    assert any("const_fold held back" in note for note in default.notes)
    baked = fxonnx.check_gradients(model, x, directions=0, bake_constants=True)
    assert baked.ok, str(baked)
    notes = {c.name: c.note for c in baked.checks}
    assert notes["x"] == ""
    assert all("removed by the passes" in notes[n] for n, _ in model.named_parameters())
    assert not any("held back" in note for note in baked.notes)


def test_tied_parameters_compare_sums() -> None:
    """Weight dedup merges bit-identical parameters; their gradients add up in the one kept."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    with torch.no_grad():
        model[2].weight.copy_(model[0].weight)
    report = fxonnx.check_gradients(model, torch.randn(3, 4), passes=["dedup_weights"])
    assert report.ok, str(report)
    assert any("merged into" in c.note for c in report.checks)
    assert any("sums compared" in c.note for c in report.checks)


def test_loss_callable() -> None:
    model, (x,) = get("my_net", batch=3)
    report = fxonnx.check_gradients(
        model, x, passes="default", loss=lambda out: (out**2).mean(), directions=1
    )
    assert report.ok, str(report)


@pytest.mark.slow
@pytest.mark.parametrize("passes", ["none", "default"])
@pytest.mark.parametrize("name", names())
def test_zoo(name: str, passes: str) -> None:
    model, inputs = get(name, batch=2)
    report = fxonnx.check_gradients(model, tuple(inputs), passes=passes)
    assert report.ok, str(report)
    grads = [c for c in report.checks if c.kind == "grad"]
    assert len(grads) >= sum(1 for _ in model.parameters())
    assert not [c.name for c in grads if "removed" in c.note]  # every parameter compared


@pytest.mark.slow
@pytest.mark.parametrize("passes", ["none", "default"])
@pytest.mark.parametrize("name", names())
def test_zoo_float64(name: str, passes: str) -> None:
    model, inputs = get(name, batch=2)
    report = fxonnx.check_gradients(
        model, tuple(inputs), passes=passes, dtype=torch.float64, directions=1
    )
    assert report.ok, str(report)
    assert next(c for c in report.checks if c.name == "gradcheck").ok


class TiedLM(nn.Module):
    """GPT-2's layout: the LM head reuses the token embedding. With batch and seq dynamic the
    head stays a MatMul whose transposed weight const_fold bakes, while the embedding still
    reads the parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(50, 16)
        self.mix = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.wte(ids))))


def test_directional_checks_hold_a_parameter_still_when_a_constant_copied_it() -> None:
    model = TiedLM()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    report = fxonnx.check_gradients(model, (ids,), dynamic_dims={0: {0: "batch", 1: "seq"}})
    directional = [c for c in report.checks if c.kind == "directional"]
    assert report.ok and directional and all(c.ok for c in directional), str(report)


class ScaledZeroBias(nn.Module):
    """OPT's query scaling: scalar_fold moves the scale into the query's weight and zero
    bias, const_fold bakes them, and dedup_weights merges the baked zeros with the key's
    zero bias, a parameter the graph still reads."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(16, 16), nn.Linear(16, 16)
        nn.init.zeros_(self.q.bias)
        nn.init.zeros_(self.k.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.q(x) * 0.25) + self.k(x)


def test_directional_checks_hold_still_a_parameter_merged_with_a_baked_constant() -> None:
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    report = fxonnx.check_gradients(ScaledZeroBias(), (x,), dynamic_dims={0: {0: "b", 1: "s"}})
    directional = [c for c in report.checks if c.kind == "directional"]
    assert report.ok and directional and all(c.ok for c in directional), str(report)
