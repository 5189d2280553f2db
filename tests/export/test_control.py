"""torch.cond as ONNX If: both branch outcomes against eager, at batches 2 and 5."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


class Gate(nn.Module):
    """Branches that call the module's own Linear layers (lifted into operands by tracing)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(4, 4)
        self.down = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(
            x.sum() > 0, lambda x: self.up(x).relu(), lambda x: self.down(x) - 1.0, (x,)
        )


class TwoOutputs(nn.Module):
    """Two operands, two results of different shapes; the predicate is an int64 tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def true_fn(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x * 2.0, self.proj(y)

        def false_fn(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.neg(), self.proj(y).sigmoid()

        return torch.cond((y.mean() > 0).long(), true_fn, false_fn, (x, y))


class Nested(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def inner(x: torch.Tensor) -> torch.Tensor:
            return torch.cond(x.max() > 1, lambda x: x + 1.0, lambda x: x - 1.0, (x,))

        return torch.cond(x.sum() > 0, inner, lambda x: x * 3.0, (x,))


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["true", "false"])
def test_cond_with_module_parameters(onnx_matches: Callable, sign: float) -> None:
    def make(batch: int) -> tuple[torch.Tensor]:
        g = torch.Generator().manual_seed(batch)
        return (sign * (torch.rand(batch, 4, generator=g) + 0.1),)

    model = onnx_matches(Gate(), make)
    assert [n.op_type for n in model.graph.node][-1] == "If"


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["true", "false"])
def test_cond_two_operands_two_outputs(onnx_matches: Callable, sign: float) -> None:
    def make(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(batch)
        return torch.randn(batch, 2, generator=g), sign * (torch.rand(batch, 4, generator=g) + 0.1)

    onnx_matches(TwoOutputs(), make)


@pytest.mark.parametrize(
    "value", [2.0, 0.5, -1.0], ids=["outer_inner", "outer_not_inner", "not_outer"]
)
def test_nested_cond(onnx_matches: Callable, value: float) -> None:
    """Capture keeps the batch static here (the inner cond sits in a branch); lowering nests If."""
    model = onnx_matches(Nested(), lambda b: (torch.full((b, 3), value),), dynamic=False)
    (outer,) = [n for n in model.graph.node if n.op_type == "If"]
    then_branch = next(a.g for a in outer.attribute if a.name == "then_branch")
    assert "If" in {n.op_type for n in then_branch.node}
