"""torch.nn Transformer layers with masks: captured the way eager inference computes them
(nested-tensor zeros at padded positions, causal-mask detection without reading values)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxonnx

D = 16


def _encoder(batch_first: bool = True, final_norm: bool = False, **layer: object) -> nn.Module:
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(D, 4, 32, dropout=0.0, batch_first=batch_first, **layer)
    norm = nn.LayerNorm(D) if final_norm else None
    if norm is not None:
        nn.init.normal_(norm.bias)  # eager's padded rows are norm(0) = bias: make that visible
    return nn.TransformerEncoder(block, 2, norm=norm)


class Padded(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return self.encoder(x, src_key_padding_mask=pad)


class Masked(nn.Module):
    """A causal ``mask`` without the ``is_causal`` hint (torch detects it by value), with or
    without a padding mask, or the hint alone."""

    def __init__(self, encoder: nn.Module, padded: bool, hinted: bool = False) -> None:
        super().__init__()
        self.encoder, self.padded, self.hinted = encoder, padded, hinted

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        if self.hinted:
            return self.encoder(x, mask=mask, is_causal=True)
        return self.encoder(x, mask=mask, src_key_padding_mask=pad if self.padded else None)


def _pad(right: bool = True) -> torch.Tensor:
    pad = torch.zeros(3, 7, dtype=torch.bool)
    if right:
        pad[0, 5:], pad[1, 6:] = True, True
    else:
        pad[0, :2] = True
    return pad


def _check(model: nn.Module, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """compile (verified at batch 3 and 1) and compare again here; returns eager's output."""
    model = model.eval()
    cm = fxonnx.compile(model, (x, pad), provider="cpu")
    with torch.no_grad():
        want = model(x, pad)
    torch.testing.assert_close(cm(x, pad), want, rtol=1e-4, atol=1e-5)
    return want


CASES = {
    "post_norm_relu": lambda: Padded(_encoder()),
    "gelu": lambda: Padded(_encoder(activation="gelu")),
    "norm_first": lambda: Padded(_encoder(norm_first=True)),  # no nested path: no zeros
    "final_norm": lambda: Padded(_encoder(final_norm=True)),
    "causal_and_padding": lambda: Masked(_encoder(), padded=True),
    "causal_detected": lambda: Masked(_encoder(norm_first=True), padded=False),
    "causal_hinted": lambda: Masked(_encoder(activation="gelu"), padded=False, hinted=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_encoder_with_masks_matches_eager(name: str) -> None:
    _check(CASES[name](), torch.randn(3, 7, D), _pad())


def test_padded_rows_are_the_nested_paths_zeros() -> None:
    pad = _pad()
    want = _check(Padded(_encoder()), torch.randn(3, 7, D), pad)
    assert (want[pad] == 0).all()  # the eager behaviour the graph must reproduce


def test_left_padding_takes_the_regular_path() -> None:
    """Not right-padded: eager's mask_check refuses the nested path, so no zeros."""
    pad = _pad(right=False)
    want = _check(Padded(_encoder()), torch.randn(3, 7, D), pad)
    assert (want[pad] != 0).any()


def test_float_padding_mask_zeros_like_a_bool_one() -> None:
    pad = _pad()
    additive = torch.zeros(3, 7).masked_fill(pad, float("-inf"))
    want = _check(Padded(_encoder()), torch.randn(3, 7, D), additive)
    assert (want[pad] == 0).all()


def test_sequence_first_takes_the_regular_path() -> None:
    """torch builds no nested path for batch_first=False (use_nested_tensor is False)."""
    pad = _pad()
    want = _check(Padded(_encoder(batch_first=False)), torch.randn(7, 3, D), pad)
    assert (want.transpose(0, 1)[pad] != 0).any()


def test_fast_path_off_means_no_zeros_and_the_flag_is_restored() -> None:
    pad = _pad()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        want = _check(Padded(_encoder()), torch.randn(3, 7, D), pad)
        assert not torch.backends.mha.get_fastpath_enabled()
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert (want[pad] != 0).any()
    assert torch.backends.mha.get_fastpath_enabled()


class Seq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.t = nn.Transformer(D, 4, 2, 2, 32, dropout=0.0, batch_first=True, norm_first=True)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        return self.t(
            src, tgt, tgt_mask=causal, src_key_padding_mask=pad, memory_key_padding_mask=pad
        )


def test_transformer_with_masks_matches_eager() -> None:
    model = Seq2Seq().eval()
    src, tgt, pad = torch.randn(3, 7, D), torch.randn(3, 5, D), _pad()
    cm = fxonnx.compile(model, (src, tgt, pad), provider="cpu")
    with torch.no_grad():
        want = model(src, tgt, pad)
    torch.testing.assert_close(cm(src, tgt, pad), want, rtol=1e-4, atol=1e-5)


def test_training_step_with_a_detected_causal_mask(tmp_path) -> None:  # noqa: ANN001
    """export_training traces the same way: the value-based causal detection does not stop it."""
    model = Masked(_encoder(), padded=False).train()
    x, pad, target = torch.randn(3, 7, D), _pad(), torch.randn(3, 7, D)
    onnx_model = fxonnx.export_training(
        model, torch.nn.functional.mse_loss, (x, pad), (target,), tmp_path / "step.onnx"
    )
    assert any(o.name == "loss" for o in onnx_model.graph.output)
