"""Sessions: inputs are checked before onnxruntime sees them; CUDA only when it really works."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import fxonnx
from fxonnx.runtime import Session, _providers


@pytest.fixture(scope="module")
def compiled() -> fxonnx.CompiledModel:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    return fxonnx.compile(model, (torch.randn(2, 4),), provider="cpu")


def test_wrong_count_names_the_expected_inputs(compiled: fxonnx.CompiledModel) -> None:
    with pytest.raises(fxonnx.InputError, match=r"expected 1 input\(s\) \['input'\], got 2"):
        compiled.session.run_numpy([np.zeros((2, 4), np.float32)] * 2)


def test_wrong_dtype_names_the_input_and_the_fix(compiled: fxonnx.CompiledModel) -> None:
    with pytest.raises(
        fxonnx.InputError, match=r"'input' has dtype float64, expected float32"
    ) as e:
        compiled(torch.zeros(2, 4, dtype=torch.float64))
    assert "torch.float32" in str(e.value)


def test_wrong_rank_and_static_dim(compiled: fxonnx.CompiledModel) -> None:
    with pytest.raises(fxonnx.InputError, match=r"has 3 dims \[2, 4, 1\], expected 2"):
        compiled(torch.zeros(2, 4, 1))
    with pytest.raises(fxonnx.InputError, match=r"dim 1 is 5, expected 4"):
        compiled(torch.zeros(2, 5))


def test_cuda_tensor_on_a_cpu_session_is_refused(compiled: fxonnx.CompiledModel) -> None:
    arr = np.zeros((2, 4), np.float32)
    with pytest.raises(fxonnx.InputError, match=r"is on cuda:0 but the session runs on the CPU"):
        compiled.session.validate([arr], devices=["cuda:0"])


def test_batch_sizes_must_agree_across_inputs() -> None:
    class Two(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a + b

    cm = fxonnx.compile(Two(), (torch.randn(2, 3), torch.randn(2, 3)), provider="cpu")
    with pytest.raises(
        fxonnx.InputError,
        match=r"input 'b' dim 0 \('batch'\) is 4 but input 'a' dim 0 \('batch'\) is 3",
    ):
        cm(torch.randn(3, 3), torch.randn(4, 3))


def test_unusable_cuda_raises_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_providers, "cuda_status", lambda: (False, "no GPU in this test"))
    with pytest.raises(fxonnx.RuntimeSessionError, match="provider='cuda' was asked for") as e:
        _providers.resolve("cuda")
    assert "no GPU in this test" in str(e.value) and "provider='auto'" in str(e.value)


def test_auto_falls_back_to_cpu_with_a_single_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_providers, "cuda_status", lambda: (False, "no GPU in this test"))
    monkeypatch.setattr(_providers, "_warned_fallback", False)
    monkeypatch.setattr(_providers.ort, "get_available_providers", lambda: [_providers.CUDA])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _providers.resolve("auto") == [_providers.CPU]
        assert _providers.resolve("auto") == [_providers.CPU]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "no GPU in this test" in messages[0]


def test_the_real_cuda_probe_gives_a_reason_without_flooding_stderr(
    capfd: pytest.CaptureFixture,
) -> None:
    _providers.cuda_status.cache_clear()
    usable, reason = _providers.cuda_status()
    err = capfd.readouterr().err
    assert isinstance(usable, bool) and reason
    assert err.count("\n") <= 2, err[:2000]


def test_unknown_provider_is_a_usage_error() -> None:
    with pytest.raises(fxonnx.RuntimeSessionError, match="unknown provider 'tpu'"):
        _providers.resolve("tpu")


def test_broken_model_bytes_give_one_line() -> None:
    with pytest.raises(fxonnx.RuntimeSessionError, match="could not load the model"):
        Session(b"not an onnx model")


def _cuda_ready() -> bool:
    return torch.cuda.is_available() and _providers.cuda_status()[0]


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_ready(), reason="needs a GPU and a working onnxruntime CUDA provider")
def test_cuda_tensors_in_and_out_through_io_binding() -> None:
    model, inputs = fxonnx.models.get("resnet18", batch=2)
    cm = fxonnx.compile(model, inputs, provider="cuda")
    assert cm.provider == "cuda"
    x = torch.randn(4, 3, 224, 224, device="cuda")
    y = cm(x)
    assert y.is_cuda and y.shape == (4, 1000)
    torch.testing.assert_close(y.cpu(), model(x.cpu()).detach(), rtol=1e-3, atol=1e-3)


class _Masked(nn.Module):
    """Two inputs of the same dynamic shape: onnxruntime's memory-pattern key (the XOR of
    every input dim) is then the same at every batch size."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x.masked_fill(mask, -1e4), -1) * 2


