"""The ``options={...}`` of ``torch.compile(m, backend="fxonnx", options=...)``, checked."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .._errors import FxonnxError
from ..export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from ..runtime._providers import CUDA, resolve

# The passes run on every partition by default: aot_autograd writes a matmul of rank > 3
# tensors as views around a bmm (and expands + clones to the same shape in front of them),
# which hide a transposed operand from onnxruntime's MatMul + Transpose fusion. With them
# (and _fastpath's sequence-first attention) transformer_encoder at batch 16 ran 3-4%
# faster, with and without freeze, and vit_tiny 1-2% (2 shared cores, 2026-12-01).
# select_early computes a class-token head's last block for that token only: vit_tiny at
# batch 16 9.10 -> 7.95 ms, at batch 1 1.33 -> 1.30 (interleaved, quiet machine)
# stack_select_grads: MultiheadAttention's packed q/k/v gradient as one stack, not three
# zero-padded parts summed (transformer_encoder training step at batch 8: 154.9 -> 151.6 ms)
PASSES: tuple[str, ...] = ("noops", "bmm_views", "select_early", "stack_select_grads")


@dataclass(frozen=True)
class Options:
    """``provider``: "cpu", "cuda" or "auto"; ``verify``: compare each partition with eager on
    its first call; ``passes``/``skip``: the ATen passes run on each partition (by default
    ``PASSES``, two layout passes, ``select_early`` and ``stack_select_grads``: onnxruntime
    optimizes the session itself, and the weights are graph inputs here, so there is nothing
    for const_fold to bake; "none" runs none, "default" the compiler's pipeline); ``opset``;
    ``threads``: onnxruntime intra-op
    threads (None: its default); ``freeze``: in inference graphs on the CPU, bake the module's
    parameters and buffers into the session at the first call, as inductor's ``freezing``
    does (onnxruntime then pre-packs and folds them); a later in-place change (optimizer
    step, ``load_state_dict``) or a swapped tensor is detected by its version counter and
    data pointer and the weights become inputs again, but edits through ``.data`` are not
    seen, which is why it is off by default; ``torch_kernels``: on the CPU, leave to torch the
    gradient ops whose torch kernel is measured faster than their ONNX lowering (convolution
    weight gradients over many positions, max-pool gradients: ``_torch_kernels``); False
    keeps every lowered op in onnxruntime."""

    provider: str = "cpu"
    verify: bool = False
    passes: Any = PASSES
    skip: tuple[str, ...] = ()
    opset: int = DEFAULT_OPSET
    threads: int | None = None
    freeze: bool = False
    torch_kernels: bool = True

    def on_cpu(self) -> bool:
        """Whether the sessions run on the CPU provider: "cpu", or "auto" where CUDA is not
        usable ("cuda" never is; where CUDA is not usable the session itself says why)."""
        return self.provider != "cuda" and resolve(self.provider)[0] != CUDA

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> Options:
        if options is None:
            return cls()
        if not isinstance(options, Mapping):
            raise FxonnxError(
                f"backend='fxonnx' options must be a dict, not {type(options).__name__}",
                hint='for example options={"provider": "cpu", "verify": True}',
            )
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise FxonnxError(
                    f"unknown option {key!r} for backend='fxonnx'",
                    hint=f"{hint}known options: {', '.join(known)}",
                )
        opts = cls(**{**options, "skip": tuple(options.get("skip", ()))})
        if opts.provider not in ("cpu", "cuda", "auto"):
            raise FxonnxError(
                f"options['provider'] is {opts.provider!r}", hint="use 'cpu', 'cuda' or 'auto'"
            )
        for flag in ("verify", "freeze", "torch_kernels"):
            if not isinstance(getattr(opts, flag), bool):
                value = getattr(opts, flag)
                raise FxonnxError(f"options[{flag!r}] must be True or False, not {value!r}")
        if not MIN_OPSET <= opts.opset <= MAX_OPSET:
            raise FxonnxError(
                f"options['opset'] is {opts.opset}",
                hint=f"choose an opset from {MIN_OPSET} to {MAX_OPSET}",
            )
        if opts.passes != "none" or opts.skip:
            from ..passes import resolve

            resolve(opts.passes, opts.skip)  # an unknown pass name: PassError, naming it
        return opts
