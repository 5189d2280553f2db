"""Convolutions on unbatched (C, *spatial) inputs, against eager."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

UNBATCHED: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), (3, 9)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3, stride=2), (3, 8, 8)),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2), (2, 4, 5, 4)),
    "conv_transpose1d": (lambda: nn.ConvTranspose1d(3, 4, 3, stride=2), (3, 6)),
    "conv_transpose2d": (
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        (4, 5, 6),
    ),
    "conv_transpose3d": (lambda: nn.ConvTranspose3d(2, 3, 2, stride=2), (2, 3, 4, 3)),
}


@pytest.mark.parametrize("name", list(UNBATCHED))
def test_unbatched_conv_matches_eager(name: str, onnx_matches: Callable) -> None:
    factory, shape = UNBATCHED[name]
    torch.manual_seed(0)
    layer = factory()

    def make_inputs(_: int) -> tuple:
        return (torch.randn(*shape, generator=torch.Generator().manual_seed(1)),)

    onnx_matches(layer, make_inputs, dynamic=False)
