"""torch.nn Transformer layers as eager inference computes them, in a form that traces.

Two pieces of ``torch.nn.modules.transformer`` look at tensor values in Python, which a trace
cannot do:

- ``_detect_is_causal_mask`` compares a given ``mask`` with a causal mask (``torch.equal``) to
  set the ``is_causal`` hint. The hint only lets attention skip the mask; the mask itself is
  applied either way, so while tracing the hint is what the caller said (``is_causal=True``)
  and otherwise False: the same numbers.
- ``TransformerEncoder``'s fast path (eval mode, no grad, ``src_key_padding_mask`` given, the
  padding at the end of every row) runs the layers on a nested tensor and pads the result with
  exactly 0 at the padded positions (before the final ``norm``). The trace takes the regular
  path (fast paths off), whose rows equal the nested ones, and then writes those zeros where
  eager would: when the static conditions held at capture (fast path enabled, the encoder built
  with ``enable_nested_tensor`` and a layer that allows it, batched input, no ``mask``) and,
  in the graph, when the mask is right-padded (torch's own ``mask_check``).

The compiled model is an inference model, so it follows eager under ``torch.no_grad()`` (as
``compile``'s verification runs it); eager with grad enabled skips the fast path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import transformer as _tm


def _hinted_causal(mask: Any = None, is_causal: bool | None = None, size: Any = None) -> bool:
    return is_causal is True


@contextlib.contextmanager
def eager_transformer_semantics() -> Iterator[None]:
    """While tracing: no data-dependent causal-mask detection, fast paths off, and the
    encoder's nested-tensor zeros written out explicitly (see the module docstring)."""
    nested = torch.backends.mha.get_fastpath_enabled()
    detect, encoder_forward = _tm._detect_is_causal_mask, nn.TransformerEncoder.forward

    def forward(
        self: nn.TransformerEncoder,
        src: torch.Tensor,
        mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool | None = None,
    ) -> torch.Tensor:
        if not (nested and _takes_nested_path(self, src, mask, src_key_padding_mask)):
            return encoder_forward(self, src, mask, src_key_padding_mask, is_causal)
        norm = self.norm
        self.norm = None  # eager pads with zeros before the final norm
        try:
            out = encoder_forward(self, src, mask, src_key_padding_mask, is_causal)
        finally:
            self.norm = norm
        out = _zero_padded(self, src, out, src_key_padding_mask)
        return norm(out) if norm is not None else out

    _tm._detect_is_causal_mask = _hinted_causal
    nn.TransformerEncoder.forward = forward  # type: ignore[method-assign]
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(nested)
        nn.TransformerEncoder.forward = encoder_forward  # type: ignore[method-assign]
        _tm._detect_is_causal_mask = detect


def _takes_nested_path(
    encoder: nn.TransformerEncoder, src: torch.Tensor, mask: Any, padding: Any
) -> bool:
    """torch's static conditions for the nested-tensor path (TransformerEncoder.forward)."""
    first = encoder.layers[0]
    return (
        bool(getattr(encoder, "use_nested_tensor", False))
        and not first.training
        and src.dim() == 3
        and padding is not None
        and mask is None
        and not torch.is_autocast_enabled()
    )


def _zero_padded(
    encoder: nn.TransformerEncoder, src: torch.Tensor, out: torch.Tensor, padding: torch.Tensor
) -> torch.Tensor:
    """``out`` with 0 at the padded positions, where eager's nested path puts them: padded
    means non-zero in torch's canonical (float) mask; only when every row is right-padded
    (when ``mask_check`` is on, as torch checks)."""
    canonical = F._canonical_mask(
        mask=padding,
        mask_name="src_key_padding_mask",
        other_type=None,
        other_name="mask",
        target_type=src.dtype,
    )
    padded = canonical != 0  # (N, S)
    zero = padded
    if getattr(encoder, "mask_check", True):
        keep = (~padded).to(torch.int8)
        aligned = torch.all(keep[:, 1:] <= keep[:, :-1])
        zero = padded & aligned
    if not encoder.layers[0].self_attn.batch_first:
        zero = zero.transpose(0, 1)
    return torch.where(zero.unsqueeze(-1), torch.zeros((), dtype=out.dtype), out)