class _WithState(nn.Module):
    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return x.sum(1, keepdim=True) + h[0]


@pytest.mark.parametrize(
    ("model", "make", "pinned"),
    [
        (_Masked(), lambda b: (torch.randn(b, 6), torch.rand(b, 6) > 0.5), True),
        (_WithState(), lambda b: (torch.randn(b, 6), torch.randn(1, b, 6)), True),
        (nn.Linear(6, 3), lambda b: (torch.randn(b, 6),), False),
    ],
    ids=["same_shapes", "batch_in_two_inputs", "one_input"],
)
def test_a_pinned_memory_pattern_gets_a_session_verification_never_ran(model, make, pinned):
    """When every dynamic dim appears an even number of times among the inputs, compile
    serves from a second session, so the user's first call, not verification's example,
    plans onnxruntime's memory for every size. Results are unchanged."""
    cm = fxonnx.compile(model.eval(), make(2), provider="cpu")
    assert cm.session.pattern_pinned is pinned
    # verification ran the example and a second batch size on the session it used
    assert (len(cm.session._seen_torch) == 0) is pinned
    for batch in (5, 1):
        x = make(batch)
        with torch.no_grad():
            torch.testing.assert_close(cm(*x), model(*x), rtol=1e-5, atol=1e-6)
    if pinned:  # two inputs that must agree on the batch: checked on the new session too
        with pytest.raises(fxonnx.InputError, match="batch"):
            cm(*make(3)[:1], *make(4)[1:])


def test_pattern_pinned_reads_the_input_dims() -> None:
    static = fxonnx.compile(
        nn.Linear(6, 3).eval(), (torch.randn(2, 6),), dynamic=False, provider="cpu"
    )
    assert not static.session.pattern_pinned  # no dynamic dim: one shape, one key


def test_cpu_sessions_keep_add_and_layer_norm_unfused(tmp_path) -> None:
    """onnxruntime's CPU SkipLayerNormalization is slower than the Add and LayerNormalization
    it replaces (``SLOW_CPU_FUSIONS``); the session's optimized graph keeps the two, and the
    numbers are the graph's."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    shape = [2, 5, 8]
    rng = np.random.default_rng(0)
    gamma, beta = rng.random(8, dtype=np.float32), rng.random(8, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["x", "r"], ["s"]),
            helper.make_node("LayerNormalization", ["s", "g", "b"], ["y"], epsilon=1e-5),
        ],
        "residual_norm",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "r")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(gamma, "g"), numpy_helper.from_array(beta, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = Session(model.SerializeToString(), options=opts)
    ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops, ops
    x, r = (
        rng.standard_normal(shape, dtype=np.float32),
        rng.standard_normal(shape, dtype=np.float32),
    )
    (y,) = session.run_numpy([x, r])
    want = torch.nn.functional.layer_norm(
        torch.from_numpy(x + r), (8,), torch.from_numpy(gamma), torch.from_numpy(beta), 1e-5
    )
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 0, 6), (0, 4, 6)])
def test_a_static_zero_size_matmul_plus_bias_runs(shape: tuple[int, ...]) -> None:
    """onnxruntime's MatMulAddFusion reshapes a static [3, 0, 6] input to [3, 6] for its Gemm
    (0 read as "copy the dim") and fails at run time; a Session with a zero-size input leaves
    that fusion off, and the empty result has eager's shape."""
    w, b = torch.randn(6, 4), torch.randn(4)

    class Affine(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ w + b

    x = torch.randn(shape)
    cm = fxonnx.compile(Affine(), (x,), dynamic_dims=None, provider="cpu")
    assert [n.op_type for n in cm.onnx_model.graph.node] == ["MatMul", "Add"]
    got = cm(x)
    assert got.shape == Affine()(x).shape == (*shape[:2], 4)
