"""fold_bn: eval-mode batch norm folds into conv, transposed conv and linear as graph ops on the
original parameters (gradients stay comparable), then const_fold bakes them."""

from __future__ import annotations

import pytest
import torch
from pass_helpers import assert_grads_match, assert_outputs_match, call_targets, optimize, randn
from torch import nn

from fxonnx.export import lower

aten = torch.ops.aten


def _perturb(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.randn(m.num_features, generator=gen))
                    m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return model.eval()


CASES = {
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(3, 5, 3), nn.BatchNorm1d(5), nn.ReLU()), (3, 9)),
    "conv2d_nobias": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)),
        (3, 6, 6),
    ),
    "conv3d_grouped": (
        lambda: nn.Sequential(nn.Conv3d(4, 6, 2, groups=2), nn.BatchNorm3d(6)),
        (4, 4, 4, 4),
    ),
    "conv_transpose2d": (
        lambda: nn.Sequential(nn.ConvTranspose2d(3, 5, 3, stride=2), nn.BatchNorm2d(5)),
        (3, 5, 5),
    ),
    "conv2d_same": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding="same"), nn.BatchNorm2d(4)),
        (3, 5, 5),
    ),
    "linear_bn1d": (lambda: nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4)), (6,)),
    "no_affine": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, affine=False)),
        (3, 4, 4),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fold_bn_fires_and_keeps_parameter_gradients(case: str) -> None:
    factory, shape = CASES[case]
    model, make = _perturb(factory()), randn(*shape)
    _, after, stats = optimize(model, make, ["fold_bn", "dce"])
    assert stats["fold_bn"] == {"folded": 1}
    assert aten.batch_norm.default not in call_targets(after)
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make)


def test_fold_bn_then_const_fold_exports_no_batch_norm() -> None:
    model = _perturb(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    make = randn(3, 6, 6)
    _, after, stats = optimize(model, make, ["fold_bn", "const_fold", "dce"])
    ops = [n.op_type for n in lower(after).graph.node]
    assert ops == ["Conv", "Relu"]
    assert_outputs_match(model, after, make)
    assert_grads_match(model, after, make, params=False)


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x)
        return self.bn(h), h


class Alone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.relu())


class NoStats(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


MISSES = {
    "producer_has_other_users": (Shared, (3, 4, 4)),
    "not_after_conv_or_linear": (Alone, (3, 4, 4)),
    "no_running_stats": (NoStats, (3, 4, 4)),
    "transposed_groups": (
        lambda: nn.Sequential(nn.ConvTranspose2d(4, 6, 2, groups=2), nn.BatchNorm2d(6)),
        (4, 3, 3),
    ),
    "linear_not_2d": (lambda: nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(2)), (2, 4)),
}


@pytest.mark.parametrize("reason", sorted(MISSES))
def test_fold_bn_holds_back(reason: str) -> None:
    factory, shape = MISSES[reason]
    model, make = _perturb(factory()), randn(*shape)
    _, after, stats = optimize(model, make, ["fold_bn"])
    assert stats["fold_bn"] == {f"miss:{reason}": 1}
    assert_outputs_match(model, after, make)


def test_fold_bn_holds_back_in_training_mode() -> None:
    model, make = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)), randn(3, 4, 4)
    from fxonnx.capture import capture
    from fxonnx.passes import run_passes

    captured = capture(model.train(), make(2))  # the compiler captures in eval mode; this is raw
    _, stats = run_passes(captured, ["fold_bn"])
    assert stats[0]["stats"] == {"miss:training_mode": 1}


def test_fold_bn_holds_back_on_16_bit_weights() -> None:
    """Folding rounds the folded weights to 16 bits where eager never rounds them."""
    from fxonnx.capture import capture
    from fxonnx.passes import run_passes

    model = _perturb(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))).to(torch.bfloat16)
    captured = capture(model, torch.randn(2, 3, 4, 4, dtype=torch.bfloat16))
    _, stats = run_passes(captured, ["fold_bn"])
    assert stats[0]["stats"] == {"miss:low_precision": 1}
