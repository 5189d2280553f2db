"""Tutorial training loops reproduced in onnxruntime step for step (TrainingSession)."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxonnx
from fxonnx.models import get
from fxonnx.training import TrainingSession

CURVE_RTOL = 1e-4


def run_both(
    model: nn.Module,
    loss_fn,  # noqa: ANN001
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    optimizer: str,
    lr: float,
    **hyper: object,
) -> tuple[list[float], list[float], TrainingSession, nn.Module]:
    """The same loop in eager (torch.optim) and in onnxruntime; returns both loss curves."""
    eager = copy.deepcopy(model)
    x0, t0 = batches[0]
    onnx_model = fxonnx.export_training(model, loss_fn, x0, t0, optimizer=optimizer, lr=lr, **hyper)
    session = TrainingSession(onnx_model.SerializeToString())
    if optimizer == "sgd":
        opt = torch.optim.SGD(eager.parameters(), lr=lr, **hyper)
    else:
        opt = torch.optim.Adam(eager.parameters(), lr=lr, **hyper)
    want, got = [], []
    for x, t in batches:
        opt.zero_grad()
        loss = loss_fn(eager(x), t)
        loss.backward()
        opt.step()
        want.append(float(loss))
        got.append(session.step(x.numpy(), t.numpy()))
    return want, got, session, eager


def assert_curves_match(want: list[float], got: list[float]) -> float:
    rel = np.abs(np.array(got) - np.array(want)) / np.abs(np.array(want))
    worst = float(rel.max())
    print(f"{len(want)} steps, loss {want[0]:.4f} -> {want[-1]:.4f}, worst rel diff {worst:.2e}")
    assert worst <= CURVE_RTOL, worst
    return worst


def assert_params_match(session: TrainingSession, eager: nn.Module, rtol: float = 1e-4) -> None:
    for name, p in eager.named_parameters():
        want = p.detach().numpy()
        err = np.abs(session.params[name] - want).max() / max(1e-6, np.abs(want).max())
        assert err <= rtol, (name, err)


def test_linear_regression_sgd() -> None:
    """The tutorial: y = x + noise, nn.Linear(1, 1), MSELoss, SGD(lr=0.01), batch 10."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 1, generator=g)
    y = x + 0.1 * torch.randn(100, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    batches = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 100, 10)] * 10
    want, got, session, eager = run_both(model, F.mse_loss, batches, "sgd", 0.01)
    assert len(want) == 100 and want[-1] < want[0]
    assert_curves_match(want, got)
    assert_params_match(session, eager)


def _cifar_batches(steps: int, batch: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    data = torch.randn(4 * batch, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (4 * batch,), generator=g)
    return [
        (data[(i % 4) * batch : (i % 4 + 1) * batch], labels[(i % 4) * batch : (i % 4 + 1) * batch])
        for i in range(steps)
    ]


@pytest.mark.parametrize(
    "optimizer,lr,hyper",
    [("sgd", 0.01, {"momentum": 0.9}), ("adam", 1e-3, {})],
    ids=["sgd_momentum", "adam"],
)
def test_lenet_cifar_loop(optimizer: str, lr: float, hyper: dict) -> None:
    model, _ = get("lenet_cifar", batch=8)
    want, got, session, eager = run_both(
        model.train(), F.cross_entropy, _cifar_batches(100), optimizer, lr, **hyper
    )
    assert want[-1] < want[0] * 0.5  # it learns the (memorisable) synthetic batches
    assert_curves_match(want, got)
    assert_params_match(session, eager, rtol=1e-3)
    assert int(session.state["step"]) == 100


def test_sgd_options_and_lr_change() -> None:
    """Nesterov momentum with weight decay; lr changed between steps as a scheduler would."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(6, 5, generator=g), torch.randint(0, 3, (6,), generator=g)
    eager = copy.deepcopy(model)
    hyper = {"momentum": 0.8, "nesterov": True, "weight_decay": 0.01}
    session = TrainingSession(
        fxonnx.export_training(
            model, F.cross_entropy, x, t, optimizer="sgd", lr=0.1, **hyper
        ).SerializeToString()
    )
    opt = torch.optim.SGD(eager.parameters(), lr=0.1, **hyper)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    want, got = [], []
    for _ in range(10):
        opt.zero_grad()
        loss = F.cross_entropy(eager(x), t)
        loss.backward()
        opt.step()
        want.append(float(loss))
        got.append(session.step(x.numpy(), t.numpy()))
        sched.step()
        session.lr = sched.get_last_lr()[0]
    assert_curves_match(want, got)
    assert_params_match(session, eager)


def test_adam_weight_decay_dynamic_batch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 1))
    g = torch.Generator().manual_seed(3)
    batches = [
        (torch.randn(b, 4, generator=g), torch.randn(b, 1, generator=g)) for b in (5, 3, 7, 1) * 5
    ]
    want, got, session, eager = run_both(
        model, F.mse_loss, batches, "adam", 0.01, betas=(0.8, 0.99), weight_decay=0.1
    )
    assert_curves_match(want, got)
    assert_params_match(session, eager)


def test_training_session_needs_no_torch(tmp_path) -> None:  # noqa: ANN001
    model, _ = get("mlp", batch=4)
    path = tmp_path / "mlp_train.onnx"
    fxonnx.export_training(
        model, F.mse_loss, torch.randn(4, 10), torch.randn(4, 30), path, optimizer="sgd", lr=0.1
    )
    code = (
        "import sys, numpy as np\n"
        "from fxonnx import TrainingSession\n"
        f"s = TrainingSession({str(path)!r})\n"
        "x, t = np.ones((3, 10), np.float32), np.zeros((3, 30), np.float32)\n"
        "losses = [s.step(x, t) for _ in range(5)]\n"
        "assert losses[-1] < losses[0], losses\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_gradients_only_session_keeps_parameters() -> None:
    model = nn.Linear(3, 2)
    x, t = torch.randn(4, 3), torch.randn(4, 2)
    session = TrainingSession(fxonnx.export_training(model, F.mse_loss, x, t).SerializeToString())
    before = {k: v.copy() for k, v in session.params.items()}
    session.step(x.numpy(), t.numpy())
    assert session.lr is None and session.state == {}
    assert all(np.array_equal(before[k], session.params[k]) for k in before)
    assert set(session.grads) == {"weight", "bias"}
