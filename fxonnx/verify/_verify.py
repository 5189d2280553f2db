"""Run eager and compiled side by side on the example inputs and at second sizes of every
dynamic dim."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.utils._pytree as pytree
from torch import nn

from .._dimexpr import evaluate, is_name
from ..capture import DimSymbol
from ._compare import compare_all
from ._gradients import _cast
from ._reference import LOW_PRECISION, against_reference
from ._report import Check, Report

if TYPE_CHECKING:
    from .._compile import CompiledModel


def resize_inputs(args: tuple, kwargs: dict, sizes: Sequence[Sequence[int | None]]) -> tuple:
    """New inputs with the shapes ``sizes`` (one per tensor leaf; None keeps a dim): each
    resized dim reuses its slices cyclically (integer inputs stay valid ids), and along the
    first resized dim (the batch, usually) float slices are scaled so that no two repeat."""
    leaves, spec = pytree.tree_flatten((args, kwargs))
    wanted = iter(sizes)
    out = []
    for leaf in leaves:
        if not isinstance(leaf, torch.Tensor):
            out.append(leaf)
            continue
        target = next(wanted)
        scaled = False
        for dim, size in enumerate(target):
            if size is None or size == leaf.shape[dim]:
                continue
            if leaf.shape[dim] == 0:  # an empty example has no slices to reuse
                leaf = _fresh_slices(leaf, dim, size)
                continue
            index = torch.arange(size, device=leaf.device) % leaf.shape[dim]
            leaf = leaf.index_select(dim, index)
            if leaf.dtype.is_floating_point and not scaled:
                scaled = True
                shape = [1] * leaf.dim()
                shape[dim] = size
                scale = 1 + 0.125 * torch.arange(size, device=leaf.device, dtype=leaf.dtype)
                leaf = leaf * scale.reshape(shape)
        out.append(leaf)
    new_args, new_kwargs = pytree.tree_unflatten(out, spec)
    return tuple(new_args), dict(new_kwargs)


def resize_to(
    args: tuple, kwargs: dict, signatures: Sequence[Sequence[Any]], sizes: dict[str, int]
) -> tuple[tuple, dict]:
    """The inputs resized so that their named dims (``signatures``: one shape of ints, names
    and expressions per tensor leaf) take ``sizes``."""
    targets = [
        [None if isinstance(d, int) else evaluate(d, sizes) for d in shape] for shape in signatures
    ]
    return resize_inputs(args, kwargs, targets)


def symbols_of(
    signatures: Sequence[Sequence[Any]],
    tensors: Sequence[Any],
    constraints: dict[str, dict[str, Any]] | None = None,
) -> list[DimSymbol]:
    """The named dims of a signature with their sizes in ``tensors`` as the examples, and the
    ranges ``constraints`` give (an ONNX file's or a bundle's)."""
    constraints = constraints or {}
    seen: dict[str, int] = {}
    for shape, t in zip(signatures, tensors, strict=False):
        for d, size in zip(shape, t.shape, strict=False):
            if is_name(d):
                seen.setdefault(d, int(size))
    out = []
    for name, example in seen.items():
        c = constraints.get(name, {})
        out.append(
            DimSymbol(
                name,
                example,
                min=c.get("min", 1),
                max=c.get("max"),
                multiple_of=c.get("multiple_of", 1) or 1,
            )
        )
    return out


def second_sizes(symbols: Sequence[DimSymbol]) -> dict[str, int]:
    """A second value of every dynamic dim, no two alike and none equal to its example, inside
    the range and multiple the graph supports. The first dim (the batch) goes to 1 when it can,
    which catches size-1 special cases (squeeze, broadcasting); the others grow by a few."""
    chosen: dict[str, int] = {}
    for i, sym in enumerate(symbols):
        k = max(1, sym.multiple_of)
        if i == 0 and sym.example != 1 and sym.min <= 1 and k == 1:
            candidates = [1]
        else:
            up = [((sym.example + 7) // k + j) * k for j in range(64)]
            down = [(sym.example // k - j) * k for j in range(1, 64)]
            candidates = up + down
        for value in candidates:
            fits = sym.min <= value and (sym.max is None or value <= sym.max)
            if fits and value != sym.example and value not in chosen.values():
                chosen[sym.name] = value
                break
    return chosen


def _fresh_slices(leaf: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``size`` seeded random slices along ``dim`` (zeros for integer and bool inputs, valid
    as ids)."""
    shape = list(leaf.shape)
    shape[dim] = size
    if not leaf.dtype.is_floating_point:
        return torch.zeros(shape, dtype=leaf.dtype, device=leaf.device)
    rows = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=leaf.dtype)
    return rows.to(leaf.device)


def _eager(model: nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(*args, **kwargs)
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def _run(
    model: nn.Module, compiled: CompiledModel, names: list[str], args: tuple, kwargs: dict, at: str
) -> list[Check]:
    """Eager against compiled on one set of inputs; a 16-bit float output that misses the
    eager tolerance is judged against the model in float64 instead (``_reference``)."""
    eager, ours = _eager(model, args, kwargs), compiled.run_flat(args, kwargs)
    checks = compare_all(names, eager, ours, suffix=at)
    low = [
        i
        for i, c in enumerate(checks[: min(len(eager), len(ours))])
        if not c.ok and eager[i].dtype in LOW_PRECISION and ours[i].shape == eager[i].shape
    ]
    if low:
        f64 = torch.float64
        exact = _eager(copy.deepcopy(model).to(f64).eval(), _cast(args, f64), _cast(kwargs, f64))
        for i in low:
            if i < len(exact):
                checks[i] = against_reference(checks[i], eager[i], ours[i], exact[i])
    return checks


def verify(
    model: nn.Module,
    args: Any = (),
    compiled: CompiledModel | None = None,
    kwargs: dict | None = None,
    *,
    dims: Sequence[dict[str, int]] | None = None,
) -> Report:
    """Compare ``compiled(*args, **kwargs)`` with ``model(*args, **kwargs)`` output by output.

    With dynamic dims, the inputs are also resized to other sizes of them: ``dims`` gives
    {name: size} per extra run; by default one run at ``second_sizes``. Checks are named after
    the sizes (``output @batch=1,seq=17``). Returns a Report; it does not raise."""
    if compiled is None:
        raise TypeError("verify(model, args, compiled): pass the compiled model to check")
    if not isinstance(args, tuple):
        args = (args,)
    kwargs = dict(kwargs or {})
    t0 = time.perf_counter()
    names = [s.name for s in compiled.captured.outputs]
    checks: list[Check] = []
    with eval_mode(model):
        checks += _run(model, compiled, names, args, kwargs, "")
        shapes = compiled.captured.shapes
        signatures = [spec.shape for spec in compiled.captured.user_inputs]
        for sizes in dims or ([second_sizes(shapes.symbols)] if shapes.dynamic else []):
            if not sizes:
                continue
            a, k = resize_to(args, kwargs, signatures, sizes)
            at = " @" + ",".join(f"{n}={v}" for n, v in sizes.items())
            checks += _run(model, compiled, names, a, k, at)
    notes = ()
    if not shapes.dynamic:
        notes = ("checked at the example's shapes only (every dim static)",)
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
