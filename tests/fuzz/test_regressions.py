"""Named regressions the fuzzer found, each shrunk to a minimal model and checked with the
fuzzer's own property (tests/fuzz/fuzzing.py). Those owned by work in flight elsewhere are
strict xfails naming it: when that work lands they pass, and the marker must go."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from fuzzing import check_compile
from torch import nn


class Fn(nn.Module):
    def __init__(self, fn, **mods: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleDict(mods)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(self.mods, *xs)


def _check(fn, *inputs: torch.Tensor, dynamic: bool = True, **mods: nn.Module) -> str:
    """The fuzzer's property, and more: these models must compile and match (not be refused)."""
    outcome = check_compile(Fn(fn, **mods).eval(), inputs, dynamic)
    assert outcome.startswith("matched"), outcome
    return outcome


def test_a_0d_input_keeps_a_0d_output() -> None:
    """inputs (():float32): the identity came back with shape (1,)."""
    _check(lambda m, x: x * 2, torch.tensor(1.5), dynamic=False)


def test_unsqueeze_then_permute_of_a_0d_input() -> None:
    """onnxruntime: 'Transpose perm size: 1 does not match input rank: 2'."""
    _check(lambda m, x: x.unsqueeze(0).relu().permute(0), torch.tensor(1.5), dynamic=False)


def test_unbatched_max_pool() -> None:
    """inputs ((5, 1, 5):float32): onnxruntime refused the model (no node named)."""
    _check(lambda m, x: x + m["p"](x), torch.randn(5, 1, 5), dynamic=False, p=nn.MaxPool2d(1))


def test_unbatched_adaptive_avg_pool() -> None:
    """inputs ((3, 3, 4):float32): output shape (3, 1) instead of eager's (3, 1, 1)."""
    _check(lambda m, x: m["p"](x), torch.randn(3, 3, 4), dynamic=False, p=nn.AdaptiveAvgPool2d(1))


def test_split_of_a_zero_size_dim() -> None:
    """A split along a dim that has no elements, concatenated back."""
    x = torch.randn(2, 0, 4)
    _check(lambda m, x: torch.cat(list(reversed(x.split(1, -1))), -1), x, dynamic=False)


@pytest.mark.xfail(
    strict=True,
    reason="zero-size dims (edges' scope, still open with edges merged): onnxruntime's "
    "ReduceMean over an empty axis gives 0 where torch gives NaN",
)
def test_mean_over_an_empty_dim_is_nan_as_in_eager() -> None:
    """inputs ((0,):float32): x.mean(0) is nan in eager and 0.0 compiled (silently)."""
    _check(lambda m, x: x.double().mean(0).relu() + x.double().mean(0), torch.randn(0))


def test_multihead_attention_on_an_empty_static_batch() -> None:
    """inputs ((0, 3, 5):float32) static: onnxruntime 'Non-zero status code returned while
    running Reshape node' (found on main after the symbolic-shapes merge): its MatMulAddFusion
    reshaped the empty input with 0 read as "copy the dim"; sessions with a zero-size input
    now leave that fusion off."""
    mha = nn.MultiheadAttention(5, 1, batch_first=True)
    x = torch.randn(0, 3, 5)
    _check(lambda m, x: m["a"](x, x, x, need_weights=False)[0], x, dynamic=False, a=mha)


def test_squeeze_when_the_example_batch_is_1() -> None:
    """inputs ((1, 3):int64) dynamic: eager squeezes the batch away, the graph keeps it."""
    _check(lambda m, x: x.squeeze().unsqueeze(-1), torch.randint(0, 5, (1, 3)))


def test_squeeze_when_the_batch_is_1_at_run_time() -> None:
    """Example batch 3, checked again at batch 1: shape (1, 4) instead of eager's (4,)."""
    _check(lambda m, x: x.amax(-1, keepdim=True).squeeze(), torch.randint(0, 5, (3, 4, 4)))


def test_an_unbatched_gru_under_the_trace_budget() -> None:
    """inputs ((3, 4):float32) dynamic: "auto" takes dim 0 (the time steps) as the batch, and
    the trace at the batch sentinel unrolled a million steps (minutes). Under the budget the
    capture falls back to a static batch at once and the model matches eager."""
    outcome = _check(lambda m, x: m["g"](x)[0], torch.randn(3, 4), g=nn.GRU(4, 5))
    assert outcome.startswith("matched")


_SEGFAULT = """
    import torch, fxonnx
    from torch import nn
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 4).double()
        def forward(self, x):
            return self.lin(x.transpose(0, 1).double())
    m = M().eval()
    x = torch.randn(2, 3, 2)
    cm = fxonnx.compile(m, (x,), provider="cpu", verify=False, dynamic_dims=DIMS)
    torch.testing.assert_close(cm(x), m(x))
    ops = [n.op_type for n in cm.onnx_model.graph.node]
    assert ("Gemm" if DIMS == {0: {0: "a"}} else "MatMul") in ops, ops
"""


@pytest.mark.parametrize("dynamic", ["one", "two"])
def test_a_float64_matmul_after_a_transpose_and_a_cast_does_not_crash(dynamic: str) -> None:
    """Found as LSTM(bidirectional) -> .double() -> Linear(float64): the process died in
    onnxruntime 1.31's NchwcTransformer on Transpose -> Cast(float64) -> MatMul. With one
    dynamic leading dim the linear is a Gemm between Reshapes; with two it is that MatMul,
    and the exporter casts before the Transpose instead."""
    dims = "{0: {0: 'a'}}" if dynamic == "one" else "{0: {0: 'a', 1: 'b'}}"
    code = textwrap.dedent(_SEGFAULT).replace("DIMS", dims)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr.decode()[-300:]}"


_EMPTY_RECURRENT = """
    import tempfile, torch, fxonnx
    from torch import nn
    from fxonnx import InputError
    for layer in (nn.LSTM(5, 3, batch_first=True), nn.GRU(5, 3, batch_first=True)):
        cm = fxonnx.compile(layer.eval(), (torch.randn(2, 3, 5),), provider="cpu")
        served = fxonnx.load(cm.save_bundle(tempfile.mkdtemp() + "/b"))
        for call in (cm, served):
            try:
                call(torch.randn(0, 3, 5))
            except InputError as e:  # by the signature (batch >= 1) or the empty-input guard
                assert "'input'" in str(e) and ("zero-size dim" in str(e) or "is 0" in str(e)), e
            else:
                raise AssertionError("an empty batch was run")
    print("refused")
"""


def test_an_empty_batch_into_lstm_or_gru_is_refused_not_a_process_abort() -> None:
    """inputs ((0, 3, 5):float32) into LSTM/GRU: onnxruntime 1.31 calls std::terminate
    ("terminate called without an active exception"), killing the process."""
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_EMPTY_RECURRENT)], capture_output=True, timeout=300
    )
    assert run.returncode == 0 and b"refused" in run.stdout, run.stderr.decode()[-500:]
