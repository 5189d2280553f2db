"""Backward ops of the pointwise losses against the native ATen ops, and one training step
per loss through fxonnx.export_training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fn_module import Fn
from torch import nn
from torch.nn import functional as F

import fxonnx

aten = torch.ops.aten


def _x_t_g(b: int, probs: bool = False) -> tuple:
    g = torch.Generator().manual_seed(b)
    x = torch.rand(b, 6, generator=g) if probs else torch.randn(b, 6, generator=g)
    t = torch.rand(b, 6, generator=g) if probs else torch.randn(b, 6, generator=g)
    if probs:
        x[0, :3] = torch.tensor([0.0, 1.0, 0.5])
        t[0, :3] = torch.tensor([0.0, 1.0, 0.5])
    else:
        t[0, :4] = x[0, :4] + torch.tensor([0.0, 0.5, -0.5, 0.3])  # at and on the kinks
    return x, t, torch.randn(b, 6, generator=g)


def _scalar_grad(b: int, probs: bool = False) -> tuple:
    x, t, g = _x_t_g(b, probs)
    return x, t, g[0, 0]


W5 = torch.tensor([0.5, 1.0, 2.0, 0.1, 1.5])
W6 = torch.tensor([0.0, 0.5, 1.0, 2.0, 0.1, 1.5])

OPS = {
    "smooth_l1": lambda r: lambda x, t, g: aten.smooth_l1_loss_backward(g, x, t, r, 0.5),
    "smooth_l1_beta0": lambda r: lambda x, t, g: aten.smooth_l1_loss_backward(g, x, t, r, 0.0),
    "huber": lambda r: lambda x, t, g: aten.huber_loss_backward(g, x, t, r, 0.5),
    "bce": lambda r: lambda x, t, g: aten.binary_cross_entropy_backward(g, x, t, None, r),
    "bce_weight": lambda r: lambda x, t, g: aten.binary_cross_entropy_backward(g, x, t, W6, r),
}


@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("op", OPS)
def test_loss_backward_matches_aten(onnx_matches: Callable, op: str, reduction: int) -> None:
    probs = op.startswith("bce")
    make = _x_t_g if reduction == 0 else _scalar_grad
    onnx_matches(Fn(OPS[op](reduction)), lambda b: make(b, probs))


@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss2d_backward_matches_aten(
    onnx_matches: Callable, reduction: int, weighted: bool
) -> None:
    w = W5 if weighted else None

    def both(x: torch.Tensor, t: torch.Tensor) -> tuple:
        out, total = aten.nll_loss2d_forward(x, t, w, reduction, 2)
        g = torch.ones_like(out) * 1.5 + out
        return out, total, aten.nll_loss2d_backward(g, x, t, w, reduction, 2, total)

    def make(b: int) -> tuple:
        gen = torch.Generator().manual_seed(b)
        x = torch.randn(b, 5, 3, 2, generator=gen).log_softmax(1)
        return x, torch.randint(0, 5, (b, 3, 2), generator=gen)

    onnx_matches(Fn(both), make)


def _margin_inputs(b: int) -> tuple:
    gen = torch.Generator().manual_seed(b)
    x = torch.randn(b, 5, generator=gen)
    labels = torch.full((b, 5), -1, dtype=torch.long)
    for i in range(b):
        labels[i, : i % 4 + 1] = torch.randperm(5, generator=gen)[: i % 4 + 1]
    labels[-1, 1] = labels[-1, 0]  # repeated target
    return x, torch.randint(0, 5, (b,), generator=gen), labels, torch.randn(b, generator=gen)


@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("p", [1, 2])
def test_margin_loss_backwards_match_aten(onnx_matches: Callable, p: int, reduction: int) -> None:
    def grads(x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor, g: torch.Tensor) -> tuple:
        if reduction:
            g = g.sum()
        multi = aten.multi_margin_loss_backward(g, x, y, p, 0.8, W5 if p == 2 else None, reduction)
        out, is_target = aten.multilabel_margin_loss_forward(x, labels, reduction)
        label = aten.multilabel_margin_loss_backward(g, x, labels, reduction, is_target)
        soft = aten.soft_margin_loss_backward(
            g[..., None] if not reduction else g, x, x.sign(), reduction
        )
        return multi, out, is_target, label, soft

    onnx_matches(Fn(grads), _margin_inputs)


STEPS = {
    "smooth_l1": (lambda o, t: F.smooth_l1_loss(o, t, beta=0.5), False),
    "huber": (lambda o, t: F.huber_loss(o, t, delta=0.7, reduction="sum"), False),
    "bce": (lambda o, t: F.binary_cross_entropy(o.sigmoid(), t), True),
    "cross_entropy_smoothing_weight": (
        lambda o, t: F.cross_entropy(o, t, weight=W5, label_smoothing=0.2),
        None,
    ),
    "gaussian_nll": (lambda o, t, var: F.gaussian_nll_loss(o, t, var, full=True), "gauss"),
    "multi_margin_p2": (lambda o, t: F.multi_margin_loss(o, t, p=2, weight=W5), "classes"),
    "multilabel_margin": (F.multilabel_margin_loss, "labels"),
    "soft_margin": (lambda o, t: F.soft_margin_loss(o, t, reduction="sum"), "signs"),
    "cross_entropy_2d_ignore": (
        lambda o, t: F.cross_entropy(
            o[:, :, None, None].expand(-1, -1, 2, 3), t, label_smoothing=0.1
        ),
        "2d",
    ),
}


@pytest.mark.parametrize("name", STEPS)
def test_training_step_with_loss(tmp_path: Path, name: str) -> None:
    loss_fn, probs = STEPS[name]
    torch.manual_seed(0)
    model = nn.Linear(6, 5)
    x = torch.randn(4, 6)
    if probs == "gauss":
        t = (torch.randn(4, 5), torch.rand(4, 5))
    elif probs == "classes":
        t = torch.tensor([0, 3, 4, 2])
    elif probs == "labels":
        t = _margin_inputs(4)[2]
    elif probs == "signs":
        t = torch.randn(4, 5).sign()
    elif probs == "2d":
        t = torch.randint(0, 5, (4, 2, 3))
        t[0, 0, 0] = -100
    elif probs is None:
        t = torch.tensor([0, 3, -100, 2])
    else:
        t = torch.rand(4, 5) if probs else torch.randn(4, 5)
    path = tmp_path / "step.onnx"
    fxonnx.export_training(model, loss_fn, x, t, str(path))
    session = fxonnx.TrainingSession(str(path))
    targets = t if isinstance(t, tuple) else (t,)
    loss = session.step(x.numpy(), [a.numpy() for a in targets])
    expected = loss_fn(model(x), *targets)
    expected.backward()
    want = float(expected.detach())
    assert abs(float(loss) - want) <= 1e-5 * max(1.0, abs(want))
    for name_, p in model.named_parameters():
        got = torch.as_tensor(session.grads[name_])
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)
