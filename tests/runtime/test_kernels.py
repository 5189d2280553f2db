"""Models in dtypes onnxruntime's CPU kernels lack: bfloat16 runs (missing kernels in float32
between Casts, verified at bfloat16's tolerance), float64 without a kernel is refused with one
error naming the ops, the dtype and the fix."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch
from fn_module import Fn
from onnx import TensorProto
from torch import nn

import fxonnx
from fxonnx._errors import ExportError, RuntimeSessionError


def _cnn(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, groups=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 4),
            nn.Hardtanh(0, 6),
        )
        .eval()
        .to(dtype)
    )


def test_bfloat16_cnn_runs_and_matches_eager(tmp_path) -> None:  # noqa: ANN001
    model, x = _cnn(torch.bfloat16), torch.randn(2, 3, 12, 12, dtype=torch.bfloat16)
    cm = fxonnx.compile(model, (x,), provider="cpu")  # verified at bf16 tolerance, batch 2 and 1
    assert any(n.startswith("Conv x2 computed in float32") for n in cm.report.notes)
    assert any("cross into onnxruntime as float32" in n for n in cm.report.notes)
    x5 = torch.randn(5, 3, 12, 12, dtype=torch.bfloat16)
    got = cm(x5)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, model(x5).detach(), rtol=1.6e-2, atol=1e-2)
    # the saved file keeps bfloat16 I/O and loads in onnxruntime as it is
    cm.save(tmp_path / "bf16.onnx")
    saved = onnx.load(tmp_path / "bf16.onnx")
    assert saved.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    ort.InferenceSession(str(tmp_path / "bf16.onnx"), providers=["CPUExecutionProvider"])


def test_float16_cnn_needs_no_widening() -> None:
    model, x = _cnn(torch.float16), torch.randn(2, 3, 12, 12, dtype=torch.float16)
    cm = fxonnx.compile(model, (x,), provider="cpu")
    assert not any("computed in float32" in n for n in cm.report.notes)


def test_float64_cnn_is_refused_naming_op_dtype_and_fix() -> None:
    model, x = _cnn(torch.float64), torch.randn(2, 3, 12, 12, dtype=torch.float64)
    with pytest.raises(RuntimeSessionError) as e:
        fxonnx.compile(model, (x,), provider="cpu")
    assert e.value.message.startswith("onnxruntime has no cpu kernel for Conv (float64)")
    assert "ONNXRuntimeError" not in str(e.value)
    assert "model.float()" in e.value.hint


def test_float64_model_with_kernels_runs_in_float64() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    cm = fxonnx.compile(model, (x,), provider="cpu")  # fp64 tolerance
    assert not any("float32" in n for n in cm.report.notes)
    torch.testing.assert_close(cm(x), model(x).detach(), rtol=1e-7, atol=1e-9)


class PermuteLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.transpose(0, 1))  # (S, N, E) -> (N, S, E), as after a GRU


def test_bfloat16_transpose_into_a_widened_matmul_loads() -> None:
    """Transpose(bf16) -> Cast -> MatMul crashes onnxruntime 1.31 (segfault at level ALL): the
    cast goes before a float32 copy of the Transpose instead. (Two dynamic leading dims keep
    the linear a MatMul; with one it is a Gemm between Reshapes.)"""
    torch.manual_seed(0)
    model = PermuteLinear().to(torch.bfloat16).eval()
    x = torch.randn(5, 2, 32, dtype=torch.bfloat16)
    cm = fxonnx.compile(model, (x,), provider="cpu", dynamic_dims={0: {0: "seq", 1: "batch"}})
    assert any(n.startswith("MatMul x1 computed in float32") for n in cm.report.notes)
    ops = [(n.op_type, n.input[0]) for n in cm.onnx_model.graph.node]
    transposes = {n.output[0]: n for n in cm.onnx_model.graph.node if n.op_type == "Transpose"}
    casts = [n for n in cm.onnx_model.graph.node if n.op_type == "Cast"]
    assert not any(c.input[0] in transposes for c in casts), ops
    torch.testing.assert_close(cm(x), model(x).detach(), rtol=1.6e-2, atol=1e-2)


# -- integers and bool -------------------------------------------------------------------------

_B = torch.tensor([[True, False, True, False], [False, False, True, True]])
_C = torch.tensor([[False, True, True, False], [True, False, False, True]])
BOOL_OPS = {
    "where": (lambda a, b: torch.where(a, b, ~b), "Where"),
    "masked_fill": (lambda a, b: a.masked_fill(b, True), "Where"),
    "maximum": (torch.maximum, "Max"),
    "minimum": (torch.minimum, "Min"),
    "gt": (torch.gt, "Greater"),
    "le": (torch.le, "LessOrEqual"),
    "sort": (lambda a, b: torch.sort(a, dim=1, stable=True), "TopK"),
    "outer": (lambda a, b: torch.outer(a[0], b[1]), "Mul"),
    "prod": (lambda a, b: torch.prod(a, 1, dtype=torch.bool), "ReduceProd"),  # int32: no uint8
}


@pytest.mark.parametrize("name", list(BOOL_OPS))
def test_bool_ops_run_in_uint8_and_match_eager(name: str) -> None:
    fn, op = BOOL_OPS[name]
    carrier = "int32" if op == "ReduceProd" else "uint8"
    cm = fxonnx.compile(Fn(fn), (_B, _C), dynamic_dims=None, provider="cpu")
    assert any(
        n.startswith(f"{op} x1 computed in {carrier}") and "the result is the same" in n
        for n in cm.report.notes
    ), cm.report.notes
    want, got = fn(_B, _C), cm(_B, _C)
    for w, g in zip(*(w if isinstance(w, tuple) else (w,) for w in (want, got)), strict=True):
        assert w.dtype == g.dtype and torch.equal(w, g)
    onnx.checker.check_model(cm.onnx_model, full_check=True)  # still standard ONNX


@pytest.mark.parametrize(("dtype", "carrier"), [(torch.int32, "float64"), (torch.int16, "float32")])
def test_integer_max_pool_runs_in_an_exact_float(dtype: torch.dtype, carrier: str) -> None:
    info = torch.iinfo(dtype)
    x = torch.randint(info.min, info.max, (2, 3, 6, 6), generator=torch.Generator().manual_seed(0))
    x = x.to(dtype)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = info.max, info.max - 1  # neighbours float32 would merge
    model = nn.MaxPool2d(2, return_indices=True)
    cm = fxonnx.compile(model, (x,), provider="cpu")
    assert any(n.startswith(f"MaxPool x1 computed in {carrier}") for n in cm.report.notes)
    (want, want_i), (got, got_i) = model(x), cm(x)
    assert got.dtype == dtype and torch.equal(got, want) and torch.equal(got_i, want_i)


def test_int64_max_pool_is_refused_naming_op_dtype_and_fix() -> None:
    """Over a dynamic spatial dim int64 max pooling stays one MaxPool (the exact running max
    needs static windows), which onnxruntime lacks and float64 would round."""
    x = torch.randint(-(2**62), 2**62, (2, 3, 6, 6))
    with pytest.raises(RuntimeSessionError) as e:
        fxonnx.compile(nn.MaxPool2d(2), (x,), dynamic_dims={0: {0: "n", 2: "h"}}, provider="cpu")
    assert e.value.message.startswith("onnxruntime has no cpu kernel for MaxPool (int64)")
    assert "53-bit" in e.value.message and "ONNXRuntimeError" not in str(e.value)
    assert "x.float()" in e.value.hint


def test_int64_conv_is_refused_at_export() -> None:
    w = torch.randint(-3, 3, (3, 2, 3, 3))
    with pytest.raises(ExportError, match="ONNX Conv takes floats only") as e:
        fxonnx.export(Fn(torch.nn.functional.conv2d), (torch.randint(-3, 3, (1, 2, 5, 5)), w))
    assert "x.float()" in e.value.hint


class IntPlumbing(nn.Module):
    """Integer work that onnxruntime has every kernel for: no probing needed."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids * 3 + ids.size(1)) % 7 - ids.max(1, keepdim=True).values


