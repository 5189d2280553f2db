"""Comparisons for the torch.compile backend tests (eager vs backend="fxonnx")."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.utils._pytree as pytree

import fxonnx.dynamo as fd
from fxonnx.verify._compare import compare, tolerance


def tensors(out: object) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def assert_outputs_match(want: object, got: object, label: str = "output") -> None:
    w, g = tensors(want), tensors(got)
    assert len(w) == len(g), f"{label}: {len(g)} tensors, eager has {len(w)}"
    for i, (a, b) in enumerate(zip(w, g, strict=True)):
        check = compare(f"{label}[{i}]", a, b)
        assert check.ok, check


def loss_of(out: object) -> torch.Tensor:
    """A scalar that every floating output feeds (mean of squares, in the outputs' dtype)."""
    return sum((t**2).mean() for t in tensors(out) if t.is_floating_point())


def no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Train mode, but dropout off: its random masks are not comparable across runs."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout) or hasattr(m, "dropout_p"):
            m.eval()
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0
    return model


def sgd_step_matches(model: torch.nn.Module, inputs: Sequence[torch.Tensor], lr: float = 0.1):
    """One SGD step through ``torch.compile(backend="fxonnx")`` against the same step in eager
    autograd. The reference is eager in float64: on deep train-mode batch-norm stacks eager
    fp32 itself is 1e-3 (relative to the largest gradient) away from the exact gradients,
    ten times check_gradients' fp32 tolerance. Gradients must agree within that tolerance
    (rtol 1e-4, atol = rtol * the largest gradient, as fxonnx.check_gradients), and so must
    the parameters after the step."""
    model = no_dropout(model)
    exact = copy.deepcopy(model).double()
    compiled_model = copy.deepcopy(model)
    compiled = torch.compile(compiled_model, backend="fxonnx")
    opt = torch.optim.SGD(compiled_model.parameters(), lr=lr)
    opt_exact = torch.optim.SGD(exact.parameters(), lr=lr)
    wide = [t.double() if t.is_floating_point() else t for t in inputs]
    loss_of(exact(*wide)).backward()
    loss = loss_of(compiled(*inputs))
    loss.backward()
    params = dict(compiled_model.named_parameters())
    grads = {k: p.grad for k, p in exact.named_parameters() if p.grad is not None}
    assert grads, "the model has no gradients"
    assert set(grads) == {k for k, p in params.items() if p.grad is not None}
    rtol = tolerance(torch.float32)[0]
    atol = rtol * max(float(g.abs().max()) for g in grads.values())
    for k, g in grads.items():
        check = compare(f"grad {k}", g.float(), params[k].grad, kind="grad", rtol=rtol, atol=atol)
        assert check.ok, check
    opt.step()
    opt_exact.step()
    for k, p in exact.named_parameters():
        check = compare(k, p.detach().float(), params[k].detach(), rtol=rtol, atol=lr * atol)
        assert check.ok, check
    return fd.stats()
