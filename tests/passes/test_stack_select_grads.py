"""stack_select_grads: the gradients of every part of a select split, summed as zero-padded
select_backwards (aot_autograd's backward of a packed q/k/v projection), become one stack;
a sum that misses a part, or whose parts are used elsewhere, is left as it is."""

from __future__ import annotations

import torch
from fn_module import Fn
from pass_helpers import assert_outputs_match, call_targets, optimize

aten = torch.ops.aten


def _grads(batch: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(batch)
    return tuple(torch.randn(batch, 4, 5, generator=gen) for _ in range(3))


def _summed(indices: tuple[int, ...]):
    def fn(*grads: torch.Tensor) -> torch.Tensor:
        sizes = [grads[0].shape[0], 3, 4, 5]
        parts = [aten.select_backward(g, sizes, 1, i) for g, i in zip(grads, indices, strict=True)]
        return parts[0] + parts[1] + parts[2]

    return fn


def test_every_part_of_a_select_is_one_stack_in_index_order() -> None:
    model = Fn(_summed((2, 0, 1)))  # summed out of order, as aot_autograd does
    _, after, stats = optimize(model, _grads, ["stack_select_grads"])
    assert stats["stack_select_grads"] == {"stacked": 1}
    targets = call_targets(after)
    assert aten.stack.default in targets and aten.select_backward.default not in targets
    assert_outputs_match(model, after, _grads)


def test_a_sum_missing_a_part_stays() -> None:
    model = Fn(_summed((0, 1, 1)))  # index 2 has no gradient; index 1 two
    _, after, stats = optimize(model, _grads, ["stack_select_grads"])
    assert stats["stack_select_grads"] == {}
    assert aten.select_backward.default in call_targets(after)
    assert_outputs_match(model, after, _grads)


def test_a_sum_with_a_number_stays() -> None:
    model = Fn(lambda g, *_: g + 1)
    _, after, stats = optimize(model, _grads, ["stack_select_grads"])
    assert stats["stack_select_grads"] == {}
    assert_outputs_match(model, after, _grads)
