"""fallback="torch.onnx": hand the captured graph to torch.onnx.export (explicit, never default)."""

from __future__ import annotations

import importlib.util
import io
import logging

import onnx
import torch
from torch import nn

from .._dimexpr import evaluate
from .._errors import ExportError
from ..capture import Captured

log = logging.getLogger(__name__)


class _CapturedModule(nn.Module):
    """The captured graph as a module whose only inputs are the user's tensors."""

    def __init__(self, captured: Captured) -> None:
        super().__init__()
        self.gm = captured.gm
        self.state_names = [s.name for s in captured.state_inputs]
        for i, name in enumerate(self.state_names):
            self.register_buffer(f"s{i}", captured.state[name])

    def forward(self, *user: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = [getattr(self, f"s{i}") for i in range(len(self.state_names))]
        return tuple(self.gm(*state, *user))


def require_torch_onnx() -> None:
    """torch.onnx.export(dynamo=True) imports onnxscript, which torch does not install itself."""
    if importlib.util.find_spec("onnxscript") is None:
        raise ExportError(
            "torch.onnx.export(dynamo=True) needs the onnxscript package, which is not installed; "
            "install it with: pip install 'fxonnx[torch-onnx]' (or pip install onnxscript)"
        )


def export_with_torch_onnx(captured: Captured, opset: int) -> onnx.ModelProto:
    """Export the same captured graph with torch.onnx (dynamo), named dims dynamic as captured
    (dims that are expressions of names stay at their example size)."""
    require_torch_onnx()
    module = _CapturedModule(captured).eval()
    sizes = {s.name: max(2, s.example) for s in captured.shapes.symbols}
    examples = tuple(
        torch.zeros([evaluate(d, sizes) or 2 for d in s.shape], dtype=s.dtype)
        for s in captured.user_inputs
    )
    dynamic_shapes = None
    if captured.shapes.dynamic:
        named = {n: torch.export.Dim(n) for n in sizes}
        dynamic_shapes = tuple(
            {d: named[size] for d, size in enumerate(s.shape) if size in named} or None
            for s in captured.user_inputs
        )
    try:
        program = torch.onnx.export(
            module,
            examples,
            dynamo=True,
            opset_version=opset,
            verbose=False,
            input_names=[s.name for s in captured.user_inputs],
            output_names=[s.name for s in captured.outputs],
            dynamic_shapes=(dynamic_shapes,) if dynamic_shapes else None,
        )
        buf = io.BytesIO()
        onnx.save_model(program.model_proto, buf)
        return onnx.load_model_from_string(buf.getvalue())
    except Exception as e:
        raise ExportError(f"the torch.onnx fallback failed too: {type(e).__name__}: {e}") from e
