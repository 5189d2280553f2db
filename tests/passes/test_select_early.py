"""select_early: the rows an output picks (a class token, a last position, the last k
positions) are picked before the row-wise layers that compute them, and outputs and gradients
stay eager's; picks that attention, norms or other users mix are left where they are."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pass_helpers import assert_grads_match, assert_outputs_match, optimize
from torch import nn

from fxonnx import models
from fxonnx.passes._graph import static_shape

aten = torch.ops.aten
BATCH_AND_SEQ = {0: {0: "batch", 1: "seq"}}


def _rows_of(captured, target) -> list[tuple]:
    """The static input shapes of every ``target`` node (None for dynamic dims)."""
    return [
        static_shape(n.args[0])
        for n in captured.gm.graph.nodes
        if n.op == "call_function" and n.target is target
    ]


def test_vit_class_token_is_picked_before_the_last_blocks_mlp_and_queries() -> None:
    """The zoo's ViT reads token 0: after the pass its last MLP and attention output
    projection see [batch, 192] (not 17 tokens), its last attention has one query row, and
    outputs and gradients are eager's."""
    model, _ = models.get("vit_tiny", batch=2)

    def make(batch: int) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch)),)

    before, after, stats = optimize(model, make, ["select_early"])
    assert stats["select_early"]["moved:scaled_dot_product_attention.default"] == 1
    one_row = [s for s in _rows_of(after, aten.linear.default) if len(s) == 2 and s[-1] != 192 * 3]
    many_before = [s for s in _rows_of(before, aten.linear.default) if 17 in s]
    many_after = [s for s in _rows_of(after, aten.linear.default) if 17 in s]
    assert len(many_after) == len(many_before) - 2  # the last MLP's two linears
    assert len(one_row) >= 3  # ... and the output projection, on the picked rows
    queries = [s[-2] for s in _rows_of(after, aten.scaled_dot_product_attention.default)]
    assert sorted(queries) == [1, 17, 17, 17]
    assert_outputs_match(model, after, make, batches=(1, 3))
    assert_grads_match(model, after, make)


class Pooled(nn.Module):
    """An encoder block read at one position (a BERT pooler, a decoder's last token), or at
    the last ``keep`` positions; the mask as libraries pass it (a [batch, 1, 1, seq] padding
    mask, a [seq, seq] causal one, or is_causal)."""

    def __init__(self, mask: str = "none", pick: str = "first", keep: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mask, self.pick, self.keep = mask, pick, keep
        self.norm, self.qkv, self.out = nn.LayerNorm(16), nn.Linear(16, 48), nn.Linear(16, 16)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, s, 3, 2, 8).permute(2, 0, 3, 1, 4)
        kwargs: dict = {}
        if self.mask == "padding":
            kwargs["attn_mask"] = (torch.arange(s) < s - 1).view(1, 1, 1, s).expand(b, 1, 1, s)
        elif self.mask == "causal_tensor":
            kwargs["attn_mask"] = torch.ones(s, s, dtype=torch.bool).tril()
        elif self.mask == "is_causal":
            kwargs["is_causal"] = True
        h = F.scaled_dot_product_attention(q, k, v, **kwargs).transpose(1, 2).reshape(b, s, 16)
        x = x + self.out(h)
        x = x + self.mlp(self.norm(x))
        if self.pick == "first":
            return x[:, 0]
        if self.pick == "last":
            return x[:, -1]
        return x[:, -self.keep :]


def _x(batch: int, seq: int = 6) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, seq, 16, generator=torch.Generator().manual_seed(batch + seq)),)


def test_pooled_position_moves_into_the_queries_with_each_mask_kind() -> None:
    """A padding mask broadcast over queries stays whole; a [seq, seq] mask keeps only the
    picked query rows; both reach the attention and match eager (outputs and gradients)."""
    for mask, pick in (("none", "first"), ("padding", "first"), ("causal_tensor", "last")):
        model = Pooled(mask, pick).eval()
        _, after, stats = optimize(model, _x, ["select_early"])
        moved = stats["select_early"]
        assert moved["moved:scaled_dot_product_attention.default"] == 1, (mask, moved)
        assert moved["moved:linear.default"] >= 3, (mask, moved)  # the MLP's two, the output
        assert_outputs_match(model, after, _x)
        assert_grads_match(model, after, _x)