def test_models_whose_integer_ops_have_kernels_are_not_probed(monkeypatch) -> None:  # noqa: ANN001
    import fxonnx.runtime._kernels as k

    calls = []
    real = k._load_error
    monkeypatch.setattr(k, "_load_error", lambda *a: calls.append(a) or real(*a))
    ids = torch.randint(0, 100, (2, 5))
    cm = fxonnx.compile(IntPlumbing(), (ids,), provider="cpu")
    assert calls == [] and torch.equal(cm(ids), IntPlumbing()(ids))


# required attributes of the probed ops, and the type of inputs that are not the probed dtype
_ATTRS = {"Cast": {"to": TensorProto.FLOAT}, "Concat": {"axis": 0}, "Split": {"num_outputs": 1}}


def _probe(op: str, dtype: int) -> onnx.ModelProto:
    schema = onnx.defs.get_schema(op, 21)
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    data = schema.inputs[1 if op == "Where" else 0].type_str
    inputs = []
    for k, formal in enumerate(schema.inputs):
        if formal.option == onnx.defs.OpSchema.FormalParameterOption.Optional:
            break
        if formal.type_str == data:
            elem = dtype
        else:
            types = allowed.get(formal.type_str, [formal.type_str])
            pick = "tensor(int64)" if "tensor(int64)" in types else types[0]
            elem = _ELEM[pick]
        inputs.append(onnx.helper.make_tensor_value_info(f"x{k}", elem, None))
    outs = [f"y{k}" for k in range(len(schema.outputs))]
    node = onnx.helper.make_node(op, [i.name for i in inputs], outs, **_ATTRS.get(op, {}))
    graph = onnx.helper.make_graph(
        [node], "p", inputs, [onnx.helper.make_empty_tensor_value_info(o) for o in outs]
    )
    return onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", 21)], ir_version=10
    )


