"""CompiledModel's lean call: a flat tuple of tensors skips pytree work, and the result has the
eager structure either way (tensor, tuple, or anything else through the full path)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxonnx


class TwoOut(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a * b


class ListOut(nn.Module):
    def forward(self, a: torch.Tensor) -> list[torch.Tensor]:
        return [a + 1, a - 1]


def test_flat_inputs_and_tuple_outputs_match_eager() -> None:
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    cm = fxonnx.compile(TwoOut(), (a, b), provider="cpu")
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    got = cm(a, b)
    assert type(got) is tuple and len(got) == 2
    torch.testing.assert_close(got[0], a + b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[1], a * b, rtol=1e-6, atol=1e-6)
    # Parameters (a tensor subclass) take the full path
    p = cm(nn.Parameter(a), b)
    torch.testing.assert_close(p[0], got[0], rtol=0, atol=0)


def test_a_single_output_is_a_tensor_and_a_list_stays_a_list() -> None:
    cm = fxonnx.compile(nn.Linear(3, 2).eval(), (torch.randn(2, 3),), provider="cpu")
    assert isinstance(cm(torch.randn(5, 3)), torch.Tensor)
    cl = fxonnx.compile(ListOut(), (torch.randn(2, 3),), provider="cpu")
    x = torch.randn(3, 3)
    got = cl(x)
    assert type(got) is list
    torch.testing.assert_close(got[1], x - 1, rtol=1e-6, atol=1e-6)


def test_wrong_count_and_non_tensors_still_get_the_structure_errors() -> None:
    cm = fxonnx.compile(TwoOut(), (torch.randn(2, 3), torch.randn(2, 3)), provider="cpu")
    with pytest.raises(fxonnx.InputError, match="different structure"):
        cm(torch.randn(2, 3))
    with pytest.raises(fxonnx.InputError, match=r"input 'b' must be a torch.Tensor, got float"):
        cm(torch.randn(2, 3), 1.5)


class DictOut(nn.Module):
    def forward(self, a: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"z": a * 2, "y": a + 1}


class NestedDictOut(nn.Module):
    def forward(self, a: torch.Tensor) -> dict:
        return {"pair": (a + 1, a - 1), "one": a * 3}


def test_a_flat_dict_of_tensors_keeps_its_key_order_on_the_seen_path() -> None:
    cm = fxonnx.compile(DictOut(), (torch.randn(2, 3),), provider="cpu")
    assert cm._fast.out_kind == "dict" and cm._fast.keys == ("z", "y")
    x = torch.randn(4, 3)
    for _ in range(2):  # the first call checks the signature, the second takes run_seen
        got = cm(x)
        assert type(got) is dict and list(got) == ["z", "y"]
        torch.testing.assert_close(got["z"], x * 2, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got["y"], x + 1, rtol=1e-6, atol=1e-6)


def test_a_nested_dict_still_comes_back_nested() -> None:
    cm = fxonnx.compile(NestedDictOut(), (torch.randn(2, 3),), provider="cpu")
    assert cm._fast.out_kind == "tree"
    x = torch.randn(4, 3)
    for _ in range(2):
        got = cm(x)
        assert list(got) == ["pair", "one"] and type(got["pair"]) is tuple
        torch.testing.assert_close(got["pair"][1], x - 1, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(got["one"], x * 3, rtol=1e-6, atol=1e-6)
