"""Recurrent layers (GRU, LSTM, Elman RNN) as ONNX GRU / LSTM / RNN, one ONNX op per layer.

torch stacks gate weights as GRU (r, z, n) and LSTM (i, f, g, o); ONNX wants GRU (z, r, h) and
LSTM (i, o, f, c). The weights stay the model's initializers and are reordered with one Gather per
tensor, which onnxruntime constant-folds when the session is created. torch's GRU applies the reset
gate after the recurrent matmul, which is ONNX's ``linear_before_reset=1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import onnx
import torch
from onnx import helper
from torch import fx

from ..._errors import ExportError
from ...capture import _recurrent as _whole_ops  # noqa: F401  (defines the fxonnx:: ops)
from .._builder import GraphBuilder
from .._ctx import LowerCtx, Value
from .._dtypes import onnx_dtype
from .._registry import lowers

aten = torch.ops.aten
fxonnx_ops = torch.ops.fxonnx
_I64 = torch.int64


@dataclass(frozen=True)
class _Cell:
    onnx_op: str
    gates: int
    order: tuple[int, ...]  # torch gate index for each ONNX gate
    attrs: tuple[tuple[str, Any], ...] = ()


_GRU = _Cell("GRU", 3, (1, 0, 2), (("linear_before_reset", 1),))
_LSTM = _Cell("LSTM", 4, (0, 3, 1, 2))
_TANH = _Cell("RNN", 1, (0,), (("activations", "Tanh"),))
_RELU = _Cell("RNN", 1, (0,), (("activations", "Relu"),))


def _check(ctx: LowerCtx, params: Sequence[Any], has_biases: bool, layers: int, dirs: int) -> None:
    """Refuse what the ONNX recurrent ops cannot express."""
    name = ctx.node.name
    dropout, train = ctx.arg(5), ctx.arg(6)
    if train and dropout > 0 and layers > 1:
        raise ExportError(
            f"{name}: recurrent layer in training mode with dropout={dropout} between layers; "
            "ONNX recurrent ops have no dropout",
            hint="call model.eval() before exporting",
        )
    per = len(params) // (layers * dirs)
    if per != (4 if has_biases else 2) or per * layers * dirs != len(params):
        raise ExportError(
            f"{name}: {len(params)} weight tensors for {layers} layer(s) x {dirs} direction(s)"
        )


def _gates(ctx: LowerCtx, w: Value, cell: _Cell, hidden: int) -> Value:
    """Rows of ``w`` (torch gate order, ``gates * hidden`` rows) in ONNX gate order."""
    if cell.gates == 1:
        return w
    rows = [g * hidden + i for g in cell.order for i in range(hidden)]
    return ctx.emit("Gather", w, ctx.const(rows, _I64), axis=0)


def _layer_weights(
    ctx: LowerCtx, params: Sequence[Any], cell: _Cell, hidden: int, dirs: int
) -> tuple[Value, Value, Value | None]:
    """W [dirs, G*H, in], R [dirs, G*H, H] and B [dirs, 2*G*H] (None without biases) of one layer;
    ``params`` holds (w_ih, w_hh[, b_ih, b_hh]) per direction."""
    per = len(params) // dirs
    zero = ctx.const([0], _I64)
    ws, rs, bs = [], [], []
    for d in range(dirs):
        p = [ctx.value(t) for t in params[d * per : (d + 1) * per]]
        ws.append(ctx.emit("Unsqueeze", _gates(ctx, p[0], cell, hidden), zero))
        rs.append(ctx.emit("Unsqueeze", _gates(ctx, p[1], cell, hidden), zero))
        if per == 4:
            b = ctx.emit(
                "Concat", _gates(ctx, p[2], cell, hidden), _gates(ctx, p[3], cell, hidden), axis=0
            )
            bs.append(ctx.emit("Unsqueeze", b, zero))

    def stack(vs: list[Value]) -> Value:
        return vs[0] if len(vs) == 1 else ctx.emit("Concat", *vs, axis=0)

    return stack(ws), stack(rs), (stack(bs) if bs else None)


_ZEROS = (aten.zeros.default, aten.new_zeros.default, aten.zeros_like.default)
_FULL = {aten.full.default: 1, aten.new_full.default: 2, aten.full_like.default: 1}


def _zero_state(h: Any) -> bool:
    """Whether the state ``h`` (a Node) is all zeros by construction: torch's default state for
    ``hx=None`` is ``zeros(layers * dirs, N, H)``. ONNX's initial_h and initial_c default to
    0, so such a state is simply omitted (no Shape -> Concat -> ConstantOfShape -> Split to
    build it at the run-time batch)."""
    if not isinstance(h, fx.Node) or h.op != "call_function":
        return False
    if h.target in _ZEROS:
        return True
    at = _FULL.get(h.target)
    fill = h.args[at] if at is not None and len(h.args) > at else None
    return isinstance(fill, (int, float)) and not isinstance(fill, bool) and fill == 0


def _per_layer(ctx: LowerCtx, h: Value | None, layers: int, dirs: int) -> list[Value | None]:
    """Split a [layers*dirs, N, H] state into one [dirs, N, H] piece per layer."""
    if h is None or layers == 1:
        return [h] * layers
    return ctx.emit("Split", h, ctx.const([dirs] * layers, _I64), axis=0, outputs=layers)


def _recurrent(ctx: LowerCtx, cell: _Cell, h0: Any, c0: Any = None) -> list[Value]:
    """The shared lowering of ``gru``/``lstm``/``rnn_*`` ``.input``: returns
    [output, h_n] (+ c_n for LSTM)."""
    x, params, has_biases, layers = ctx.arg(0), list(ctx.arg(2)), ctx.arg(3), ctx.arg(4)
    bidirectional, batch_first = ctx.arg(7), ctx.arg(8)
    dirs = 2 if bidirectional else 1
    _check(ctx, params, has_biases, layers, dirs)
    hidden = ctx.static_shape(params[1])[1]  # w_hh is [G*H, H]
    attrs = dict(cell.attrs)
    if "activations" in attrs:
        attrs["activations"] = [attrs["activations"]] * dirs
    direction = "bidirectional" if bidirectional else "forward"
    seq = ctx.value(x)
    if batch_first:
        seq = ctx.emit("Transpose", seq, perm=[1, 0, 2])
    h0 = None if _zero_state(h0) else h0
    c0 = None if _zero_state(c0) else c0
    hs = _per_layer(ctx, None if h0 is None else ctx.value(h0), layers, dirs)
    cs = _per_layer(ctx, None if c0 is None else ctx.value(c0), layers, dirs)
    per = len(params) // layers
    h_n, c_n = [], []
    for layer in range(layers):
        w, r, b = _layer_weights(ctx, params[layer * per : (layer + 1) * per], cell, hidden, dirs)
        state = [hs[layer]] if cell is not _LSTM else [hs[layer], cs[layer]]
        outs = ctx.emit(
            cell.onnx_op,
            seq,
            w,
            r,
            b,
            None,  # sequence_lens: every sequence runs to the end
            *state,
            outputs=3 if cell is _LSTM else 2,
            hidden_size=hidden,
            direction=direction,
            **attrs,
        )
        # Y is [T, dirs, N, H]; the next layer (and torch) wants [T, N, dirs*H]
        if dirs == 1:
            seq = ctx.emit("Squeeze", outs[0], ctx.const([1], _I64))
        else:
            y = ctx.emit("Transpose", outs[0], perm=[0, 2, 1, 3])
            seq = ctx.emit("Reshape", y, ctx.const([0, 0, dirs * hidden], _I64))
        h_n.append(outs[1])
        if cell is _LSTM:
            c_n.append(outs[2])
    if batch_first:
        seq = ctx.emit("Transpose", seq, perm=[1, 0, 2])
    result = [seq, _cat(ctx, h_n)]
    return result + ([_cat(ctx, c_n)] if cell is _LSTM else [])


def _cat(ctx: LowerCtx, values: list[Value]) -> Value:
    return values[0] if len(values) == 1 else ctx.emit("Concat", *values, axis=0)


@lowers(aten.gru.input, fxonnx_ops.gru.default)
def gru(ctx: LowerCtx) -> list[Value]:
    """gru.input(Tensor input, Tensor hx, Tensor[] params, bool has_biases, int num_layers,
    float dropout, bool train, bool bidirectional, bool batch_first) -> (Tensor, Tensor)"""
    return _recurrent(ctx, _GRU, ctx.arg(1))


@lowers(aten.lstm.input, fxonnx_ops.lstm.default)
def lstm(ctx: LowerCtx) -> list[Value]:
    """lstm.input(Tensor input, Tensor[] hx, Tensor[] params, bool has_biases, int num_layers,
    float dropout, bool train, bool bidirectional, bool batch_first) -> (Tensor, Tensor, Tensor)"""
    h0, c0 = ctx.arg(1)
    params, layers, dirs = list(ctx.arg(2)), ctx.arg(4), 2 if ctx.arg(7) else 1
    if len(params) == layers * dirs * (5 if ctx.arg(3) else 3):  # w_hr: proj_size > 0
        return _lstm_projected(ctx, params, layers, dirs, h0, c0)
    return _recurrent(ctx, _LSTM, h0, c0)


def _lstm_projected(
    ctx: LowerCtx, params: list[Any], layers: int, dirs: int, h0: Any, c0: Any
) -> list[Value]:
    """An LSTM with ``proj_size``: ONNX LSTM has no projection of the hidden state inside the
    recurrence, so each layer and direction is an ONNX ``Scan`` over time whose body is the
    cell (gates, c' = f*c + i*g, h' = W_hr (o * tanh c')); reverse directions scan backwards."""
    if ctx.arg(6) and ctx.arg(5) > 0 and layers > 1:
        raise ExportError(
            f"{ctx.node.name}: LSTM in training mode with dropout between layers",
            hint="call model.eval() before exporting",
        )
    has_biases, batch_first = ctx.arg(3), ctx.arg(8)
    per = 5 if has_biases else 3
    hidden = ctx.static_shape(params[-1])[1]  # w_hr is [P, H]
    seq = ctx.value(ctx.arg(0))
    if batch_first:
        seq = ctx.emit("Transpose", seq, perm=[1, 0, 2])
    n = layers * dirs
    zero = ctx.const([0], _I64)
    hs = [ctx.emit("Squeeze", v, zero) for v in _split_states(ctx, ctx.value(h0), n)]
    cs = [ctx.emit("Squeeze", v, zero) for v in _split_states(ctx, ctx.value(c0), n)]
    h_n, c_n = [], []
    for layer in range(layers):
        ys = []
        for d in range(dirs):
            k = layer * dirs + d
            body = _projected_cell(ctx, params[k * per : (k + 1) * per], has_biases, hidden)
            h, c, y = ctx.emit(
                "Scan",
                hs[k],
                cs[k],
                seq,
                outputs=3,
                body=body,
                num_scan_inputs=1,
                scan_input_directions=[d],
                scan_output_directions=[d],
            )
            ys.append(y)
            h_n.append(ctx.emit("Unsqueeze", h, zero))
            c_n.append(ctx.emit("Unsqueeze", c, zero))
        seq = ys[0] if dirs == 1 else ctx.emit("Concat", *ys, axis=-1)
    if batch_first:
        seq = ctx.emit("Transpose", seq, perm=[1, 0, 2])
    return [seq, _cat(ctx, h_n), _cat(ctx, c_n)]


def _split_states(ctx: LowerCtx, h: Value, n: int) -> list[Value]:
    if n == 1:
        return [h]
    return ctx.emit("Split", h, ctx.const([1] * n, _I64), axis=0, outputs=n)


def _projected_cell(
    ctx: LowerCtx, params: Sequence[Any], has_biases: bool, hidden: int
) -> onnx.GraphProto:
    """The Scan body of one projected LSTM cell: (h [N, P], c [N, H], x_t [N, I]) ->
    (h', c', y_t = h'). Weights are transposed once in the outer graph."""
    w_ih, w_hh, w_hr = (ctx.emit("Transpose", ctx.value(params[i])) for i in (0, 1, -1))
    bias = ctx.emit("Add", ctx.value(params[2]), ctx.value(params[3])) if has_biases else None
    elem = onnx_dtype(ctx.dtype(params[0]))
    child = GraphBuilder(ctx.builder.fresh("lstm_cell"), parent=ctx.builder)
    body = LowerCtx(ctx.node, ctx.env, child, ctx.opset)
    h, c, x = (child.fresh(n) for n in ("h_prev", "c_prev", "x_t"))
    child.inputs += [helper.make_tensor_value_info(v, elem, [None, None]) for v in (h, c, x)]
    gates = body.emit("Add", body.emit("MatMul", x, w_ih), body.emit("MatMul", h, w_hh))
    if bias is not None:
        gates = body.emit("Add", gates, bias)
    sizes = body.const([hidden] * 4, _I64)
    i, f, g, o = body.emit("Split", gates, sizes, axis=-1, outputs=4)
    c_new = body.emit(
        "Add",
        body.emit("Mul", body.emit("Sigmoid", f), c),
        body.emit("Mul", body.emit("Sigmoid", i), body.emit("Tanh", g)),
    )
    h_full = body.emit("Mul", body.emit("Sigmoid", o), body.emit("Tanh", c_new))
    h_new = body.emit("MatMul", h_full, w_hr)
    outs = [body.emit("Identity", v) for v in (h_new, c_new, h_new)]
    child.outputs += [helper.make_tensor_value_info(v, elem, [None, None]) for v in outs]
    return child.graph()


@lowers(aten.rnn_tanh.input, fxonnx_ops.rnn_tanh.default)
def rnn_tanh(ctx: LowerCtx) -> list[Value]:
    """rnn_tanh.input(Tensor input, Tensor hx, Tensor[] params, bool has_biases, int num_layers,
    float dropout, bool train, bool bidirectional, bool batch_first) -> (Tensor, Tensor)"""
    return _recurrent(ctx, _TANH, ctx.arg(1))


@lowers(aten.rnn_relu.input, fxonnx_ops.rnn_relu.default)
def rnn_relu(ctx: LowerCtx) -> list[Value]:
    """rnn_relu.input(Tensor input, Tensor hx, Tensor[] params, bool has_biases, int num_layers,
    float dropout, bool train, bool bidirectional, bool batch_first) -> (Tensor, Tensor)"""
    return _recurrent(ctx, _RELU, ctx.arg(1))
