"""The fuzzer's property: compile either matches eager at two shapes or raises one FxonnxError
that names what it refused. Shared by the default run, the slow run and the regression tests."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from typing import Any

import onnx
import torch
import torch.utils._pytree as pytree
from torch import nn

import fxonnx
from fxonnx import FxonnxError, InputError
from fxonnx.capture import _trace
from fxonnx.capture._budget import guarded_trace

# explicit per-dtype tolerances: (rtol, atol at unit scale); atol grows with the values' scale
TOLERANCE = {
    torch.float32: (1e-4, 1e-5),
    torch.float64: (1e-7, 1e-10),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}

_NAMES = re.compile(r"aten\.|\bnode\b|\binput\b|\bop\b|\boutput\b|\bdim\b|'[\w.]+'", re.I)


@contextlib.contextmanager
def bounded_tracing() -> Iterator[None]:
    """Every capture's make_fx trace runs under ``guarded_trace`` (what the one-line hook in
    ``_trace.py`` will do), so a model whose trace grows with a tensor's size fails fast."""
    real = _trace.make_fx

    def guarded(fn: Any, **kw: Any) -> Any:
        traced = real(fn, **kw)
        model = fn.__self__.model  # make_fx traces the bound _Tracer._fn

        def run(*args: Any) -> Any:
            with guarded_trace(model):
                return traced(*args)

        return run

    _trace.make_fx = guarded
    try:
        yield
    finally:
        _trace.make_fx = real


def dynamic_kwargs(dynamic: bool) -> dict[str, Any]:
    """The one place the tests spell the dynamic-dim API: the batch dynamic, or nothing."""
    return {"dynamic_dims": "auto" if dynamic else None}


def compile_case(model: nn.Module, inputs: tuple, dynamic: bool, **kw: Any) -> Any:
    """``fxonnx.compile`` with the compiler's own verification off: the tests check it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # static-batch fallbacks warn; the property covers them
        return fxonnx.compile(
            model, inputs, verify=False, provider="cpu", **dynamic_kwargs(dynamic), **kw
        )


def assert_clear_error(err: FxonnxError) -> None:
    """An FxonnxError counts as a clear refusal when its message names an op, node or input."""
    msg = str(err)
    assert msg.strip(), f"{type(err).__name__} with an empty message"
    assert _NAMES.search(msg), f"{type(err).__name__} names no op, node or input: {msg}"


def assert_matches(
    got: Any, want: Any, scale: float = 1.0, what: str = "output", floor: Any = None
) -> None:
    """Every tensor leaf equal in dtype and shape, and close: floats within the tolerance of
    their dtype, or of ``floor`` when that is looser (a float64 output computed through a
    float32 layer carries float32 rounding)."""
    got_leaves = [t for t in pytree.tree_leaves(got) if isinstance(t, torch.Tensor)]
    want_leaves = [t for t in pytree.tree_leaves(want) if isinstance(t, torch.Tensor)]
    assert len(got_leaves) == len(want_leaves), f"{what}: {len(got_leaves)} vs {len(want_leaves)}"
    for i, (g, w) in enumerate(zip(got_leaves, want_leaves, strict=True)):
        assert g.dtype == w.dtype, f"{what}[{i}] dtype {g.dtype}, eager {w.dtype}"
        assert g.shape == w.shape, f"{what}[{i}] shape {tuple(g.shape)}, eager {tuple(w.shape)}"
        if w.dtype.is_floating_point:
            rtol, atol = max(TOLERANCE[w.dtype], TOLERANCE.get(floor, (0.0, 0.0)))
            finite = w[torch.isfinite(w)]
            mag = max(scale, float(finite.abs().max()) if finite.numel() else 0.0, 1.0)
            torch.testing.assert_close(
                g,
                w,
                rtol=rtol,
                atol=atol * mag,
                equal_nan=True,
                msg=lambda m, i=i: f"{what}[{i}]: {m}",
            )
        else:
            assert torch.equal(g, w), f"{what}[{i}] differs: {g} vs eager {w}"


def dynamic_sizes(onnx_model: onnx.ModelProto) -> list[dict[int, str]]:
    """Per graph input, its dims that are named (dynamic) in the ONNX model."""
    return [
        {j: d.dim_param for j, d in enumerate(i.type.tensor_type.shape.dim) if d.dim_param}
        for i in onnx_model.graph.input
        if not any(i.name == init.name for init in onnx_model.graph.initializer)
    ]


def resized(inputs: tuple, dims: list[dict[int, str]], seed: int = 1) -> tuple | None:
    """New example inputs with every dynamic dim at another size (one size per dim name)."""
    if not any(dims):
        return None
    gen = torch.Generator().manual_seed(seed)
    sizes: dict[str, int] = {}
    out = []
    for t, named in zip(inputs, dims, strict=True):
        shape = list(t.shape)
        for j, name in named.items():
            sizes.setdefault(name, 3 if shape[j] in (1, 2) else (2 if shape[j] == 0 else 1))
            shape[j] = sizes[name]
        if t.dtype.is_floating_point:
            out.append(torch.randn(shape, generator=gen, dtype=torch.float64).to(t.dtype))
        else:
            out.append(torch.randint(-5, 6, shape, generator=gen, dtype=t.dtype))
    return tuple(out)


def loosest_float(model: nn.Module, inputs: tuple) -> torch.dtype | None:
    """The least precise float dtype among the inputs, parameters and the model's own record
    of the dtypes it computes in (``model.float_dtypes``, set by the fuzzer's builder)."""
    dtypes = {t.dtype for t in inputs if t.is_floating_point()}
    dtypes |= {p.dtype for p in model.parameters()}
    dtypes |= set(getattr(model, "float_dtypes", ()))
    return max(dtypes, key=lambda d: TOLERANCE[d][0], default=None)


def check_compile(model: nn.Module, inputs: tuple, dynamic: bool, scale: float = 1.0) -> str:
    """The property. Returns "refused", "matched" or "matched at 2 shapes" for statistics."""
    try:
        cm = compile_case(model, inputs, dynamic)
    except FxonnxError as e:
        assert_clear_error(e)
        return "refused"
    with torch.no_grad():
        want = model(*inputs)
    floor = loosest_float(model, inputs)
    try:
        got = cm(*inputs)
    except InputError as e:  # the input refused by name (an empty batch into an LSTM)
        assert_clear_error(e)
        return "refused"
    assert_matches(got, want, scale, floor=floor)
    dims = dynamic_sizes(cm.onnx_model)
    if len(dims) != len(inputs):
        return "matched"  # constant leaves folded away; the example check stands
    other = resized(inputs, dims)
    if other is None:
        return "matched"
    try:
        with torch.no_grad():
            want = model(*other)
    except Exception:
        # the "auto" batch heuristic tied a dim that only happened to have the batch's size:
        # eager refuses the resized inputs, so there is nothing to compare at that size
        return "matched"
    try:
        got = cm(*other)
    except InputError as e:  # a static dim refused by name: the graph did not claim it dynamic
        raise AssertionError(
            f"the ONNX model says {dims} are dynamic but the call refused: {e}"
        ) from e
    assert_matches(got, want, 1.0, what="output at the second shape", floor=floor)
    return "matched at 2 shapes"
