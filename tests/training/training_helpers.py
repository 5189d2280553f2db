"""Compare one exported training step with eager autograd (float64 reference)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fxonnx.training import TrainingSession

RTOL = 1e-4  # of the largest |gradient| (STYLE.md: analytically-zero gradients must pass)
# Where eager fp32 itself is further than RTOL from float64 (train-mode batch norm at batch 2-3
# is ill-conditioned: resnet18 and mobilenet_v2 lose ~4e-3 in eager fp32), the tolerance is
# twice eager fp32's own error: the ONNX step must be as good as eager's fp32 step.


@dataclass
class StepErrors:
    loss: float  # relative
    grads: float  # worst |onnx - eager| / max |grad|
    grads_eager32: float  # the same for eager fp32 against the float64 reference
    buffers: float  # worst |onnx - eager| / max(1, max |buffer|)
    names: list[str]


def eager_step(
    model: nn.Module, loss_fn: Callable, inputs: tuple, targets: tuple, dtype: torch.dtype
) -> tuple[float, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    m = copy.deepcopy(model).to(dtype)
    xs = tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)
    ts = tuple(t.to(dtype) if t.is_floating_point() else t for t in targets)
    loss = loss_fn(m(*xs), *ts)
    loss.backward()
    grads = {n: p.grad.double() for n, p in m.named_parameters() if p.grad is not None}
    buffers = {n: b.double() for n, b in m.named_buffers()}
    return float(loss), grads, buffers


def step_errors(
    session: TrainingSession, model: nn.Module, loss_fn: Callable, inputs: tuple, targets: tuple
) -> StepErrors:
    """Run one step in onnxruntime and eager (float64 and fp32), without advancing anything."""
    out = session.run([x.numpy() for x in inputs], [t.numpy() for t in targets])
    loss64, g64, b64 = eager_step(model, loss_fn, inputs, targets, torch.float64)
    _, g32, _ = eager_step(model, loss_fn, inputs, targets, torch.float32)
    gmax = max(float(g.abs().max()) for g in g64.values())
    assert set(session.signature["grads"]) == {f"grad.{n}" for n in g64}
    grads = max(float(np.abs(out[f"grad.{n}"] - g.numpy()).max()) for n, g in g64.items()) / gmax
    eager32 = max(float((g32[n] - g).abs().max()) for n, g in g64.items()) / gmax
    updated = [n for n in b64 if f"{n}.new" in out]
    buffers = 0.0
    for n in updated:
        want = b64[n].numpy()
        scale = max(1.0, float(np.abs(want).max()))
        buffers = max(buffers, float(np.abs(out[f"{n}.new"] - want).max()) / scale)
    loss = abs(float(out["loss"]) - loss64) / max(abs(loss64), 1e-12)
    return StepErrors(loss, grads, eager32, buffers, updated)


def describe(e: StepErrors) -> str:
    return (
        f"loss rel {e.loss:.2e}, grads {e.grads:.2e} of max|g| (eager fp32 {e.grads_eager32:.2e}),"
        f" buffers {e.buffers:.2e} ({len(e.names)} updated)"
    )


def assert_step_matches(
    session: TrainingSession, model: nn.Module, loss_fn: Callable, inputs: tuple, targets: tuple
) -> StepErrors:
    e = step_errors(session, model, loss_fn, inputs, targets)
    assert e.loss <= RTOL, e
    assert e.grads <= max(RTOL, 2 * e.grads_eager32), e
    assert e.buffers <= RTOL, e
    print(describe(e))
    return e
