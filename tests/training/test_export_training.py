"""export_training: one step matches eager autograd (loss, every gradient, updated buffers) at
two batch sizes from one export, and the two torch.onnx traps cannot happen here."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from training_helpers import RTOL, assert_step_matches, step_errors

import fxonnx
from fxonnx import ExportError
from fxonnx.models import get, info, names
from fxonnx.training import TrainingSession


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
        if isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
    return model


def _first(out: torch.Tensor | tuple | dict) -> torch.Tensor:
    """The main output: the first of a tuple (RNN output, state), the last of a dict."""
    if isinstance(out, dict):
        return list(out.values())[-1]  # bert: the pooled output reads every parameter
    return out[0] if isinstance(out, tuple) else out


def _loss(out: torch.Tensor | tuple | dict, target: torch.Tensor) -> torch.Tensor:
    out = _first(out)
    if out.dim() == 4:  # segmentation: classes along dim 1, one target per pixel
        return F.cross_entropy(out, target)
    if out.dim() == 3:
        out, target = out.reshape(-1, out.shape[-1]), target.reshape(-1)
    if target.dtype == torch.int64:
        return F.cross_entropy(out, target)
    return F.mse_loss(out, target)


def _target(model: nn.Module, inputs: tuple, seed: int) -> torch.Tensor:
    with torch.no_grad():
        out = _first(copy.deepcopy(model).eval()(*inputs))
    g = torch.Generator().manual_seed(seed)
    if out.dim() == 4:
        return torch.randint(0, out.shape[1], (out.shape[0], *out.shape[2:]), generator=g)
    if out.shape[-1] > 1:
        return torch.randint(0, out.shape[-1], out.shape[:-1], generator=g)
    return torch.randn(out.shape, generator=g)


def _check_zoo(name: str, batches: tuple[int, int], tmp_path) -> None:  # noqa: ANN001
    model, inputs = get(name, batch=batches[0])
    model = _no_dropout(model.train())
    target = _target(model, inputs, 0)
    path = tmp_path / f"{name}.onnx"
    batch_dims = info(name).batch_dims  # seq-first models carry the batch in dim 1
    fxonnx.export_training(model, _loss, tuple(inputs), target, path, batch_dims=batch_dims)
    session = TrainingSession(path)
    for batch in batches:
        _, xs = get(name, batch=batch)
        assert_step_matches(session, model, _loss, tuple(xs), (_target(model, xs, batch),))


# unet_small's train-mode float32 forward is off float64 by up to 7e-6 before its ReLUs (eager
# too). At batches 2 and 3 the zoo input puts a ReLU input 1.9e-8 and 2.7e-6 from the kink
# (float64): a float32 step may take either side there, and the gradient jumps (eager fp32 in
# channels_last misses float64 by 3.5e-4 at batch 2 itself). Checked where no such ReLU flips:
# batches 4 and 5 (measured 1.9e-7 of max|g|, eager fp32 5.2e-7).
_ZOO_BATCHES = {"unet_small": (4, 5)}


_FAST = ["mlp", "lenet_cifar", "unet_small"]
_ZOO = [n for n in names() if n not in _FAST]


@pytest.mark.parametrize("name", _FAST)
def test_zoo_step(name: str, tmp_path) -> None:  # noqa: ANN001
    """unet_small: its nn.Upsample keeps the batch symbolic in the joint graph (issue 11)."""
    _check_zoo(name, _ZOO_BATCHES.get(name, (4, 3)), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", _ZOO)
def test_zoo_step_slow(name: str, tmp_path) -> None:  # noqa: ANN001
    """Every zoo model (all are trainable): one step from one export matches eager at two
    batch sizes."""
    _check_zoo(name, _ZOO_BATCHES.get(name, (2, 3)), tmp_path)


@pytest.mark.slow
def test_unet_small_step_with_a_static_batch(tmp_path) -> None:  # noqa: ANN001
    """The static trace (dynamic_dims=None) of the same step matches eager too."""
    model, inputs = get("unet_small", batch=4)
    model = _no_dropout(model.train())
    target = _target(model, inputs, 0)
    path = tmp_path / "unet_small.onnx"
    fxonnx.export_training(model, _loss, tuple(inputs), target, path, dynamic_dims=None)
    assert_step_matches(TrainingSession(path), model, _loss, tuple(inputs), (target,))


def test_graph_signature(tmp_path) -> None:  # noqa: ANN001
    model, (x,) = get("lenet_cifar", batch=2)
    onnx_model = fxonnx.export_training(model.train(), _loss, x, torch.tensor([1, 2]))
    graph = onnx_model.graph
    inputs = {i.name: i for i in graph.input}
    outputs = [o.name for o in graph.output]
    params = [n for n, _ in model.named_parameters()]
    assert set(inputs) == set(params) | {"input", "target"}
    assert outputs == ["loss"] + [f"grad.{n}" for n in params]
    assert inputs["input"].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert inputs["target"].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {n.domain for n in graph.node} <= {""}  # standard ONNX only


def test_cross_entropy_mean_divides_by_real_total_weight() -> None:
    """torch.onnx's nll_loss_forward fakes total_weight = 1: gradients come out scaled by the
    batch size. Here the mean divides by the summed weight of non-ignored targets."""
    torch.manual_seed(0)
    model = nn.Linear(6, 5)
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.25])

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, t, weight=weight.to(out.dtype), ignore_index=3)

    x = torch.randn(7, 6)
    t = torch.tensor([0, 1, 3, 4, 2, 3, 1])
    session = TrainingSession(fxonnx.export_training(model, loss_fn, x, t).SerializeToString())
    e = assert_step_matches(session, model, loss_fn, (x,), (t,))
    assert e.grads < 1e-6
    out = session.run(x.numpy(), t.numpy())
    model.zero_grad()
    loss_fn(model(x), t).backward()
    ratio = np.abs(out["grad.weight"]).sum() / float(model.weight.grad.abs().sum())
    assert abs(ratio - 1) < 1e-5  # not 7 (batch) nor 1 / total_weight


def test_batch_norm_trains_with_batch_statistics() -> None:
    """torch.onnx lowers train-mode batch norm as inference. Here the forward uses the batch's
    statistics and the running statistics come out updated."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
    bn = model[1]
    bn.running_mean.fill_(5.0)  # far from the batch's: inference mode would be far off
    bn.running_var.fill_(9.0)
    x = torch.randn(5, 3, 6, 6) * 2 + 1
    t = torch.randn(5, 64)
    session = TrainingSession(
        fxonnx.export_training(model.train(), _loss, x, t).SerializeToString()
    )
    assert set(session.signature["updates"]) == {
        "1.running_mean.new",
        "1.running_var.new",
        "1.num_batches_tracked.new",
    }
    e = assert_step_matches(session, model, _loss, (x,), (t,))
    assert e.buffers < 1e-6
    eval_loss = float(_loss(copy.deepcopy(model).eval()(x), t))
    out = session.run(x.numpy(), t.numpy())
    assert abs(float(out["loss"]) - eval_loss) > 0.1
    session.step(x.numpy(), t.numpy())
    assert int(session.buffers["1.num_batches_tracked"]) == 1
    model(x)  # eager's own update
    np.testing.assert_allclose(session.buffers["1.running_var"], bn.running_var, rtol=1e-5)


