"""known_values: the packed-sequence check of library-style decoder masks, all True on arange
positions, is folded away at any (batch, seq); facts are checked against eager values."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from pass_helpers import assert_outputs_match, call_targets, optimize
from torch import nn

import fxonnx
from fxonnx.capture import capture
from fxonnx.passes.known_values import Facts

aten = torch.ops.aten
BATCH_AND_SEQ = {0: {0: "batch", 1: "seq"}}


def packed_causal_mask(position_ids: torch.Tensor, prepend_step: int = 1) -> torch.Tensor:
    """As recent model libraries write it: sequences start where positions do not step by 1."""
    first = position_ids[:, :1] - prepend_step
    starts = torch.diff(position_ids, dim=-1, prepend=first) != 1
    sequence_ids = starts.cumsum(-1)
    cache_position = torch.arange(position_ids.shape[-1])
    causal = cache_position[None, :] <= cache_position[:, None]
    same = sequence_ids[:, :, None] == sequence_ids[:, None, :]
    return (causal[None] & same)[:, None]


class Decoder(nn.Module):
    """One attention over [batch, seq, 16] with the mask built from arange positions (or from
    positions given as an input, where nothing is known)."""

    def __init__(self, positions_given: bool = False, prepend_step: int = 1) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.positions_given, self.prepend_step = positions_given, prepend_step

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        b, s, _ = x.shape
        if not self.positions_given:
            positions = torch.arange(s).unsqueeze(0).expand(b, -1)
        mask = packed_causal_mask(positions, self.prepend_step)
        q, k, v = self.qkv(x).view(b, s, 3, 2, 8).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).flatten(2)


def _x(batch: int, seq: int = 7) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, seq, 16, generator=torch.Generator().manual_seed(batch + seq)),)


def test_packed_check_on_arange_positions_folds_away_at_any_batch_and_seq() -> None:
    model = Decoder().eval()
    before, after, stats = optimize(model, _x, ["known_values", "dce"], dynamic_dims=BATCH_AND_SEQ)
    assert stats["known_values"] == {"rewritten": 1}
    for gone in (aten.diff.default, aten.cumsum.default, aten.__and__.Tensor):
        assert gone in call_targets(before) and gone not in call_targets(after)
    assert_outputs_match(model, after, _x)
    cm = fxonnx.compile(model, _x(2), dynamic_dims=BATCH_AND_SEQ, provider="cpu")
    assert {"CumSum", "And"}.isdisjoint(n.op_type for n in cm.onnx_model.graph.node)
    for batch, seq in ((1, 3), (3, 11), (2, 20)):
        (x,) = _x(batch, seq)
        torch.testing.assert_close(cm(x), model(x), rtol=1e-5, atol=1e-6)


def test_positions_from_an_input_or_a_check_that_is_not_all_true_stay() -> None:
    given = Decoder(positions_given=True).eval()

    def with_positions(batch: int) -> tuple[torch.Tensor, ...]:
        positions = torch.tensor([0, 1, 2, 0, 1, 2, 3]).expand(batch, -1)  # two packed
        return (*_x(batch), positions)

    _, after, stats = optimize(given, with_positions, ["known_values"])
    assert stats["known_values"] == {} and aten.cumsum.default in call_targets(after)
    assert_outputs_match(given, after, with_positions)
    # prepend first - 2: the first position "starts" a sequence, so the check is not constant
    shifted = Decoder(prepend_step=2).eval()
    _, after, stats = optimize(shifted, _x, ["known_values"], dynamic_dims=BATCH_AND_SEQ)
    assert stats["known_values"] == {} and aten.cumsum.default in call_targets(after)
    assert_outputs_match(shifted, after, _x)


class MaskOut(nn.Module):
    """The mask is an output too, so its [batch, 1, seq, seq] shape must stay."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s = x.shape[:2]
        mask = packed_causal_mask(torch.arange(s).unsqueeze(0).expand(b, -1))
        return x.sum(-1), mask


def test_an_operand_that_only_broadcasts_is_not_used_where_its_shape_shows() -> None:
    model = MaskOut()
    _, after, stats = optimize(model, _x, ["known_values"], dynamic_dims=BATCH_AND_SEQ)
    assert stats["known_values"] == {"miss:shape_differs": 1}
    assert_outputs_match(model, after, _x)


class LowerRankCausal(nn.Module):
    """The causal half is [seq, seq] (no leading 1): unsqueezing the result at dim 1 addresses
    its dims differently, so the and must stay."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        positions = torch.arange(s).unsqueeze(0).expand(b, -1)
        steps = torch.diff(positions, prepend=positions[:, :1] - 1)
        same = (steps[:, :, None] == 1).expand(b, s, s)
        causal = torch.arange(s)[None, :] <= torch.arange(s)[:, None]
        q = x.view(b, s, 2, 8).transpose(1, 2)
        mask = (causal & same)[:, None]
        return F.scaled_dot_product_attention(q, q, q, attn_mask=mask)


def test_a_lower_rank_operand_is_not_used_in_place_of_the_and() -> None:
    model = LowerRankCausal()
    _, after, stats = optimize(model, _x, ["known_values"], dynamic_dims=BATCH_AND_SEQ)
    assert stats["known_values"] == {"miss:shape_differs": 1}
    assert_outputs_match(model, after, _x)


class SameShape(nn.Module):
    """``x > 0`` and-ed with all-True tensors (one of its shape, one scalar) and or-ed with an
    all-False one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[-1]).expand(x.shape)
        steps = torch.diff(ramp, prepend=ramp[..., :1] - 1)
        kept = (x > 0) & (steps == 1) & x.new_ones((), dtype=torch.bool)  # as libraries start
        return (kept | (steps != 1)).float()


