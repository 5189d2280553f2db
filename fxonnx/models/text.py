"""Text models written the way current model libraries write them (plain torch, seeded weights).

`bert_tiny` is a BERT-style encoder: token + position (`arange(seq)`) + token-type embeddings,
an int attention mask turned into an additive float mask with `(1 - mask) * finfo.min`,
post-LN layers with hand-written attention, a tanh pooler, and a dict of outputs.
`llama_tiny` is a Llama-style decoder: RMSNorm written as `pow/mean/rsqrt` in float32, rotary
embeddings computed from positions, grouped-query attention (`repeat_kv` via expand + reshape),
SwiGLU MLPs, and a causal mask built from position comparisons together with the
packed-sequence check (`torch.diff(position_ids)` then `(diff != 1).cumsum(-1)`).
Both take any batch and sequence length: their `dynamic_dims` name `batch` and `seq`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fxonnx.models._registry import register

BERT_VOCAB, BERT_HIDDEN, BERT_HEADS, BERT_LAYERS, BERT_MAX_POS = 120, 32, 4, 2, 64
LLAMA_VOCAB, LLAMA_HIDDEN, LLAMA_HEADS, LLAMA_KV_HEADS, LLAMA_LAYERS = 128, 32, 4, 2, 2
SEQ = 12


class BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.size()
        return x.view(b, s, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = F.softmax(scores + additive_mask, dim=-1)
        context = torch.matmul(probs, v).transpose(1, 2).contiguous()
        return context.view(context.size(0), context.size(1), -1)


class BertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.attention = BertSelfAttention(hidden, heads)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, 4 * hidden)
        self.output = nn.Linear(4 * hidden, hidden)
        self.out_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.attn_out(self.attention(x, additive_mask)))
        return self.out_norm(x + self.output(F.gelu(self.intermediate(x))))


class BertTiny(nn.Module):
    """Embeddings -> 2 post-LN encoder layers -> pooler; returns a dict like library models."""

    def __init__(self) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(BERT_VOCAB, BERT_HIDDEN)
        self.position_embeddings = nn.Embedding(BERT_MAX_POS, BERT_HIDDEN)
        self.token_type_embeddings = nn.Embedding(2, BERT_HIDDEN)
        self.embed_norm = nn.LayerNorm(BERT_HIDDEN, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer(BERT_HIDDEN, BERT_HEADS) for _ in range(BERT_LAYERS))
        self.pooler = nn.Linear(BERT_HIDDEN, BERT_HIDDEN)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        seq = input_ids.size(1)
        position_ids = torch.arange(seq, device=input_ids.device).unsqueeze(0)
        token_type_ids = torch.zeros_like(input_ids)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(position_ids)
            + self.token_type_embeddings(token_type_ids)
        )
        x = self.embed_norm(x)
        dtype = x.dtype
        extended = attention_mask[:, None, None, :].to(dtype)
        additive_mask = (1.0 - extended) * torch.finfo(dtype).min
        for layer in self.layers:
            x = layer(x, additive_mask)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return {"last_hidden_state": x, "pooler_output": pooled}


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype)


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(hidden: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(batch, kv_heads, seq, dim) -> (batch, kv_heads * n_rep, seq, dim)."""
    b, kv, s, d = hidden.shape
    if n_rep == 1:
        return hidden
    hidden = hidden[:, :, None, :, :].expand(b, kv, n_rep, s, d)
    return hidden.reshape(b, kv * n_rep, s, d)


class LlamaAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head_dim = LLAMA_HIDDEN // LLAMA_HEADS
        self.groups = LLAMA_HEADS // LLAMA_KV_HEADS
        self.q_proj = nn.Linear(LLAMA_HIDDEN, LLAMA_HEADS * self.head_dim, bias=False)
        self.k_proj = nn.Linear(LLAMA_HIDDEN, LLAMA_KV_HEADS * self.head_dim, bias=False)
        self.v_proj = nn.Linear(LLAMA_HIDDEN, LLAMA_KV_HEADS * self.head_dim, bias=False)
        self.o_proj = nn.Linear(LLAMA_HEADS * self.head_dim, LLAMA_HIDDEN, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        shape = (*x.shape[:-1], -1, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2)
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, self.groups), repeat_kv(v, self.groups)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(*x.shape[:-1], -1).contiguous()
        return self.o_proj(out)


class LlamaMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(LLAMA_HIDDEN, 3 * LLAMA_HIDDEN, bias=False)
        self.up_proj = nn.Linear(LLAMA_HIDDEN, 3 * LLAMA_HIDDEN, bias=False)
        self.down_proj = nn.Linear(3 * LLAMA_HIDDEN, LLAMA_HIDDEN, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input_layernorm = LlamaRMSNorm(LLAMA_HIDDEN)
        self.self_attn = LlamaAttention()
        self.post_attention_layernorm = LlamaRMSNorm(LLAMA_HIDDEN)
        self.mlp = LlamaMLP()

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


def causal_packed_mask(position_ids: torch.Tensor) -> torch.Tensor:
    """(batch, 1, seq, seq) bool: key j visible from query i when j <= i within one packed
    sequence (a new sequence starts wherever positions do not step by one)."""
    first = position_ids[:, :1] - 1
    starts = torch.diff(position_ids, dim=-1, prepend=first) != 1
    sequence_ids = starts.cumsum(-1)
    seq = position_ids.shape[-1]
    cache_position = torch.arange(seq, device=position_ids.device)
    causal = cache_position[None, :] <= cache_position[:, None]
    same = sequence_ids[:, :, None] == sequence_ids[:, None, :]
    return (causal[None] & same)[:, None]


class LlamaTiny(nn.Module):
    """Embedding -> 2 decoder layers -> RMSNorm -> LM head; returns {"logits": ...}."""

    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(LLAMA_VOCAB, LLAMA_HIDDEN)
        self.layers = nn.ModuleList(LlamaDecoderLayer() for _ in range(LLAMA_LAYERS))
        self.norm = LlamaRMSNorm(LLAMA_HIDDEN)
        self.rotary_emb = LlamaRotaryEmbedding(LLAMA_HIDDEN // LLAMA_HEADS)
        self.lm_head = nn.Linear(LLAMA_HIDDEN, LLAMA_VOCAB, bias=False)

    def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.embed_tokens(input_ids)
        seq = input_ids.shape[1]
        position_ids = torch.arange(seq, device=x.device).unsqueeze(0).expand(x.shape[0], -1)
        cos, sin = self.rotary_emb(x, position_ids)
        mask = causal_packed_mask(position_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return {"logits": self.lm_head(self.norm(x))}


@register(
    "bert_tiny",
    description="BERT-style encoder: 2 post-LN layers, hidden 32, 4 heads, mask input, pooler",
    input_shapes=(("N", "seq"), ("N", "seq")),
    input_dtypes=(torch.int64, torch.int64),
    input_highs=(BERT_VOCAB, 2),
    output_batch_dims=(0, 0),
    dims={"seq": SEQ},
    tags=("architecture", "transformer", "text", "library-style"),
)
def bert_tiny() -> nn.Module:
    return BertTiny()


@register(
    "llama_tiny",
    description="Llama-style decoder: 2 layers, RMSNorm, rotary, GQA 4/2 heads, SwiGLU",
    input_shapes=(("N", "seq"),),
    input_dtypes=(torch.int64,),
    input_highs=(LLAMA_VOCAB,),
    dims={"seq": SEQ},
    tags=("architecture", "transformer", "text", "library-style"),
)
def llama_tiny() -> nn.Module:
    return LlamaTiny()