_ELEM = {
    "tensor(bool)": TensorProto.BOOL,
    "tensor(int64)": TensorProto.INT64,
    "tensor(int32)": TensorProto.INT32,
    "tensor(float)": TensorProto.FLOAT,
}


def test_cpu_kernel_table_matches_onnxruntime() -> None:
    """Every (op, dtype) the probe-skipping table claims loads in onnxruntime on the CPU."""
    from fxonnx.runtime._kernels import _CPU_KERNELS, _load_error

    failing = [
        (op, onnx.TensorProto.DataType.Name(d), err)
        for op, dtypes in _CPU_KERNELS.items()
        for d in dtypes
        if (err := _load_error(_probe(op, d), "cpu")) is not None
    ]
    assert failing == []


class Wheres(nn.Module):
    def forward(self, c: torch.Tensor, x: torch.Tensor, f: torch.Tensor):  # noqa: ANN201
        return torch.where(c, x, -x), torch.where(c, f, -f), torch.where(c, c, ~c)


def test_where_widens_its_values_never_its_condition() -> None:
    """int16 and bool values widen (int32, uint8); the float Where is left alone, and every
    condition stays bool (ONNX Where takes a bool condition only)."""
    c = torch.tensor([[True, False, True], [False, False, True]])
    x, f = (
        torch.tensor([[-(2**15), 7, 2**15 - 1], [1, -2, 3]], dtype=torch.int16),
        torch.randn(2, 3),
    )
    cm = fxonnx.compile(Wheres(), (c, x, f), dynamic_dims=None, provider="cpu")
    widened = sorted(n.split(" between")[0] for n in cm.report.notes if "computed in" in n)
    assert widened == ["Where x1 computed in int32", "Where x1 computed in uint8"]
    for want, got in zip(Wheres()(c, x, f), cm(c, x, f), strict=True):
        assert want.dtype == got.dtype and torch.equal(want, got)
    onnx.checker.check_model(cm.onnx_model, full_check=True)


def test_export_writes_ops_onnx_defines_for_their_dtypes() -> None:
    """``fxonnx.export`` of bool max and an int32 max pool: ONNX defines neither, so the file
    computes them in an exactly wider type and passes onnx's full check; compile matches."""

    class Mixed(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple:
            return torch.maximum(a, b), torch.nn.functional.max_pool2d(c, 2)

    a, b = torch.rand(2, 5) > 0.5, torch.rand(2, 5) > 0.5
    c = torch.randint(-50, 50, (1, 2, 4, 4), dtype=torch.int32)
    model = fxonnx.export(Mixed(), (a, b, c), dynamic=False)
    onnx.checker.check_model(model, full_check=True)
    cm = fxonnx.compile(Mixed(), (a, b, c), dynamic=False)
    for got, want in zip(cm(a, b, c), Mixed()(a, b, c), strict=True):
        assert torch.equal(got, want)
    assert any("ONNX defines no bool Max" in n for n in cm.report.notes), cm.report.notes