def test_identity_operands_of_and_or_are_dropped_when_shapes_agree() -> None:
    model = SameShape()
    _, after, stats = optimize(model, _x, ["known_values", "dce"])
    assert stats["known_values"] == {"rewritten": 3}
    assert aten.diff.default not in call_targets(after)
    assert_outputs_match(model, after, _x)


class Ints(nn.Module):
    """Integer expressions whose values follow from the shapes; each one is an output."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b, s = x.shape[:2]
        pos = torch.arange(s).unsqueeze(0).expand(b, -1)
        ramp = torch.arange(3, s + 3, 2)
        shifted = -(pos[:, 1:] * 3) + pos[:, :1] - 4
        diffs = torch.diff(pos, prepend=pos[:, :1] - 1)
        ones = (diffs == 1).cumsum(-1)
        both = (diffs[:, :, None] == diffs[:, None, :]) & (diffs[:, :, None] != 2)
        return pos, ramp, shifted[:, ::2], diffs, ones, both.long(), ~(diffs > 5)


def test_every_fact_reproduces_the_eager_values() -> None:
    """For each output the pass has a fact for, offset + sum(step * index) is its value."""
    model = Ints()
    (x,) = _x(3, 9)
    captured = capture(model, (x,), dynamic_dims=BATCH_AND_SEQ)
    facts = Facts(captured.gm.graph)
    (output,) = [n for n in captured.gm.graph.nodes if n.op == "output"]
    results = model(x)
    assert [facts.of(node) is not None for node in output.args[0]] == [True] * len(results)
    for node, want in zip(output.args[0], results, strict=True):
        fact = facts.of(node)
        got = torch.full(want.shape, fact.offset, dtype=torch.int64)
        for dim, step in enumerate(fact.steps):
            index = torch.arange(want.shape[dim]).view(
                [-1 if d == dim else 1 for d in range(want.dim())]
            )
            got = got + step * index
        assert torch.equal(got.to(want.dtype), want), node.name


def test_library_style_llama_loses_its_packed_check() -> None:
    from fxonnx import models

    model, inputs = models.get("llama_tiny", batch=2)
    info = models.info("llama_tiny")
    cm = fxonnx.compile(model, inputs, dynamic_dims=info.dynamic_dims, provider="cpu")
    stats = {p["name"]: p["stats"] for p in cm.report.passes}
    assert stats["known_values"] == {"rewritten": 1}
    assert "CumSum" not in {n.op_type for n in cm.onnx_model.graph.node}
    for batch, seq in itertools.product((1, 3), (5, 16)):
        ids = torch.randint(0, 64, (batch, seq), generator=torch.Generator().manual_seed(seq))
        torch.testing.assert_close(cm(ids)["logits"], model(ids)["logits"], rtol=1e-4, atol=1e-5)


class PaddingMask(nn.Module):
    """The padding half of a library mask: ``mask[batch_idx, kv_idx]`` with broadcast aranges
    (in order, or shifted by one / transposed, which are real gathers)."""

    def __init__(self, kind: str = "in_order") -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        b, s = attention_mask.shape
        padding = attention_mask.bool()
        batch_idx = torch.arange(b)[:, None, None, None]
        kv_idx = torch.arange(s)[None, None, None, :]
        if self.kind == "shifted":
            kv_idx = (kv_idx + 1) % s
        if self.kind == "transposed":
            return padding[torch.arange(b).view(1, 1, 1, b), kv_idx.view(1, 1, s, 1)].float()
        return x.masked_fill(~padding[batch_idx, kv_idx], 0.0)


def _padded(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(batch)
    mask = torch.ones(batch, 6, dtype=torch.int64)
    mask[0, :2] = 0
    return torch.randn(batch, 2, 6, 6, generator=gen), mask


def test_indexing_that_reads_every_element_in_order_becomes_unsqueezes() -> None:
    model = PaddingMask()
    before, after, stats = optimize(model, _padded, ["known_values"])
    assert stats["known_values"] == {"index_as_view": 1}
    assert aten.index.Tensor in call_targets(before)
    assert aten.index.Tensor not in call_targets(after)
    assert_outputs_match(model, after, _padded, batches=(2, 3))
    for kind in ("shifted", "transposed"):
        other = PaddingMask(kind)
        _, after, stats = optimize(other, _padded, ["known_values"])
        assert "index_as_view" not in stats["known_values"], kind
        assert aten.index.Tensor in call_targets(after), kind
        assert_outputs_match(other, after, _padded, batches=(2, 3))
