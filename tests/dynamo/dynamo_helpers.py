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


def sgd_step_matches(
    model: torch.nn.Module,
    inputs: Sequence[torch.Tensor],
    lr: float = 0.1,
    options: dict | None = None,
):
    """One SGD step through ``torch.compile(backend="fxonnx")`` against the same step in eager
    autograd in float64 (the exact gradients). Gradients must agree within check_gradients'
    fp32 tolerance (rtol 1e-4, atol = rtol * the largest gradient), widened to twice eager
    fp32's own distance from the exact gradients where eager fp32 itself misses it (deep
    train-mode batch-norm stacks at batch 2: mobilenet_v2's eager fp32 gradients are 3e-3 of
    the largest gradient away); the parameters after the step within lr times that."""
    model = no_dropout(model)
    exact = copy.deepcopy(model).double()
    eager32 = copy.deepcopy(model)
    compiled_model = copy.deepcopy(model)
    compiled = torch.compile(compiled_model, backend="fxonnx", options=options)
    opt = torch.optim.SGD(compiled_model.parameters(), lr=lr)
    opt_exact = torch.optim.SGD(exact.parameters(), lr=lr)
    wide = [t.double() if t.is_floating_point() else t for t in inputs]
    loss_of(exact(*wide)).backward()
    loss_of(eager32(*inputs)).backward()
    loss = loss_of(compiled(*inputs))
    loss.backward()
    params = dict(compiled_model.named_parameters())
    grads = {k: p.grad for k, p in exact.named_parameters() if p.grad is not None}
    assert grads, "the model has no gradients"
    assert set(grads) == {k for k, p in params.items() if p.grad is not None}
    rtol = tolerance(torch.float32)[0]
    atol = rtol * max(float(g.abs().max()) for g in grads.values())
    own = dict(eager32.named_parameters())
    eager_err = max(float((own[k].grad.double() - g).abs().max()) for k, g in grads.items())
    atol = max(atol, 2 * eager_err)
    for k, g in grads.items():
        check = compare(f"grad {k}", g.float(), params[k].grad, kind="grad", rtol=rtol, atol=atol)
        assert check.ok, check
    opt.step()
    opt_exact.step()
    for k, p in exact.named_parameters():
        check = compare(k, p.detach().float(), params[k].detach(), rtol=rtol, atol=lr * atol)
        assert check.ok, check
    return fd.stats()