def test_eval_mode_batch_norm_stays_fixed() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    x, t = torch.randn(6, 4), torch.randn(6, 3)
    session = TrainingSession(fxonnx.export_training(model, _loss, x, t).SerializeToString())
    assert session.signature["updates"] == {}
    assert_step_matches(session, model, _loss, (x,), (t,))


def test_dropout_in_training_mode_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    with pytest.raises(ExportError, match="dropout"):
        fxonnx.export_training(model, _loss, torch.randn(3, 4), torch.randn(3, 2))
    model[1].eval()
    fxonnx.export_training(model, _loss, torch.randn(3, 4), torch.randn(3, 2))


def test_frozen_parameters_are_inputs_without_gradients() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model[0].weight.requires_grad_(False)
    x, t = torch.randn(3, 4), torch.randn(3, 2)
    session = TrainingSession(fxonnx.export_training(model, _loss, x, t).SerializeToString())
    assert "grad.0.weight" not in session.signature["grads"]
    assert "0.weight" in session.buffers
    assert step_errors(session, model, _loss, (x,), (t,)).loss <= RTOL


def test_multiple_inputs_and_targets() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(5, 2)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
            return self.a(x), self.b(y).tanh()

    def loss_fn(out: tuple, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out[0], t1) + F.l1_loss(out[1], t2)

    model = Two()
    xs = (torch.randn(4, 3), torch.randn(4, 5))
    ts = (torch.randn(4, 2), torch.randn(4, 2))
    session = TrainingSession(fxonnx.export_training(model, loss_fn, xs, ts).SerializeToString())
    assert session.signature["inputs"] == ["input.0", "input.1"]
    assert_step_matches(session, model, loss_fn, xs, ts)


