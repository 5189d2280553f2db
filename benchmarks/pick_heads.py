"""What ``select_early`` buys on heads that read one token: compiled with and without it.

Models: the zoo's ``vit_tiny`` (class token) at batch 1 and 16, and, when ``transformers`` is
importable (``pip install transformers``, or a ``--target`` directory on PYTHONPATH; fxonnx
does not depend on it), two of its classifiers with random weights: BERT for sequence
classification (pooler on token 0; batch 8, 128 tokens, a padded row), ViT for image
classification (batch 16, 64x64) and a Llama decoder's next-token logits (the last position;
batch 4, 96 tokens). Each variant is checked against eager, then timed in
interleaved rounds (median of the rounds' means). Prints a Markdown table; never asserts.

    python benchmarks/pick_heads.py [--rounds 11] [--iters 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _common  # noqa: E402, F401 - sets OMP_WAIT_POLICY before torch loads OpenMP
import torch  # noqa: E402

import fxonnx  # noqa: E402
from fxonnx import models  # noqa: E402


def _cases() -> Iterator[tuple[str, torch.nn.Module, tuple, dict]]:
    for batch in (1, 16):
        model, (x,) = models.get("vit_tiny", batch=batch)
        yield f"vit_tiny b{batch}", model.eval(), (x,), {}
    try:
        import transformers as tf
    except ImportError:
        print("transformers is not importable: its classifiers are left out\n")
        return
    torch.manual_seed(0)
    bert = tf.BertConfig(
        vocab_size=1000,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        num_labels=3,
    )
    ids = torch.randint(0, 1000, (8, 128))
    mask = torch.ones(8, 128, dtype=torch.long)
    mask[0, 100:] = 0
    model = tf.BertForSequenceClassification(bert).eval()
    yield "BertForSequenceClassification b8 x 128", model, (ids,), {"attention_mask": mask}
    vit = tf.ViTConfig(
        image_size=64,
        patch_size=16,
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=3,
        intermediate_size=768,
        num_labels=10,
    )
    model = tf.ViTForImageClassification(vit).eval()
    yield "ViTForImageClassification b16", model, (torch.randn(16, 3, 64, 64),), {}
    llama = tf.LlamaConfig(
        vocab_size=2000,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    ids, mask = torch.randint(0, 2000, (4, 96)), torch.ones(4, 96, dtype=torch.long)
    model = _LastLogits(tf.LlamaForCausalLM(llama)).eval()
    yield "LlamaForCausalLM, last position's logits, b4 x 96", model, (ids, mask), {}


class _LastLogits(torch.nn.Module):
    """A decoder's next-token logits: the last position's only."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).logits[:, -1]


def _logits(out: object) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        return out["logits"]
    return out.logits if hasattr(out, "logits") else out[0]  # type: ignore[index, union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print("| model | without select_early ms | with ms | with / without | max abs diff vs eager |")
    print("|---|---:|---:|---:|---:|")
    for name, model, inputs, kwargs in _cases():
        variants = {
            "without": fxonnx.compile(model, inputs, kwargs, skip=["select_early"], provider="cpu"),
            "with": fxonnx.compile(model, inputs, kwargs, provider="cpu"),
        }
        samples: dict[str, list[float]] = {k: [] for k in variants}
        with torch.no_grad():
            want = _logits(model(*inputs, **kwargs))
            diff = max(
                float((_logits(cm(*inputs, **kwargs)) - want).abs().max())
                for cm in variants.values()
            )
            for _ in range(args.rounds):
                for k, cm in variants.items():
                    t0 = time.perf_counter()
                    for _ in range(args.iters):
                        cm(*inputs, **kwargs)
                    samples[k].append((time.perf_counter() - t0) / args.iters * 1e3)
        ms = {k: statistics.median(v) for k, v in samples.items()}
        print(
            f"| {name} | {ms['without']:.3f} | {ms['with']:.3f} | "
            f"{ms['with'] / ms['without']:.2f} | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
