"""Models nobody here wrote: randomly initialised transformers architectures, at dynamic batch
and seq.

For each architecture: ``fxonnx.compile`` with ``input_ids``/``attention_mask`` dims named
``batch`` and ``seq``, then eager against compiled at three (batch, seq) pairs with left
padding in the mask; optionally ``check_gradients`` (``--grad``) and the onnxruntime latency
of the dynamic export against a static one at the example shape (``--latency``). Needs
``transformers`` importable (``pip install transformers``, or a ``--target`` directory on
PYTHONPATH); fxonnx itself does not depend on it. Weights are random: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import feeds, session  # noqa: E402

import fxonnx  # noqa: E402

DIMS = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
VOCAB = 128


def _architectures() -> dict[str, Callable[[], torch.nn.Module]]:
    import transformers as tf

    def tiny(cls: type, **kw: object) -> object:
        base = dict(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
        )
        return cls(**{**base, **kw})

    return {
        "llama": lambda: tf.LlamaForCausalLM(tiny(tf.LlamaConfig, num_key_value_heads=2)),
        "qwen2": lambda: tf.Qwen2ForCausalLM(tiny(tf.Qwen2Config, num_key_value_heads=2)),
        "mistral": lambda: tf.MistralForCausalLM(tiny(tf.MistralConfig, num_key_value_heads=2)),
        "gemma": lambda: tf.GemmaForCausalLM(
            tiny(tf.GemmaConfig, num_key_value_heads=2, head_dim=8)
        ),
        "phi3": lambda: tf.Phi3ForCausalLM(
            tiny(tf.Phi3Config, num_key_value_heads=2, pad_token_id=0, eos_token_id=1)
        ),
        "gpt2": lambda: tf.GPT2LMHeadModel(
            tf.GPT2Config(
                vocab_size=VOCAB,
                n_embd=32,
                n_layer=2,
                n_head=4,
                n_positions=64,
                bos_token_id=0,
                eos_token_id=1,
            )
        ),
        "gptneox": lambda: tf.GPTNeoXForCausalLM(tiny(tf.GPTNeoXConfig)),
        "falcon": lambda: tf.FalconForCausalLM(
            tf.FalconConfig(
                vocab_size=VOCAB,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                new_decoder_architecture=False,
            )
        ),
        "opt": lambda: tf.OPTForCausalLM(
            tf.OPTConfig(
                vocab_size=VOCAB,
                hidden_size=32,
                ffn_dim=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=64,
                word_embed_proj_dim=32,
            )
        ),
        "bert": lambda: tf.BertModel(tiny(tf.BertConfig)),
        "roberta": lambda: tf.RobertaModel(tiny(tf.RobertaConfig, pad_token_id=1)),
        "distilbert": lambda: tf.DistilBertModel(
            tf.DistilBertConfig(
                vocab_size=VOCAB,
                dim=32,
                hidden_dim=64,
                n_layers=2,
                n_heads=4,
                max_position_embeddings=64,
            )
        ),
        "t5_encoder": lambda: tf.T5EncoderModel(
            tf.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
        ),
    }


class TokensIn(torch.nn.Module):
    """(input_ids, attention_mask) -> logits or last hidden state, without the KV cache."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _tokens(batch: int, seq: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    mask[0, : seq // 3] = 0  # left padding in the first row
    return ids, mask


def _latency(model: torch.nn.Module, example: tuple, rounds: int) -> tuple[float, float]:
    """Median µs of the static and the dynamic export at the example shape, interleaved."""
    sessions = [session(fxonnx.export(model, example, dynamic_dims=d)) for d in (None, DIMS)]
    inputs = [feeds(s, example) for s in sessions]
    samples: list[list[float]] = [[], []]
    for _ in range(rounds):
        for k, (s, f) in enumerate(zip(sessions, inputs, strict=True)):
            for _ in range(10):
                s.run(None, f)
            t0 = time.perf_counter()
            for _ in range(100):
                s.run(None, f)
            samples[k].append((time.perf_counter() - t0) / 100 * 1e6)
    return statistics.median(samples[0]), statistics.median(samples[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated (default: all)")
    parser.add_argument("--grad", action="store_true", help="also run check_gradients")
    parser.add_argument("--latency", action="store_true", help="dynamic vs static ORT latency")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        archs = _architectures()
    except ImportError:
        sys.exit("library_models.py needs transformers: pip install transformers")
    names = [n for n in args.models.split(",") if n] or list(archs)
    print("| model | compile s | nodes | worst abs diff, 3 (batch, seq) | grad | dyn / static |")
    print("|---|---:|---:|---:|---|---:|")
    for name in names:
        torch.manual_seed(0)
        model = TokensIn(archs[name]()).eval()
        example = _tokens(2, 12, 0)
        try:
            t0 = time.perf_counter()
            cm = fxonnx.compile(model, example, dynamic_dims=DIMS, provider="cpu")
            elapsed = time.perf_counter() - t0
            worst = 0.0
            for seed, (batch, seq) in enumerate(((1, 5), (3, 17), (2, 30))):
                x = _tokens(batch, seq, seed + 1)
                with torch.no_grad():
                    worst = max(worst, float((model(*x) - cm(*x)).abs().max()))
            grad = ""
            if args.grad:
                grad = (
                    "ok"
                    if fxonnx.check_gradients(model, example, dynamic_dims=DIMS).ok
                    else "FAILED"
                )
            ratio = ""
            if args.latency:
                static, dynamic = _latency(model, example, args.rounds)
                ratio = f"{dynamic / static:.3f}"
            nodes = len(cm.onnx_model.graph.node)
            print(
                f"| {name} | {elapsed:.1f} | {nodes} | {worst:.1e} | {grad} | {ratio} |", flush=True
            )
        except Exception as e:  # noqa: BLE001 - a model that fails is a result
            print(f"| {name} | failed: {type(e).__name__}: {str(e)[:120]} | | | | |", flush=True)


if __name__ == "__main__":
    main()
