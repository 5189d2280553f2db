"""scaled_dot_product_attention (MatMul/Softmax, and the opset-23 Attention op), and the
torch.nn attention modules built on it, against eager at batches 2 and 5."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fxonnx import models
from fxonnx._errors import ExportError
from fxonnx.capture import capture
from fxonnx.export import lower


class Sdpa(nn.Module):
    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.kwargs = kwargs

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *mask: torch.Tensor):
        return F.scaled_dot_product_attention(q, k, v, *mask, **self.kwargs)


def _qkv(
    batch: int, heads: int = 4, kv_heads: int = 4, length: int = 6, source: int = 7, mask: str = ""
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(batch)
    q = torch.randn(batch, heads, length, 8, generator=g)
    k = torch.randn(batch, kv_heads, source, 8, generator=g)
    v = torch.randn(batch, kv_heads, source, 5, generator=g)
    if mask == "bool":  # row 1 sees no key: eager gives zeros there
        keep = torch.rand(batch, 1, length, source, generator=g) > 0.4
        keep[:, :, 1] = False
        return q, k, v, keep
    if mask == "bool_2d":
        keep = torch.rand(length, source, generator=g) > 0.4
        keep[2] = False
        return q, k, v, keep
    if mask == "key_padding":
        return q, k, v, torch.rand(batch, 1, 1, source, generator=g) > 0.3
    if mask == "float":
        bias = torch.randn(batch, heads, length, source, generator=g)
        bias[:, :, 0] = float("-inf")
        return q, k, v, bias
    return q, k, v


# name: (sdpa keyword arguments, input maker, batch dims)
CASES: dict[str, tuple[dict, Callable, list]] = {
    "plain": ({}, _qkv, [0, 0, 0]),
    "scale": ({"scale": 0.3}, _qkv, [0, 0, 0]),
    "causal": ({"is_causal": True}, _qkv, [0, 0, 0]),
    "causal_more_queries": (
        {"is_causal": True},
        functools.partial(_qkv, length=9, source=5),
        [0] * 3,
    ),
    "bool_mask": ({}, functools.partial(_qkv, mask="bool"), [0] * 4),
    "bool_mask_2d": ({}, functools.partial(_qkv, mask="bool_2d"), [0, 0, 0, None]),
    "key_padding_mask": ({}, functools.partial(_qkv, mask="key_padding"), [0] * 4),
    "float_mask": ({}, functools.partial(_qkv, mask="float"), [0] * 4),
    "gqa": ({"enable_gqa": True}, functools.partial(_qkv, heads=6, kv_heads=2), [0] * 3),
    "gqa_causal": (
        {"enable_gqa": True, "is_causal": True},
        functools.partial(_qkv, heads=6, kv_heads=3),
        [0] * 3,
    ),
    "shared_keys": (
        {},
        lambda b: (torch.randn(b, 2, 6, 8), torch.randn(7, 8), torch.randn(7, 5)),
        [0, None, None],
    ),
    "dynamic_head_size": (
        {},
        lambda b: (torch.randn(3, 6, b), torch.randn(3, 7, b), torch.randn(3, 7, 5)),
        [2, 2, None],
    ),
    "dynamic_length_causal": (
        {"is_causal": True},
        lambda b: (torch.randn(3, b, 8), torch.randn(3, b, 8), torch.randn(3, b, 4)),
        [1, 1, 1],
    ),
    "gqa_dynamic_heads": (
        {"enable_gqa": True},
        lambda b: (torch.randn(1, b, 5, 8), torch.randn(1, 1, 6, 8), torch.randn(1, 1, 6, 4)),
        [1, None, None],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_sdpa(onnx_matches: Callable, case: str) -> None:
    kwargs, make, batch_dims = CASES[case]
    model = onnx_matches(Sdpa(**kwargs), make, batch_dims=batch_dims)
    assert "Attention" not in {n.op_type for n in model.graph.node}


def _matches_at_opset(
    module: nn.Module, make: Callable, batch_dims: list, opset: int
) -> onnx.ModelProto:
    """The shared comparison at another opset: capture at batch 2, run at 2 and 5."""
    captured = capture(module.eval(), make(2), batch_dims=batch_dims)
    model = lower(captured, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    for batch in (2, 5):
        inputs = make(batch)
        with torch.no_grad():
            expected = module(*inputs)
        feeds = {s.name: t.numpy() for s, t in zip(captured.user_inputs, inputs, strict=True)}
        (got,) = session.run(None, feeds)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)
    return model


@pytest.mark.parametrize("case", CASES)
def test_sdpa_opset23_attention_op(case: str) -> None:
    kwargs, make, batch_dims = CASES[case]
    model = _matches_at_opset(Sdpa(**kwargs), make, batch_dims, 23)
    fused = all(len(make(2)[i].shape) == 4 for i in range(3)) and case != "dynamic_head_size"
    assert ("Attention" in {n.op_type for n in model.graph.node}) == fused


def test_sdpa_dropout_refused() -> None:
    captured = capture(Sdpa(dropout_p=0.1), _qkv(2))
    with pytest.raises(ExportError, match="dropout_p=0.1 is random"):
        lower(captured)


def test_sdpa_mask_with_is_causal_refused() -> None:
    """Tracing refuses this combination already; a graph built otherwise is refused here."""
    captured = capture(Sdpa(), _qkv(2, mask="bool"))
    sdpa = torch.ops.aten.scaled_dot_product_attention.default
    node = next(n for n in captured.gm.graph.nodes if n.target is sdpa)
    node.args = (*node.args[:4], 0.0, True)
    with pytest.raises(ExportError, match="both attn_mask and is_causal"):
        lower(captured)


class Mha(nn.Module):
    def __init__(self, batch_first: bool, need_weights: bool, average: bool = True) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=batch_first, kdim=5, vdim=5)
        self.need_weights, self.average = need_weights, average

    def forward(self, q: torch.Tensor, kv: torch.Tensor, *padding: torch.Tensor) -> tuple:
        return self.attn(
            q,
            kv,
            kv,
            key_padding_mask=padding[0] if padding else None,
            need_weights=self.need_weights,
            average_attn_weights=self.average,
        )


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
@pytest.mark.parametrize("need_weights", [True, False], ids=["weights", "no_weights"])
@pytest.mark.parametrize("key_padding", [True, False], ids=["padded", "unpadded"])
def test_multihead_attention(
    onnx_matches: Callable, batch_first: bool, need_weights: bool, key_padding: bool
) -> None:
    def make(batch: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(batch)
        shape = (batch, 4) if batch_first else (4, batch)
        q = torch.randn(*shape, 8, generator=g)
        kv = torch.randn(*((batch, 6) if batch_first else (6, batch)), 5, generator=g)
        padding = torch.rand(batch, 6, generator=g) > 0.5
        padding[:, 0] = False
        return (q, kv, padding) if key_padding else (q, kv)

    dim = 0 if batch_first else 1
    onnx_matches(
        Mha(batch_first, need_weights), make, batch_dims=[dim, dim] + ([0] if key_padding else [])
    )


def test_multihead_attention_per_head_weights(onnx_matches: Callable) -> None:
    onnx_matches(
        Mha(True, True, average=False),
        lambda b: (torch.randn(b, 4, 8), torch.randn(b, 6, 5)),
    )


class Encoder(nn.Module):
    def __init__(self, norm_first: bool, causal: bool) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            16, 2, 32, dropout=0.1, batch_first=True, norm_first=norm_first, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.causal = causal

    def forward(self, x: torch.Tensor, *padding: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1]) if self.causal else None
        pad = padding[0].float().masked_fill(padding[0], float("-inf")) if padding else None
        return self.encoder(x, mask=mask, src_key_padding_mask=pad, is_causal=self.causal)


@pytest.mark.parametrize(
    ("norm_first", "causal", "key_padding"),
    [(False, False, False), (True, True, False), (False, False, True), (True, True, True)],
    ids=["post_norm", "pre_norm_causal", "post_norm_padded", "pre_norm_causal_padded"],
)
def test_transformer_encoder(
    onnx_matches: Callable, norm_first: bool, causal: bool, key_padding: bool
) -> None:
    def make(batch: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, 5, 16, generator=g)
        padding = torch.rand(batch, 5, generator=g) > 0.5
        padding[:, 0] = False
        return (x, padding) if key_padding else (x,)

    onnx_matches(Encoder(norm_first, causal), make, batch_dims=[0, 0] if key_padding else [0])


@pytest.mark.parametrize("name", ["self_attention", "transformer_encoder", "vit_tiny"])
def test_zoo_attention_models(onnx_matches: Callable, name: str) -> None:
    module, _ = models.get(name, batch=2)
    onnx_matches(module, lambda b: models.get(name, batch=b)[1])


@pytest.mark.parametrize("opset", [18, 19, 20, 21])
def test_rows_without_keys_are_zero_at_every_opset(opset: int) -> None:
    """A bool mask's dead rows (row 1 sees no key) come out 0 as in eager. From opset 20
    ReduceMax reads the bool mask itself and Where keeps the live rows (no Cast, no Equal);
    before it the mask is reduced as int32."""
    make = functools.partial(_qkv, mask="bool")
    assert not make(2)[3][:, :, 1].any()
    model = _matches_at_opset(Sdpa(), make, [0] * 4, opset)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("ReduceMax") == 1
    if opset >= 20:
        assert "Cast" not in ops and "Equal" not in ops, ops
    else:
        assert "Cast" in ops and "Equal" in ops, ops