def test_bad_optimizer_arguments() -> None:
    model, x, t = nn.Linear(2, 1), torch.randn(3, 2), torch.randn(3, 1)
    with pytest.raises(ExportError, match="optimizer"):
        fxonnx.export_training(model, _loss, x, t, optimizer="lbfgs")
    with pytest.raises(ExportError, match="not"):
        fxonnx.export_training(model, _loss, x, t, optimizer="sgd", betas=(0.9, 0.99))
    with pytest.raises(ExportError, match="scalar"):
        fxonnx.export_training(model, lambda o, t: (o - t) ** 2, x, t)


def test_data_parallel_model_step_matches_eager(tmp_path) -> None:  # noqa: ANN001
    """export_training unwraps nn.DataParallel: the step is the inner model's, by its names."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, t = torch.randn(4, 4), torch.tensor([0, 2, 1, 0])
    fxonnx.export_training(nn.DataParallel(net), F.cross_entropy, (x,), (t,), tmp_path / "dp.onnx")
    session = TrainingSession(tmp_path / "dp.onnx")
    assert "grad.0.weight" in session.signature["grads"]
    assert_step_matches(session, net, F.cross_entropy, (x,), (t,))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_step_matches_eager(bidirectional: bool, tmp_path) -> None:  # noqa: ANN001
    """The CPU LSTM training path (aten.mkldnn_rnn_layer) is traced without mkldnn: cells per
    time step, each with ONNX-lowerable derivatives."""
    torch.manual_seed(0)
    model = nn.LSTM(4, 5, num_layers=2, batch_first=True, bidirectional=bidirectional)

    def loss_fn(out: tuple, t: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out[0], t)

    x, t = torch.randn(3, 6, 4), torch.randn(3, 6, 10 if bidirectional else 5)
    fxonnx.export_training(model, loss_fn, (x,), (t,), tmp_path / "lstm.onnx")
    session = TrainingSession(tmp_path / "lstm.onnx")
    assert_step_matches(session, model, loss_fn, (x,), (t,))
    x2, t2 = torch.randn(2, 6, 4), torch.randn(2, 6, 10 if bidirectional else 5)
    assert_step_matches(session, model, loss_fn, (x2,), (t2,))


class DropFirstRow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return y[1:] - y[:-1]  # slices along the dynamic batch: slice_backward with SymInts


def test_slice_gradient_along_a_dynamic_dim(tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = DropFirstRow()

    def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, t[1:])

    x, t = torch.randn(5, 4), torch.randn(5, 3)
    fxonnx.export_training(model, loss_fn, (x,), (t,), tmp_path / "slice.onnx")
    session = TrainingSession(tmp_path / "slice.onnx")
    for batch in (5, 3):
        xb, tb = torch.randn(batch, 4), torch.randn(batch, 3)
        assert_step_matches(session, model, loss_fn, (xb,), (tb,))
