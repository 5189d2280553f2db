"""Run eager and compiled side by side on the example inputs and at a second batch size."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.utils._pytree as pytree
from torch import nn

from ._compare import compare_all
from ._report import Check, Report

if TYPE_CHECKING:
    from .._compile import CompiledModel


def resize_batch(
    args: tuple, kwargs: dict, batch_dims: Sequence[int | None], batch: int
) -> tuple[tuple, dict]:
    """New inputs with ``batch`` rows along each input's batch dim: rows are reused cyclically
    (integer inputs stay valid ids) and float rows are scaled per row so no two rows repeat."""
    leaves, spec = pytree.tree_flatten((args, kwargs))
    dims = iter(batch_dims)
    out = []
    for leaf in leaves:
        if not isinstance(leaf, torch.Tensor):
            out.append(leaf)
            continue
        dim = next(dims)
        if dim is None:
            out.append(leaf)
            continue
        index = torch.arange(batch, device=leaf.device) % leaf.shape[dim]
        resized = leaf.index_select(dim, index)
        if resized.dtype.is_floating_point:
            shape = [1] * resized.dim()
            shape[dim] = batch
            scale = 1 + 0.125 * torch.arange(batch, device=leaf.device, dtype=resized.dtype)
            resized = resized * scale.reshape(shape)
        out.append(resized)
    new_args, new_kwargs = pytree.tree_unflatten(out, spec)
    return tuple(new_args), dict(new_kwargs)


def second_batch(example: int) -> int:
    """Batch 1 catches size-1 special cases (squeeze, broadcasting); after that, 3."""
    return 1 if example != 1 else 3


def _eager(model: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(*args, **kwargs)
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def verify(
    model: nn.Module,
    args: Any = (),
    compiled: CompiledModel | None = None,
    kwargs: dict | None = None,
    *,
    batches: Sequence[int] | None = None,
) -> Report:
    """Compare ``compiled(*args, **kwargs)`` with ``model(*args, **kwargs)`` output by output.

    With a dynamic batch, the inputs are also resized to other batch sizes (``batches``, by
    default one: 1, or 3 when the example batch is 1). Returns a Report; it does not raise."""
    if compiled is None:
        raise TypeError("verify(model, args, compiled): pass the compiled model to check")
    if not isinstance(args, tuple):
        args = (args,)
    kwargs = dict(kwargs or {})
    t0 = time.perf_counter()
    names = [s.name for s in compiled.captured.outputs]
    checks: list[Check] = []
    with eval_mode(model):
        checks += compare_all(names, _eager(model, args, kwargs), compiled.run_flat(args, kwargs))
        info = compiled.captured.batch
        if info.dynamic and info.example is not None:
            for batch in batches or (second_batch(info.example),):
                a, k = resize_batch(args, kwargs, info.dims, batch)
                checks += compare_all(
                    names, _eager(model, a, k), compiled.run_flat(a, k), suffix=f" @batch {batch}"
                )
    notes = ()
    if not compiled.captured.batch.dynamic:
        notes = (f"checked at batch {compiled.captured.batch.example} only (static batch)",)
    return Report(
        checks=tuple(checks), notes=notes, stages={"verify": (time.perf_counter() - t0) * 1e3}
    )


class eval_mode:
    """Eval mode (dropout off, batch-norm running statistics) for the block, then the model's
    own mode again; entering returns whether it was training."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = model.training

    def __enter__(self) -> bool:
        self.model.eval()
        return self.was_training

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)
