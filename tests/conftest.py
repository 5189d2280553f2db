"""Shared test helpers: compare an exported ONNX model with eager PyTorch at several batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.utils._pytree as pytree

from fxonnx.capture import capture
from fxonnx.export import lower


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--opinfo",
        choices=("fast", "full"),
        default="fast",
        help="OpInfo conformance tier (tests/conformance): 'fast' runs the first samples of "
        "each op and dtype, 'full' every sample (the extra ones are marked slow)",
    )


TOLERANCE = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-7, 1e-9), torch.float16: (1e-2, 1e-3)}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def assert_onnx_matches(
    module: torch.nn.Module,
    make_inputs: Callable[[int], tuple],
    batches: Sequence[int] = (2, 5),
    *,
    batch_dims: object = "auto",
    dynamic: bool = True,
    check: bool = True,
) -> onnx.ModelProto:
    """Capture at ``batches[0]``, lower, then run onnxruntime at every batch size and compare each
    output with eager (fp32: rtol 1e-4, atol 1e-5). With ``dynamic`` the batch must really have
    stayed dynamic. Returns the ONNX model for further checks."""
    module = module.eval()
    example = make_inputs(batches[0])
    captured = capture(module, example, batch_dims=batch_dims, dynamic=dynamic)
    assert captured.shapes.dynamic == dynamic, f"dims are static: {captured.notes}"
    model = lower(captured)
    if check:
        onnx.checker.check_model(model, full_check=True)
    session = _session(model)
    for batch in batches if captured.shapes.dynamic else batches[:1]:
        inputs = make_inputs(batch)
        with torch.no_grad():
            expected = [
                t for t in pytree.tree_leaves(module(*inputs)) if isinstance(t, torch.Tensor)
            ]
        feeds = {
            spec.name: t.numpy()
            for spec, t in zip(captured.user_inputs, pytree.tree_leaves(inputs), strict=True)
        }
        got = session.run(None, feeds)
        assert len(got) == len(expected), f"{len(got)} outputs, eager has {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            e = e.detach().numpy()
            assert g.shape == e.shape, f"output {i} at batch {batch}: {g.shape} vs {e.shape}"
            assert g.dtype == e.dtype, f"output {i}: dtype {g.dtype} vs {e.dtype}"
            rtol, atol = TOLERANCE.get(torch.from_numpy(e).dtype, (0, 0))
            np.testing.assert_allclose(
                g, e, rtol=rtol, atol=atol, err_msg=f"output {i} at batch {batch}"
            )
    return model


@pytest.fixture
def onnx_matches() -> Callable[..., onnx.ModelProto]:
    return assert_onnx_matches
