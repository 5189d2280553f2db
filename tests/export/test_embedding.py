"""embedding and embedding_bag against eager, with a dynamic batch where the layer allows one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fxonnx._errors import ExportError
from fxonnx.capture import capture
from fxonnx.export import lower


class Embed(nn.Module):
    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 6, **kwargs)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens)


class Bag(nn.Module):
    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, **kwargs)

    def forward(self, tokens: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        if not rest:
            return self.bag(tokens)
        offsets, *weights = rest
        return self.bag(tokens, offsets, per_sample_weights=weights[0] if weights else None)


def _tokens(*shape: int, high: int = 20, dtype: torch.dtype = torch.int64) -> Callable:
    def make(batch: int) -> tuple[torch.Tensor]:
        g = torch.Generator().manual_seed(batch)
        return (torch.randint(0, high, (batch, *shape), generator=g, dtype=dtype),)

    return make


@pytest.mark.parametrize(
    ("kwargs", "shape", "dtype"),
    [
        ({}, (7,), torch.int64),
        ({"padding_idx": 0}, (3, 4), torch.int64),
        ({}, (5,), torch.int32),
    ],
    ids=["tokens", "padding_idx_3d", "int32"],
)
def test_embedding(onnx_matches: Callable, kwargs: dict, shape: tuple, dtype: torch.dtype) -> None:
    model = onnx_matches(Embed(**kwargs), _tokens(*shape, dtype=dtype))
    assert [n.op_type for n in model.graph.node] == ["Gather"]


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding_idx", [None, 0])
def test_embedding_bag_fixed_length_bags(
    onnx_matches: Callable, mode: str, padding_idx: int | None
) -> None:
    """2-D input: every row is a bag; rows 0 hold only padding, which gives zeros."""

    def make(batch: int) -> tuple[torch.Tensor]:
        (tokens,) = _tokens(5, high=10)(batch)
        tokens[0] = 0
        return (tokens,)

    onnx_matches(Bag(mode=mode, padding_idx=padding_idx), make)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_embedding_bag_offsets(
    onnx_matches: Callable, mode: str, include_last_offset: bool
) -> None:
    """1-D indices with offsets, an empty bag (offsets 2, 2) and padding entries."""

    def make(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.tensor([3, 0, 5, 1, 0, 7, 9, 2, 0][: 3 + batch])
        offsets = [0, 2, 2, 4][: 2 + batch // 2] + ([len(tokens)] if include_last_offset else [])
        return tokens, torch.tensor(offsets)

    bag = Bag(mode=mode, padding_idx=0, include_last_offset=include_last_offset)
    onnx_matches(bag, make, batch_dims=[None, None], dynamic=False)


def test_embedding_bag_per_sample_weights(onnx_matches: Callable) -> None:
    def make(batch: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(batch)
        tokens = torch.randint(0, 10, (3 * batch,), generator=g)
        return tokens, torch.tensor([0, 1]), torch.randn(3 * batch, generator=g)

    onnx_matches(Bag(mode="sum", padding_idx=1), make, batch_dims=[0, None, 0])


class BagBookkeeping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 4))

    def forward(self, tokens: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return torch.embedding_bag(self.weight, tokens, offsets)[1]


def test_embedding_bag_bookkeeping_outputs_refused() -> None:
    captured = capture(
        BagBookkeeping(), (torch.tensor([1, 2, 3]), torch.tensor([0, 1])), dynamic=False
    )
    with pytest.raises(ExportError, match="only the first result of embedding_bag"):
        lower(captured)


class BagOf2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 4))

    def forward(self, tokens: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return torch.embedding_bag(self.weight, tokens, offsets)[0]


def test_embedding_bag_2d_indices_with_offsets_refused() -> None:
    inputs = (torch.tensor([[1, 2], [3, 4]]), torch.tensor([0, 1]))
    captured = capture(BagOf2d(), inputs, dynamic=False)
    with pytest.raises(ExportError, match="embedding_bag on 2-D indices"):
        lower(captured)


class FunctionalBag(nn.Module):
    """F.embedding_bag passes a negative padding_idx through to ATen, which wraps it."""

    def __init__(self, padding_idx: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(5, 4))
        self.padding_idx = padding_idx

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        offsets = torch.tensor([0, 3])
        return F.embedding_bag(
            tokens, self.weight, offsets, mode="sum", padding_idx=self.padding_idx
        )


@pytest.mark.parametrize("padding_idx", [-1, -5])
def test_embedding_bag_negative_padding_idx_wraps(onnx_matches: Callable, padding_idx: int) -> None:
    # found by the OpInfo suite (nn.functional.embedding_bag sample 5): index 4 was summed
    tokens = torch.tensor([4, 1, 1, 0, 4, 4])
    onnx_matches(FunctionalBag(padding_idx), lambda b: (tokens,), dynamic=False)