def test_last_positions_slice_moves_at_a_dynamic_seq() -> None:
    """``x[:, -2:]`` (a head on the last k positions) and ``x[:, -1]`` with seq dynamic: the
    slice goes through the MLP and into the queries; eager's values at three (batch, seq)."""
    for pick in ("keep", "last"):
        model = Pooled("causal_tensor", pick).eval()
        _, after, stats = optimize(model, _x, ["select_early"], dynamic_dims=BATCH_AND_SEQ)
        assert stats["select_early"]["moved:scaled_dot_product_attention.default"] == 1, pick
        for batch, seq in ((1, 3), (2, 6), (3, 9)):
            x = _x(batch, seq)
            with torch.no_grad():
                want, (got,) = model(*x), after.run_torch(*x)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_held_back_where_rows_mix_or_are_used_elsewhere() -> None:
    """is_causal: a query row's keys depend on its position, so a pick of the first row stops
    before the attention (the MLP still moves). A picked value with another user keeps its
    rows. A mean over the tokens mixes them: nothing to pick."""
    causal = Pooled("is_causal", "first").eval()
    _, after, stats = optimize(causal, _x, ["select_early"])
    assert stats["select_early"]["miss:causal"] == 1
    assert "moved:scaled_dot_product_attention.default" not in stats["select_early"]
    assert_outputs_match(causal, after, _x)

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = torch.relu(self.fc(x))
            return h[:, 0], h.sum(1)

    shared = Shared()
    _, after, stats = optimize(shared, _x, ["select_early"])
    assert stats["select_early"]["miss:shared"] == 1
    assert not [k for k in stats["select_early"] if k.startswith("moved:")]
    assert_outputs_match(shared, after, _x)

    class Mean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(x).mean(1))

    _, _, stats = optimize(Mean(), _x, ["select_early"])
    assert stats["select_early"] == {}


def test_a_slice_to_no_rows_of_a_one_row_residual() -> None:
    """Found by the fuzzer: ``(relu(x) + x)[:, 1:]`` on [batch, 1]. Both operands have the
    picked dim of size 1 without broadcasting; the slice leaves none of it, in both."""

    class Residual(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (torch.relu(x) + x)[:, 1:]

    def make(batch: int) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 1),)

    _, after, stats = optimize(Residual(), make, ["select_early"])
    assert stats["select_early"]["moved:add.Tensor"] == 1
    for batch in (1, 3):
        (got,) = after.run_torch(*make(batch))
        assert got.shape == (batch, 0)


class HandWritten(nn.Module):
    """Attention written out (matmul, softmax, matmul), as many model files do, read at the
    class token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = (f(x).view(b, s, 2, 8).transpose(1, 2) for f in (self.q, self.k, self.v))
        scores = (q @ k.transpose(-2, -1)) * 8**-0.5
        h = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, 16)
        x = x + h
        return (x + self.mlp(x))[:, 0]


def test_hand_written_attention_computes_one_query_row() -> None:
    """The pick reaches the query projection through both products and the softmax: q's
    linear runs on one token, k's and v's on all; eager's outputs and gradients."""
    model = HandWritten().eval()
    _, after, stats = optimize(model, _x, ["select_early"])
    moved = stats["select_early"]
    assert moved["moved:matmul.default"] == 2 and moved["moved:softmax.int"] == 1, moved
    rows = {
        n.args[1].name: static_shape(n.args[0])
        for n in after.gm.graph.nodes
        if n.target is aten.linear.default
    }
    assert rows["q_weight"] == (None, 1, 16)  # [batch, the class token, features]
    assert rows["k_weight"] == rows["v_weight"] == (None, 6, 16)
    assert rows["mlp_0_weight"] == (None, 16)
    assert_outputs_match(model, after, _x)
    assert_grads_match(model, after, _x)


def test_the_last_row_of_a_causal_attention_reads_every_key() -> None:
    """A decoder's last position under is_causal: that row's causal attention is the plain
    attention of one query, so the pick moves into it (is_causal dropped), at any seq."""
    model = Pooled("is_causal", "last").eval()
    _, after, stats = optimize(model, _x, ["select_early"], dynamic_dims=BATCH_AND_SEQ)
    assert stats["select_early"]["moved:scaled_dot_product_attention.default"] == 1
    (attention,) = [
        n for n in after.gm.graph.nodes if n.target is aten.scaled_dot_product_attention.default
    ]
    assert static_shape(attention.args[0])[-2] == 1 and not attention.kwargs.get("is_causal")
    for batch, seq in ((1, 3), (2, 6), (3, 9)):
        x = _x(batch, seq)
        with torch.no_grad():
            want, (got,) = model(*x), after.run_torch(*x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
