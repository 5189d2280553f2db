"""Recurrent models: a GRU language model with an explicit hidden state and a BiLSTM tagger.

`gru_lm` is the tutorial model: its hidden state is an input whose batch axis is 1, which is the
case exporters most often get wrong when marking dynamic axes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fxonnx.models._registry import register

GRU_VOCAB, GRU_EMBED, GRU_HIDDEN, GRU_SEQ = 100, 32, 64, 12
TAG_VOCAB, TAG_EMBED, TAG_HIDDEN, TAG_COUNT, TAG_SEQ = 500, 32, 64, 12, 20


class GRULanguageModel(nn.Module):
    """Embedding -> single-layer GRU -> Linear over the vocabulary; returns (logits, hidden)."""

    def __init__(
        self, vocab: int = GRU_VOCAB, embed: int = GRU_EMBED, hidden: int = GRU_HIDDEN
    ) -> None:
        super().__init__()
        self.hidden_size = hidden
        self.embedding = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, vocab)

    def init_hidden(self, batch: int) -> torch.Tensor:
        """Zero state shaped (num_layers, batch, hidden), the layout `nn.GRU` expects."""
        weight = self.fc.weight
        return weight.new_zeros(self.gru.num_layers, batch, self.hidden_size)

    def forward(
        self, tokens: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, hidden = self.gru(self.embedding(tokens), hidden)
        return self.fc(out), hidden


class LSTMTagger(nn.Module):
    """Embedding -> bidirectional LSTM -> Linear per token -> log_softmax over tags."""

    def __init__(
        self,
        vocab: int = TAG_VOCAB,
        embed: int = TAG_EMBED,
        hidden: int = TAG_HIDDEN,
        tags: int = TAG_COUNT,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(tokens))
        return F.log_softmax(self.fc(out), dim=-1)


@register(
    "gru_lm",
    description="GRU language model: Embedding(100, 32), GRU(32, 64), Linear(64, 100)",
    input_shapes=(("N", GRU_SEQ), (1, "N", GRU_HIDDEN)),
    input_dtypes=(torch.int64, torch.float32),
    input_highs=(GRU_VOCAB, None),
    output_batch_dims=(0, 1),
    tags=("tutorial", "rnn", "embedding"),
)
def gru_lm() -> nn.Module:
    return GRULanguageModel()


@register(
    "lstm_tagger",
    description="BiLSTM sequence tagger: Embedding(500, 32), BiLSTM(64), Linear to 12 tags",
    input_shapes=(("N", TAG_SEQ),),
    input_dtypes=(torch.int64,),
    input_highs=(TAG_VOCAB,),
    tags=("architecture", "rnn", "embedding"),
)
def lstm_tagger() -> nn.Module:
    return LSTMTagger()


class RNNTagger(nn.Module):
    """Seq-first tagger: tokens (seq, batch) -> Embedding -> 2-layer tanh RNN -> Linear."""

    def __init__(self, vocab: int = TAG_VOCAB, embed: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.rnn = nn.RNN(embed, hidden, 2)
        self.fc = nn.Linear(hidden, TAG_COUNT)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embedding(tokens))
        return F.log_softmax(self.fc(out), dim=-1)


class LSTMSeqFirst(nn.Module):
    """Seq-first 2-layer LSTM over features (seq, batch, 8) with an explicit (h0, c0) state
    shaped (layers, batch, hidden); returns the outputs and the final state."""

    def __init__(self, features: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, 2)
        self.head = nn.Linear(hidden, 4)

    def forward(
        self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, (h, c) = self.lstm(x, (h0, c0))
        return self.head(out), h, c


@register(
    "rnn_tagger",
    description="Seq-first RNN tagger: Embedding(500, 16), RNN(16, 32, 2 layers), Linear to 12",
    input_shapes=(("seq", "N"),),
    input_dtypes=(torch.int64,),
    input_highs=(TAG_VOCAB,),
    output_batch_dims=(1,),
    dims={"seq": TAG_SEQ},
    tags=("architecture", "rnn", "embedding", "seq-first"),
)
def rnn_tagger() -> nn.Module:
    return RNNTagger()


@register(
    "lstm_seq_first",
    description="Seq-first LSTM(8, 16, 2 layers) with explicit (h0, c0) state, Linear to 4",
    input_shapes=(("seq", "N", 8), (2, "N", 16), (2, "N", 16)),
    output_batch_dims=(1, 1, 1),
    dims={"seq": TAG_SEQ},
    tags=("architecture", "rnn", "seq-first"),
)
def lstm_seq_first() -> nn.Module:
    return LSTMSeqFirst()
