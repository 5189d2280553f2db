"""``export_training``: the joint graph lowered to an ONNX model plain onnxruntime runs."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import onnx
import torch
import torch.utils._pytree as pytree
from onnx import numpy_helper
from torch import nn

from .._checks import check_model, check_opset, check_path
from .._errors import ExportError
from ..capture import Captured, TensorSpec, unwrap_parallel
from ..export import DEFAULT_OPSET, lower, save_model
from ._joint import Joint, trace_joint
from ._optim import make_optimizer

log = logging.getLogger(__name__)

METADATA_KEY = "fxonnx.training"


def _as_tuple(x: Any, what: str) -> tuple[torch.Tensor, ...]:
    items = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    bad = [type(t).__name__ for t in items if not isinstance(t, torch.Tensor)]
    if bad or not items:
        got = bad[0] if bad else "nothing"
        raise ExportError(
            f"{what} must be a tensor or a tuple of tensors, got {got}",
            hint="convert numpy arrays with torch.from_numpy(...)",
        )
    return items


def _captured(joint: Joint) -> Captured:
    """The joint graph in the form ``lower`` takes: every slot is a graph input (parameters and
    state change between steps, so none is baked in as an initializer)."""
    shapes = joint.shapes

    def spec(name: str, kind: Any, val: torch.Tensor) -> TensorSpec:
        return TensorSpec(name, kind, tuple(shapes.dim(d) for d in val.shape), val.dtype)

    empty = pytree.tree_flatten(())[1]
    return Captured(
        gm=joint.gm,
        inputs=tuple(spec(s.name, "input", s.val) for s in joint.inputs),
        outputs=tuple(spec(s.name, "output", s.val) for s in joint.outputs),
        state={},
        in_spec=empty,
        leaves=(),
        out_spec=empty,
        out_leaves=(),
        shapes=shapes,
        method="training",
    )


def signature(joint: Joint, optimizer: dict[str, Any] | None) -> dict[str, Any]:
    """What TrainingSession needs to drive the model: roles of inputs and outputs."""

    def names(role: str, slots: list) -> list[str]:
        return [s.name for s in slots if s.role == role]

    return {
        "version": 1,
        "parameters": names("parameter", joint.inputs),
        "buffers": names("buffer", joint.inputs),
        "state": names("state", joint.inputs) + names("step", joint.inputs),
        "lr": "lr" if any(s.role == "lr" for s in joint.inputs) else None,
        "inputs": names("input", joint.inputs),
        "targets": names("target", joint.inputs),
        "loss": "loss",
        "grads": names("grad", joint.outputs),
        "updates": {s.name: s.source for s in joint.outputs if s.role == "new"},
        "optimizer": optimizer,
        "dynamic_dims": list(joint.shapes.names),
    }


def export_training(
    model: nn.Module,
    loss_fn: Any,
    inputs: Any,
    targets: Any,
    path: str | os.PathLike | None = None,
    *,
    optimizer: str | None = None,
    lr: float = 0.01,
    opset: int = DEFAULT_OPSET,
    dynamic_dims: Any = "auto",
    batch_dims: Any = None,
    dynamic: bool = True,
    **hyper: Any,
) -> onnx.ModelProto:
    """Write an ONNX training step for ``model`` under ``loss_fn(model(*inputs), *targets)``.

    Graph inputs: every parameter and buffer (by name), with an optimizer its state
    (``momentum_buffer.<p>``, ``exp_avg.<p>``, ``exp_avg_sq.<p>``, and ``step`` for Adam and
    for SGD with momentum, whose first step copies the gradient) and ``lr``, then
    ``input``/``input.<i>`` and ``target``/``target.<i>`` with ``dynamic_dims`` as in
    ``compile`` over those names (default "auto": dim 0 of the first input is the batch, and the
    other inputs and the targets carry it on their first dim of that size; ``batch_dims``, one
    dim per input, is a shorthand).
    Outputs: ``loss``, ``grad.<p>`` per trainable parameter, ``<buffer>.new`` for buffers the
    step changes (train-mode batch norm statistics), and with an optimizer ``<p>.new`` and
    ``<state>.new``. Hyperparameters: SGD ``momentum``, ``dampening``, ``weight_decay``,
    ``nesterov``; Adam ``betas``, ``eps``, ``weight_decay``. ``lr`` is stored as the default of
    the ``lr`` input (TrainingSession feeds it; change it per step there).

    The model is traced in its current mode (call ``model.train()`` for batch statistics);
    dropout in training mode is refused. Only standard ONNX ops are used."""
    model, unwrapped = unwrap_parallel(model)
    if unwrapped:
        log.info("fxonnx: %s", unwrapped)
    check_model(model)
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable as loss_fn(outputs, *targets), not {type(loss_fn).__name__}",
        )
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise TypeError(f"lr must be a number, not {type(lr).__name__} {lr!r}")
    check_opset(opset)
    if path is not None:
        check_path(path)
    opt = make_optimizer(optimizer, **hyper)
    xs, ts = _as_tuple(inputs, "inputs"), _as_tuple(targets, "targets")
    joint = trace_joint(
        model,
        loss_fn,
        xs,
        ts,
        opt,
        dynamic_dims=dynamic_dims,
        batch_dims=batch_dims,
        dynamic=dynamic,
    )
    opt_meta = None if opt is None else {"kind": opt.kind, "lr": lr, **opt.hyper}
    meta = {METADATA_KEY: json.dumps(signature(joint, opt_meta))}
    try:
        onnx_model = lower(
            _captured(joint), opset=opset, graph_name="fxonnx_training", metadata=meta
        )
    except ExportError:
        raise
    _add_defaults(onnx_model, joint, model, lr)
    if path is not None:
        save_model(onnx_model, path)
    return onnx_model


def _add_defaults(onnx_model: onnx.ModelProto, joint: Joint, model: nn.Module, lr: float) -> None:
    """Initial values of parameters, buffers, state and lr as initializers of the same names
    (ONNX input defaults): TrainingSession starts from them, any feed overrides them."""
    named = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    for slot in joint.inputs:
        if slot.role in ("input", "target"):
            continue
        if slot.role == "lr":
            value = torch.tensor(lr, dtype=torch.float32)
        elif slot.role in ("parameter", "buffer"):
            value = named[slot.name].detach()
        else:
            value = torch.zeros(tuple(slot.val.shape), dtype=slot.val.dtype)
        onnx_model.graph.initializer.append(
            numpy_helper.from_array(value.cpu().contiguous().numpy(), slot.name)
        )
