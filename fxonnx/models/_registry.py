"""Model registry: name -> factory, plus the metadata needed to build example inputs.

Factories take no arguments and build an `nn.Module` with whatever init their layers use; `get`
runs them under a forked, seeded global RNG so weights depend only on `seed` and the caller's RNG
state is left untouched. Shapes are declared with the string "N" for the batch dimension (and
other names, such as "seq", for the other dims that may vary, with their default sizes in
``dims``), so the dynamic axes of every input are data, not a convention the exporter guesses.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

__all__ = ["ModelInfo", "get", "info", "names", "register"]

BATCH = "N"
"""Placeholder for the batch dimension in declared input shapes."""

Dim = int | str
Factory = Callable[[], nn.Module]

# Modules whose import registers the zoo's factories. Loaded lazily so that importing the
# registry alone (or a single family) never sees a half-filled table.
_FAMILIES = (
    "fxonnx.models.tutorials",
    "fxonnx.models.resnet",
    "fxonnx.models.mobilenet",
    "fxonnx.models.transformer",
    "fxonnx.models.rnn",
    "fxonnx.models.unet",
    "fxonnx.models.text",
)


@dataclass(frozen=True)
class ModelInfo:
    """What a caller needs to know about a zoo model without building it themselves.

    `batch_dims[i]` is the axis of input i that carries the batch (1 for an RNN hidden state
    shaped (layers, N, hidden)); `output_batch_dims` is the same for the flattened outputs, so
    exporters can mark dynamic axes on both sides. `dims` gives the default sizes of the other
    named dims ("seq"), and `dynamic_dims` every named dim per input, in the form
    `fxonnx.compile(..., dynamic_dims=...)` takes.
    """

    name: str
    description: str
    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[Dim, ...], ...]
    input_dtypes: tuple[torch.dtype, ...]
    batch_dims: tuple[int, ...]
    output_batch_dims: tuple[int, ...]
    num_parameters: int
    tags: tuple[str, ...]
    dims: dict[str, int]
    dynamic_dims: dict[str, dict[int, str]]


@dataclass(frozen=True)
class _Entry:
    name: str
    factory: Factory
    description: str
    input_shapes: tuple[tuple[Dim, ...], ...]
    input_dtypes: tuple[torch.dtype, ...]
    input_highs: tuple[int | None, ...]
    batch_dims: tuple[int, ...]
    output_batch_dims: tuple[int, ...]
    tags: tuple[str, ...]
    dims: dict[str, int]


_REGISTRY: dict[str, _Entry] = {}


def register(
    name: str,
    *,
    description: str,
    input_shapes: tuple[tuple[Dim, ...], ...],
    input_dtypes: tuple[torch.dtype, ...] | None = None,
    input_highs: tuple[int | None, ...] | None = None,
    output_batch_dims: tuple[int, ...] = (0,),
    tags: tuple[str, ...] = (),
    dims: dict[str, int] | None = None,
) -> Callable[[Factory], Factory]:
    """Register a factory under `name`.

    `input_dtypes` defaults to float32 for every input; integer inputs need an exclusive upper
    bound in `input_highs` (e.g. the vocabulary size) so generated tokens are in range. Every
    shape must contain "N" exactly once; other strings must be keys of `dims`. Inconsistent declarations and duplicate names raise
    `ValueError` at import time rather than producing a model that fails later.
    """
    n = len(input_shapes)
    dtypes = input_dtypes if input_dtypes is not None else (torch.float32,) * n
    highs = input_highs if input_highs is not None else (None,) * n
    if "\n" in description or not description.strip():
        raise ValueError(f"model {name!r}: description must be one non-empty line")
    if len(dtypes) != n or len(highs) != n:
        raise ValueError(
            f"model {name!r}: {n} input shapes but {len(dtypes)} dtypes and {len(highs)} highs"
        )
    dims = dict(dims or {})
    batch_dims = []
    for shape, dtype, high in zip(input_shapes, dtypes, highs, strict=True):
        if [d for d in shape if d == BATCH] != [BATCH]:
            raise ValueError(f"model {name!r}: shape {shape} must contain {BATCH!r} exactly once")
        unknown = [d for d in shape if isinstance(d, str) and d != BATCH and d not in dims]
        if unknown:
            raise ValueError(f"model {name!r}: shape {shape} names {unknown}, not in dims")
        batch_dims.append(shape.index(BATCH))
        if dtype.is_floating_point != (high is None):
            raise ValueError(f"model {name!r}: integer inputs (and only those) need a high bound")

    def decorator(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(
            name=name,
            factory=factory,
            description=description,
            input_shapes=tuple(tuple(s) for s in input_shapes),
            input_dtypes=tuple(dtypes),
            input_highs=tuple(highs),
            batch_dims=tuple(batch_dims),
            output_batch_dims=tuple(output_batch_dims),
            tags=tuple(tags),
            dims=dims,
        )
        return factory

    return decorator


@cache
def _load_families() -> None:
    for module in _FAMILIES:
        importlib.import_module(module)


def names() -> list[str]:
    """All registered model names, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = sorted(_REGISTRY)
        closest = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.0)
        hint = f"; did you mean {closest[0]!r}?" if closest else ""
        raise KeyError(f"unknown model {name!r}{hint} Valid names: {', '.join(valid)}") from None


