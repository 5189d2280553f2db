"""Attention architectures: an `nn.TransformerEncoder` text classifier and a tiny ViT.

Both use the stock `nn.TransformerEncoderLayer` / `nn.MultiheadAttention` modules on purpose: those
are what users export, including their eval-mode fast paths.
"""

from __future__ import annotations

import torch
from torch import nn

from fxonnx.models._registry import register

TEXT_VOCAB, TEXT_SEQ, TEXT_DIM, TEXT_CLASSES = 1000, 128, 256, 10


class TransformerClassifier(nn.Module):
    """Token + learned position embedding, post-norm encoder stack, mean-pool, Linear."""

    def __init__(
        self,
        vocab: int = TEXT_VOCAB,
        max_len: int = TEXT_SEQ,
        d_model: int = TEXT_DIM,
        nhead: int = 4,
        num_layers: int = 4,
        dim_feedforward: int = 1024,
        num_classes: int = TEXT_CLASSES,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.pos_embedding = nn.Parameter(torch.randn(1, max_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout=0.1, batch_first=True
        )
        # No padding masks are ever passed, so nested tensors would never be used; saying so
        # keeps construction free of the "enable_nested_tensor" warning.
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.fc = nn.Linear(d_model, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens) + self.pos_embedding[:, : tokens.shape[1]]
        x = self.encoder(x)
        return self.fc(x.mean(dim=1))


class ViTBlock(nn.Module):
    """Pre-norm block: x + MHA(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Patch-conv embedding, class token, learned positions, pre-norm blocks, head on the token."""

    def __init__(
        self,
        image_size: int = 64,
        patch_size: int = 16,
        dim: int = 192,
        depth: int = 4,
        heads: int = 3,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(ViTBlock(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


@register(
    "transformer_encoder",
    description="nn.TransformerEncoder classifier: d=256, 4 layers, 4 heads, mean-pool, 10 classes",
    input_shapes=(("N", TEXT_SEQ),),
    input_dtypes=(torch.int64,),
    input_highs=(TEXT_VOCAB,),
    tags=("architecture", "attention", "embedding"),
)
def transformer_encoder() -> nn.Module:
    return TransformerClassifier()


@register(
    "vit_tiny",
    description="ViT on 64x64 images: 16x16 patches, d=192, 4 pre-norm blocks, 3 heads, 10 classes",
    input_shapes=(("N", 3, 64, 64),),
    tags=("architecture", "attention", "conv"),
)
def vit_tiny() -> nn.Module:
    return ViT()
