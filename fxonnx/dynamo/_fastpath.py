"""torch.nn's inference fast-path ops, written out in the ops they compute.

In eval mode without grad, ``nn.TransformerEncoderLayer`` and ``nn.MultiheadAttention`` call
fused kernels (``aten._transformer_encoder_layer_fwd``, ``aten._native_multi_head_attention``)
that dynamo records as single ops. They have no ONNX counterpart, so without these
decompositions a compiled transformer ran every layer in torch. Written here as what the C++
kernels compute: linear projections, scaled dot-product attention over the heads with torch's
mask convention, residuals, layer norms and the feed-forward block. The fast path's masks are
float (-inf/0, ``F._canonical_mask``) or bool; the kernel reads any non-zero entry as masked
(a fully masked row comes out NaN there, and here). ``tests/dynamo/test_fastpath.py`` compares each with
the kernel.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

aten = torch.ops.aten


def native_multi_head_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    embed_dim: int,
    num_head: int,
    qkv_weight: Tensor,
    qkv_bias: Tensor,
    proj_weight: Tensor,
    proj_bias: Tensor,
    mask: Tensor | None = None,
    need_weights: bool = True,
    average_attn_weights: bool = True,
    mask_type: int | None = None,
) -> Any:
    """aten._native_multi_head_attention on batch-first [B, L, E] inputs."""
    if query.is_nested or query.dim() != 3:
        return NotImplemented
    head_dim = embed_dim // num_head
    if query is key and key is value:  # self-attention: one projection, as the kernel does
        # projected sequence-first: each of q, k, v is then [L, B, H, D] permuted to
        # [B, H, L, D], which onnxruntime folds into the attention MatMuls (FusedMatMul's
        # transBatch); from [B, L, H, D] each head split would be a Transpose of its own
        qkv = F.linear(query.transpose(0, 1).contiguous(), qkv_weight, qkv_bias)
        qkv = qkv.unflatten(-1, (3, num_head, head_dim))  # [L, B, 3, H, D]
        q, k, v = (qkv.select(2, i).permute(1, 2, 0, 3) for i in range(3))  # [B, H, L, D]
    else:
        w_q, w_k, w_v = qkv_weight.chunk(3)
        b_q, b_k, b_v = qkv_bias.chunk(3)

        def heads(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
            return F.linear(x, w, b).unflatten(-1, (num_head, head_dim)).transpose(1, 2)

        q, k, v = heads(query, w_q, b_q), heads(key, w_k, b_k), heads(value, w_v, b_v)
    scores = (q / math.sqrt(head_dim)) @ k.transpose(-2, -1)  # [B, H, L, S]
    masked = _masked(mask, mask_type)
    if masked is NotImplemented:
        return NotImplemented
    if masked is not None:
        scores = scores.masked_fill(masked, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # a fully masked row is NaN, as in the kernel
    out = F.linear((weights @ v).transpose(1, 2).flatten(2), proj_weight, proj_bias)
    if not need_weights:
        return out, None
    return out, (weights.mean(dim=1) if average_attn_weights else weights)


def _masked(mask: Tensor | None, mask_type: int | None) -> Any:
    """The mask as bool, broadcastable to the [B, H, L, S] scores (True: masked)."""
    if mask is None:
        return None
    masked = mask != 0 if mask.dtype != torch.bool else mask
    if mask_type == 1 and masked.dim() == 2:  # key padding, [B, S]
        return masked[:, None, None, :]
    if masked.dim() == 2:  # [L, S]
        return masked[None, None]
    if masked.dim() == 4:  # merged, [B, H or 1, L, S]
        return masked
    return NotImplemented


def transformer_encoder_layer_fwd(
    src: Tensor,
    embed_dim: int,
    num_heads: int,
    qkv_weight: Tensor,
    qkv_bias: Tensor,
    proj_weight: Tensor,
    proj_bias: Tensor,
    use_gelu: bool,
    norm_first: bool,
    eps: float,
    norm_weight_1: Tensor,
    norm_bias_1: Tensor,
    norm_weight_2: Tensor,
    norm_bias_2: Tensor,
    ffn_weight_1: Tensor,
    ffn_bias_1: Tensor,
    ffn_weight_2: Tensor,
    ffn_bias_2: Tensor,
    mask: Tensor | None = None,
    mask_type: int | None = None,
) -> Any:
    """aten._transformer_encoder_layer_fwd: one eval-mode encoder layer, batch first."""
    if src.is_nested or src.dim() != 3:
        return NotImplemented
    shape = (embed_dim,)
    x = F.layer_norm(src, shape, norm_weight_1, norm_bias_1, eps) if norm_first else src
    attended = native_multi_head_attention(
        x, x, x, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
        mask, False, True, mask_type,
    )  # fmt: skip
    if attended is NotImplemented:
        return NotImplemented
    x = attended[0] + src
    if not norm_first:
        x = F.layer_norm(x, shape, norm_weight_1, norm_bias_1, eps)
    residual = x
    if norm_first:
        x = F.layer_norm(x, shape, norm_weight_2, norm_bias_2, eps)
    hidden = F.linear(x, ffn_weight_1, ffn_bias_1)
    hidden = F.gelu(hidden) if use_gelu else F.relu(hidden)
    x = F.linear(hidden, ffn_weight_2, ffn_bias_2) + residual
    if not norm_first:
        x = F.layer_norm(x, shape, norm_weight_2, norm_bias_2, eps)
    return x


DECOMPOSITIONS = {
    aten._native_multi_head_attention.default: native_multi_head_attention,
    aten._transformer_encoder_layer_fwd.default: transformer_encoder_layer_fwd,
}
