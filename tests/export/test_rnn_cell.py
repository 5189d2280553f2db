"""RNNCell (tanh, relu), GRUCell and LSTMCell against eager: with and without bias and initial
state, batched (two batch sizes) and unbatched (1-D input)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

KINDS = {
    "rnn_tanh": lambda bias: nn.RNNCell(5, 4, bias=bias),
    "rnn_relu": lambda bias: nn.RNNCell(5, 4, bias=bias, nonlinearity="relu"),
    "gru": lambda bias: nn.GRUCell(5, 4, bias=bias),
    "lstm": lambda bias: nn.LSTMCell(5, 4, bias=bias),
}


class Cell(nn.Module):
    """Calls the cell with the state it is given (none, h, or (h, c))."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> object:
        if not state:
            return self.cell(x)
        return self.cell(x, state if len(state) == 2 else state[0])


@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("state", [False, True], ids=["no_state", "state"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_matches_eager(
    onnx_matches: Callable, kind: str, bias: bool, state: bool, unbatched: bool
) -> None:
    n_state = (2 if kind == "lstm" else 1) if state else 0

    def make(b: int) -> tuple:
        g = torch.Generator().manual_seed(b)
        lead = () if unbatched else (b,)
        x = torch.randn(*lead, 5, generator=g)
        return (x, *(torch.randn(*lead, 4, generator=g) for _ in range(n_state)))

    torch.manual_seed(0)
    model = onnx_matches(Cell(KINDS[kind](bias)), make, dynamic=not unbatched)
    assert "Gemm" in {n.op_type for n in model.graph.node}
    assert {n.domain for n in model.graph.node} == {""}


def test_cell_steps_in_a_loop(onnx_matches: Callable) -> None:
    """A hand-unrolled LSTMCell over 3 steps, the way tutorials write decoders."""

    class Unrolled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.LSTMCell(5, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = c = torch.zeros(x.shape[0], 4)
            outs = []
            for t in range(x.shape[1]):
                h, c = self.cell(x[:, t], (h, c))
                outs.append(h)
            return torch.stack(outs, 1)

    onnx_matches(
        Unrolled(), lambda b: (torch.randn(b, 3, 5, generator=torch.Generator().manual_seed(b)),)
    )