def _perturb_batch_norm(module: nn.Module) -> None:
    """Give every batch norm non-trivial statistics and affine parameters.

    Fresh layers have mean 0, var 1, gamma 1, beta 0, which makes conv-BN folding an identity
    and hides bugs in it. Uses the (already seeded) global RNG of the caller's fork.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                if m.running_mean is not None and m.running_var is not None:
                    m.running_mean.normal_(0.0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)


def _build(entry: _Entry, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = entry.factory()
        _perturb_batch_norm(module)
    return module.eval()


def _inputs(
    entry: _Entry, batch: int, seed: int, sizes: dict[str, int]
) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    named = {**entry.dims, **sizes, BATCH: batch}
    out = []
    for shape, dtype, high in zip(
        entry.input_shapes, entry.input_dtypes, entry.input_highs, strict=True
    ):
        size = tuple(named[d] if isinstance(d, str) else int(d) for d in shape)
        if high is None:
            out.append(torch.randn(size, generator=gen, dtype=dtype))
        else:
            out.append(torch.randint(0, high, size, generator=gen, dtype=dtype))
    return tuple(out)


def get(
    name: str, batch: int = 2, seed: int = 0, **sizes: int
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build model `name` in eval mode with weights seeded by `seed`, and example inputs;
    `sizes` set other named dims (`get("bert_tiny", 2, seq=17)`).

    The same (name, batch, seed, sizes) always gives the same weights and inputs; the global
    RNG state is unchanged. Raises `KeyError` for an unknown name and `ValueError` for
    `batch < 1` or a size the model does not name.
    """
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int, got {type(batch).__name__}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    entry = _entry(name)
    unknown = sorted(set(sizes) - set(entry.dims))
    if unknown:
        raise ValueError(f"model {name!r} has no dims {unknown}; it names {sorted(entry.dims)}")
    if any(not isinstance(v, int) or v < 1 for v in sizes.values()):
        raise ValueError(f"sizes must be ints >= 1, got {sizes}")
    return _build(entry, seed), _inputs(entry, batch, seed, sizes)


@cache
def _info(name: str) -> ModelInfo:
    entry = _entry(name)
    module = _build(entry, seed=0)
    input_names = tuple(inspect.signature(module.forward).parameters)
    if len(input_names) != len(entry.input_shapes):
        raise ValueError(
            f"model {name!r}: forward{input_names} does not match {len(entry.input_shapes)} "
            "declared input shapes"
        )
    return ModelInfo(
        name=name,
        description=entry.description,
        input_names=input_names,
        input_shapes=entry.input_shapes,
        input_dtypes=entry.input_dtypes,
        batch_dims=entry.batch_dims,
        output_batch_dims=entry.output_batch_dims,
        num_parameters=sum(p.numel() for p in module.parameters()),
        tags=entry.tags,
        dims=dict(entry.dims),
        dynamic_dims={
            n: {d: "batch" if s == BATCH else s for d, s in enumerate(shape) if isinstance(s, str)}
            for n, shape in zip(input_names, entry.input_shapes, strict=True)
        },
    )


def info(name: str) -> ModelInfo:
    """Metadata for `name`; builds the model once (seed 0) to count parameters, then caches."""
    return _info(name)
