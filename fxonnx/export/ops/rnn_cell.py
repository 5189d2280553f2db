"""Single-step recurrent cells (RNNCell, GRUCell, LSTMCell) as Gemm and pointwise ops.

nn.*Cell modules unsqueeze an unbatched (1-D) input and create a zero hidden state in Python,
so the ATen ops always see (N, input) and (N, hidden). Gate order is torch's: GRU (r, z, n),
LSTM (i, f, g, o).
"""

from __future__ import annotations

from typing import Any

import torch

from ..._errors import ExportError
from .._ctx import LowerCtx, Value
from .._registry import lowers

aten = torch.ops.aten


def _affine(ctx: LowerCtx, x: Any, w: Any, b: Any) -> Value:
    """x @ w.T + b (b optional), one Gemm."""
    if ctx.rank(x) != 2:
        raise ExportError(
            f"{ctx.node.name}: recurrent cell on a {ctx.rank(x)}-D input (expects (N, features))",
            hint="call the nn.*Cell module, which adds the batch dim to a 1-D input",
        )
    bias = None if b is None else ctx.value(b)
    return ctx.emit("Gemm", ctx.value(x), ctx.value(w), bias, transB=1)


def _gates(ctx: LowerCtx) -> tuple[Value, Value]:
    """(input gates, hidden gates) of ``op(input, hx, w_ih, w_hh, b_ih=None, b_hh=None)``."""
    x, hx, w_ih, w_hh, b_ih, b_hh = (ctx.arg(i) for i in range(6))
    h = hx[0] if isinstance(hx, (list, tuple)) else hx
    return _affine(ctx, x, w_ih, b_ih), _affine(ctx, h, w_hh, b_hh)


@lowers(aten.rnn_tanh_cell.default, aten.rnn_relu_cell.default)
def rnn_cell(ctx: LowerCtx) -> Value:
    """rnn_tanh_cell / rnn_relu_cell(Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh,
    Tensor? b_ih=None, Tensor? b_hh=None) -> Tensor: act(x W_ih^T + b_ih + h W_hh^T + b_hh)"""
    gi, gh = _gates(ctx)
    act = "Tanh" if ctx.node.target == aten.rnn_tanh_cell.default else "Relu"
    return ctx.emit(act, ctx.emit("Add", gi, gh))


@lowers(aten.gru_cell.default)
def gru_cell(ctx: LowerCtx) -> Value:
    """gru_cell(Tensor input, Tensor hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih=None,
    Tensor? b_hh=None) -> Tensor: r = s(i_r + h_r), z = s(i_z + h_z),
    n = tanh(i_n + r * h_n), h' = n + z * (h - n)"""
    gi, gh = _gates(ctx)
    i_r, i_z, i_n = ctx.emit("Split", gi, outputs=3, axis=1, num_outputs=3)
    h_r, h_z, h_n = ctx.emit("Split", gh, outputs=3, axis=1, num_outputs=3)
    r = ctx.emit("Sigmoid", ctx.emit("Add", i_r, h_r))
    z = ctx.emit("Sigmoid", ctx.emit("Add", i_z, h_z))
    n = ctx.emit("Tanh", ctx.emit("Add", i_n, ctx.emit("Mul", r, h_n)))
    h = ctx.input(1)
    return ctx.emit("Add", n, ctx.emit("Mul", z, ctx.emit("Sub", h, n)))


@lowers(aten.lstm_cell.default)
def lstm_cell(ctx: LowerCtx) -> list[Value]:
    """lstm_cell(Tensor input, Tensor[] hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih=None,
    Tensor? b_hh=None) -> (Tensor, Tensor): gates i, f, g, o of x W_ih^T + h W_hh^T + b;
    c' = s(f) c + s(i) tanh(g), h' = s(o) tanh(c')"""
    gi, gh = _gates(ctx)
    gates = ctx.emit("Add", gi, gh)
    i, f, g, o = ctx.emit("Split", gates, outputs=4, axis=1, num_outputs=4)
    c = ctx.value(ctx.arg(1)[1])
    c_new = ctx.emit(
        "Add",
        ctx.emit("Mul", ctx.emit("Sigmoid", f), c),
        ctx.emit("Mul", ctx.emit("Sigmoid", i), ctx.emit("Tanh", g)),
    )
    h_new = ctx.emit("Mul", ctx.emit("Sigmoid", o), ctx.emit("Tanh", c_new))
    return [h_new, c_new]
