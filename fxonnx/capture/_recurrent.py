"""Recurrent layers as whole ops during capture, at any sequence length.

``aten.rnn_tanh``/``rnn_relu``/``gru`` are CompositeImplicit: to compute their output shapes,
fake-tensor tracing runs torch's decomposition, which unrolls one step per time step. With a
symbolic sequence length that would fix the length (and at a large size, never finish). During
capture ``recurrent_as_whole_ops`` reroutes ``torch._VF`` recurrent calls to ``fxonnx::``
custom ops of the same schema, whose fake kernels compute the shapes directly; the lowering
table lowers them like the ATen ops (to ONNX RNN/GRU/LSTM). Eager calls of those ops run the
ATen op, and autograd recomputes it, so the captured graph still runs and differentiates in
torch. ``PackedSequence`` inputs (the ``.data`` overloads) are refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from .._errors import CaptureError

_VF = torch._C._VariableFunctions


def _out_shapes(x: Tensor, hidden: int, bidirectional: bool) -> list[Any]:
    return [*x.shape[:-1], hidden * (2 if bidirectional else 1)]


def _fake_pair(
    x: Tensor, hx: Tensor, params: Sequence[Tensor], bidirectional: bool
) -> tuple[Tensor, Tensor]:
    hidden = params[1].shape[1]  # w_hh is [G*H, H]
    return x.new_empty(_out_shapes(x, hidden, bidirectional)), hx.new_empty(hx.shape)


def _define(name: str, real: Callable[..., Any]) -> Any:
    @torch.library.custom_op(f"fxonnx::{name}", mutates_args=())
    def op(
        input: Tensor,
        hx: Tensor,
        params: list[Tensor],
        has_biases: bool,
        num_layers: int,
        dropout: float,
        train: bool,
        bidirectional: bool,
        batch_first: bool,
    ) -> tuple[Tensor, Tensor]:
        out, h = real(
            input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
        )
        return out.clone(), h.clone()

    @op.register_fake
    def _(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):  # type: ignore[no-untyped-def]
        return _fake_pair(input, hx, params, bidirectional)

    _register_recompute(op, real)
    return op


@torch.library.custom_op("fxonnx::lstm", mutates_args=())
def _lstm(
    input: Tensor,
    hx: list[Tensor],
    params: list[Tensor],
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    out, h, c = _VF.lstm(
        input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
    )
    return out.clone(), h.clone(), c.clone()


@_lstm.register_fake
def _(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):  # type: ignore[no-untyped-def]
    h0, c0 = hx
    out_size = h0.shape[-1]  # proj_size when the LSTM projects, else hidden
    out = input.new_empty(_out_shapes(input, out_size, bidirectional))
    return out, h0.new_empty(h0.shape), c0.new_empty(c0.shape)


def _register_recompute(op: Any, real: Callable[..., Any]) -> None:
    """Autograd for ``op``: recompute the ATen op with grad and differentiate it."""

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        x, hx, params, *rest = inputs
        hxs = list(hx) if isinstance(hx, (list, tuple)) else [hx]
        ctx.listed = isinstance(hx, (list, tuple))
        ctx.n_hx, ctx.rest = len(hxs), rest
        ctx.save_for_backward(x, *hxs, *params)

    def backward(ctx: Any, *grads: Tensor) -> tuple:
        saved = [t.detach().requires_grad_(t.is_floating_point()) for t in ctx.saved_tensors]
        x, hxs, params = saved[0], saved[1 : 1 + ctx.n_hx], saved[1 + ctx.n_hx :]
        with torch.enable_grad():
            outs = real(x, hxs if ctx.listed else hxs[0], params, *ctx.rest)
            wanted = [t for t in saved if t.requires_grad]
            got = torch.autograd.grad(
                [o for o, g in zip(outs, grads, strict=True) if g is not None],
                wanted,
                [g for g in grads if g is not None],
                allow_unused=True,
            )
        by_id = {id(t): g for t, g in zip(wanted, got, strict=True)}
        gx = by_id.get(id(x))
        ghx = [by_id.get(id(h)) for h in hxs]
        gparams = [by_id.get(id(p)) for p in params]
        return (gx, ghx if ctx.listed else ghx[0], gparams) + (None,) * len(ctx.rest)

    op.register_autograd(backward, setup_context=setup_context)


_rnn_tanh = _define("rnn_tanh", _VF.rnn_tanh)
_rnn_relu = _define("rnn_relu", _VF.rnn_relu)
_gru = _define("gru", _VF.gru)
_register_recompute(_lstm, _VF.lstm)

_WHOLE = {
    _VF.rnn_tanh: torch.ops.fxonnx.rnn_tanh.default,
    _VF.rnn_relu: torch.ops.fxonnx.rnn_relu.default,
    _VF.gru: torch.ops.fxonnx.gru.default,
    _VF.lstm: torch.ops.fxonnx.lstm.default,
}
WHOLE_OPS = tuple(_WHOLE.values())


class recurrent_as_whole_ops(TorchFunctionMode):
    """Within the block, ``torch._VF`` recurrent calls run as the ``fxonnx::`` whole ops."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        op = _WHOLE.get(func)
        if op is not None:
            if len(args) != 9 or _packed(args):
                raise CaptureError(
                    f"{func.__name__} with a PackedSequence input cannot be captured",
                    hint="pad the batch (torch.nn.utils.rnn.pad_packed_sequence) and pass the "
                    "padded tensor; mask the padded steps after the layer",
                )
            return op(*args, **kwargs)
        return func(*args, **kwargs)


class recurrent_decomposed(TorchFunctionMode):
    """Within the block, ``torch._VF`` recurrent calls run torch's Python decompositions (one
    step per time step): for the training graph, which needs the per-step ops to differentiate
    and whose C++ recurrent kernels would read a symbolic batch as an int."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        aten_op = _ATEN.get(func)
        if aten_op is not None and len(args) == 9 and not _packed(args):
            from torch._decomp import decomposition_table

            return decomposition_table[aten_op](*args, **kwargs)
        return func(*args, **kwargs)


def _packed(args: tuple) -> bool:
    return isinstance(args[1], Tensor) and not args[1].is_floating_point()


_ATEN = {
    _VF.rnn_tanh: torch.ops.aten.rnn_tanh.input,
    _VF.rnn_relu: torch.ops.aten.rnn_relu.input,
    _VF.gru: torch.ops.aten.gru.input,
    _VF.lstm: torch.ops.aten.lstm.input,
}
