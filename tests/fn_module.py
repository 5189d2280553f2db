"""``Fn``: a function as an nn.Module, for tests that compile one op or expression (importable
from every test directory: pytest puts ``tests/`` on the path for its conftest)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Fn(nn.Module):
    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(*args)
