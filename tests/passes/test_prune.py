"""prune (opt-in): the lowest-L1 share of conv/linear channels goes, with the next layer's
inputs; the stats report parameters, FLOPs and the output deviation."""

from __future__ import annotations

import pytest
import torch
from pass_helpers import optimize, randn
from torch import nn

import fxonnx
from fxonnx.export import lower


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 10, 3, padding=1)
        self.bn = nn.BatchNorm2d(10)
        self.c2 = nn.Conv2d(10, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 4, 1)
        self.fc1 = nn.Linear(4, 20)
        self.fc2 = nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c2(self.bn(self.c1(x)).relu()).relu()
        h = self.c3(h).mean((2, 3))
        return self.fc2(self.fc1(h).relu())


def test_prune_ratio_shrinks_the_model_and_reports_its_cost() -> None:
    torch.manual_seed(0)  # the deviation bound depends on the weights, not on earlier tests
    model, make = ConvBN().eval(), randn(3, 8, 8)
    before, after, stats = optimize(model, make, ["const_fold", "dce"], prune=0.3)
    s = stats["prune"]
    assert s["layers"] == 3 and s["channels_removed"] == 3 + 2 + 6
    assert s["params_after"] < s["params_before"] and s["flops_after"] < s["flops_before"]
    assert 0 < s["max_abs_deviation"] and s["max_rel_deviation"] < 1
    assert s["miss:consumer_not_simple"] == 2  # c3 -> mean, fc2 -> output
    shapes = {tuple(t.shape) for t in after.state.values()}
    assert {(7, 3, 3, 3), (6, 7, 3, 3), (4, 6, 1, 1), (14, 4), (2, 14)} <= shapes
    onnx_model = lower(after)
    size = sum(
        int(torch.tensor(list(t.dims)).prod()) for t in onnx_model.graph.initializer if t.dims
    )
    assert size < sum(t.numel() for t in before.state.values())


def test_prune_dict_names_layers_and_compile_takes_it() -> None:
    model, make = ConvBN().eval(), randn(3, 8, 8)
    _, _, stats = optimize(model, make, [], prune={"fc1": 0.5})
    assert stats["prune"]["layers"] == 1 and stats["prune"]["channels_removed"] == 10
    assert stats["prune"]["miss:not_listed"] == 4
    cm = fxonnx.compile(model, make(2), provider="cpu", verify=False, prune={"c1": 0.05})
    passes = {p["name"]: p["stats"] for p in cm.report.passes}
    assert passes["prune"]["miss:nothing_to_remove"] == 1
    cm = fxonnx.compile(model, make(2), provider="cpu", prune=0.3)
    assert cm.report.ok and any(n.startswith("pruned: verified") for n in cm.report.notes)
    with pytest.raises(ValueError, match="ratio"):
        optimize(model, make, [], prune=1.5)


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(4, 4, 3, groups=4)
        self.pw = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(x.mean((2, 3)))
        return self.pw(self.dw(x)), self.out(h) + h


def test_prune_holds_back() -> None:
    _, _, stats = optimize(Grouped().eval(), randn(4, 5, 5), [], prune=0.5)
    s = stats["prune"]
    assert s["miss:grouped_conv"] == 1 and s["miss:has_other_users"] == 1
    assert "layers" not in s
