"""One exception family for every stage, so callers (and the CLI) can catch by stage."""

from __future__ import annotations


class FxonnxError(Exception):
    """Base of every error fxonnx raises on purpose; `hint` says how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")
        self.message = message
        self.hint = hint


class CaptureError(FxonnxError):
    """The nn.Module could not be turned into an ATen-level graph."""


class PassError(FxonnxError):
    """An optimization pass failed or broke the numbers."""


class ExportError(FxonnxError):
    """The captured graph could not be lowered to ONNX or written to disk."""


class DynamicDimError(ExportError):
    """A lowering rule cannot keep a dim dynamic (``squeeze()`` over it would change the output's
    rank with its size); under ``dynamic_dims="auto"`` compile retries with every dim static."""


class UnsupportedOpError(ExportError):
    """One or more ATen ops have no lowering rule; `ops` lists every one of them at once."""

    def __init__(self, ops: list[UnsupportedOp]) -> None:
        lines = [
            f"  {op.target} (node {op.node}{', ' + op.source if op.source else ''})" for op in ops
        ]
        names = sorted({op.target for op in ops})
        super().__init__(
            f"{len(ops)} node(s) use ops with no ONNX lowering: {', '.join(names)}\n"
            + "\n".join(lines),
            hint="rewrite those lines with supported ops, or pass fallback='torch.onnx' to hand "
            "the graph to torch.onnx.export",
        )
        self.ops = ops


class UnsupportedOp:
    """One node whose op has no lowering rule, with the user's source line when known."""

    __slots__ = ("node", "source", "target")

    def __init__(self, target: str, node: str, source: str | None) -> None:
        self.target = target
        self.node = node
        self.source = source

    def __repr__(self) -> str:
        return f"UnsupportedOp({self.target!r}, node={self.node!r}, source={self.source!r})"


class RuntimeSessionError(FxonnxError):
    """onnxruntime could not create a session or run it."""


class InputError(RuntimeSessionError, ValueError):
    """Inputs handed to a compiled model do not match its signature."""


class VerificationError(FxonnxError):
    """Compiled outputs or gradients differ from eager PyTorch beyond tolerance."""

    def __init__(self, message: str, report: object = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report
