"""The user's ``dynamic_dims`` (and the older ``batch_dims`` shorthand) as one {dim: name} per input.

Forms accepted, for the model's tensor inputs (by forward() name, or position among them):
- ``"auto"``: dim 0 of the first input is ``"batch"``; other inputs take it on their first dim of
  the same size (an RNN hidden state ``(layers, N, H)``).
- ``"all"``: every dim of every tensor input, each its own symbol (``x_dim1``); what the model
  fixes becomes static, with a note saying why.
- ``None`` (or ``{}``): every dim static.
- ``{"input_ids": {0: "batch", 1: "seq"}, 1: {0: "batch"}}``: dims that share a name share one
  symbol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._errors import CaptureError
from ._signature import sanitize

PerInput = dict[int, str]
_EXAMPLE = "dynamic_dims={'input_ids': {0: 'batch', 1: 'seq'}}"


def mode(spec: Any) -> str:
    """How ``spec`` (an effective ``dynamic_dims``) asks for dims: "static", "auto", "all" or
    "explicit" (a dict); under "auto"/"all" a dim the model fixes becomes static, else an error."""
    if spec is None or spec is False:
        return "static"
    return spec if isinstance(spec, str) else "explicit"


def effective(dynamic_dims: Any, batch_dims: Any, dynamic: bool, names: Sequence[str]) -> Any:
    """The ``dynamic_dims`` that the arguments together ask for (``batch_dims`` and
    ``dynamic=False`` are shorthands), refusing contradictory combinations."""
    if not dynamic:
        if dynamic_dims not in ("auto", None):
            raise CaptureError(
                "dynamic=False contradicts the dynamic_dims also given",
                hint="pass dynamic_dims=None for a static graph, or drop dynamic=False",
            )
        return None
    if batch_dims is None or batch_dims == "auto":
        return dynamic_dims
    if dynamic_dims != "auto":
        raise CaptureError(
            "batch_dims and dynamic_dims were both given",
            hint=f"batch_dims is a shorthand; say everything in dynamic_dims: {_EXAMPLE}",
        )
    return from_batch_dims(batch_dims, names)


def from_batch_dims(batch_dims: Any, names: Sequence[str]) -> Any:
    """``batch_dims`` (one dim per input, or {name: dim}) as the ``dynamic_dims`` it abbreviates."""
    if batch_dims is None or isinstance(batch_dims, str):
        return batch_dims
    items: list[tuple[Any, Any]]
    if isinstance(batch_dims, Mapping):
        items = list(batch_dims.items())
    elif isinstance(batch_dims, Sequence):
        if len(batch_dims) != len(names):
            raise CaptureError(
                f"batch_dims has {len(batch_dims)} entries but the model takes {len(names)} "
                "tensors",
                hint=f"give one dim (or None) per tensor input: {list(names)}",
            )
        items = list(enumerate(batch_dims))
    else:
        raise CaptureError(
            f"batch_dims must be 'auto', a sequence or a dict, not {type(batch_dims).__name__}"
        )
    out: dict[Any, dict[int, str]] = {}
    for key, dim in items:
        if dim is None:
            continue
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise CaptureError(
                f"batch_dims[{key!r}] is {dim!r}: batch_dims takes one int dim per input",
                hint=f"for several dynamic dims use {_EXAMPLE}",
            )
        out[key] = {dim: "batch"}
    return out


def resolve(tensors: Sequence[torch.Tensor], names: Sequence[str], spec: Any) -> list[PerInput]:
    """One {dim: name} per tensor input (dims normalised to be non-negative), checked."""
    if spec is None or spec is False:
        return [{} for _ in tensors]
    if isinstance(spec, str):
        if spec == "auto":
            return _auto(tensors)
        if spec == "all":
            return [  # an empty example dim stays static: a graph symbol is >= 1
                {d: f"{sanitize(n)}_dim{d}" for d in range(t.dim()) if t.shape[d] != 0}
                for t, n in zip(tensors, names, strict=True)
            ]
        raise CaptureError(
            f"dynamic_dims={spec!r} is not a known mode",
            hint=f"use 'auto', 'all', None, or a dict such as {_EXAMPLE}",
        )
    if not isinstance(spec, Mapping):
        raise CaptureError(
            f"dynamic_dims must be 'auto', 'all', None or a dict, not {type(spec).__name__}",
            hint=f"for example {_EXAMPLE}",
        )
    per: list[PerInput] = [{} for _ in tensors]
    owner: dict[int, Any] = {}
    for key, dims in spec.items():
        i = _input_index(key, names)
        if i in owner:
            raise CaptureError(
                f"dynamic_dims names input {names[i]!r} twice (as {owner[i]!r} and {key!r})"
            )
        owner[i] = key
        per[i] = _dims_of(names[i], tensors[i], dims)
    _check_shared_sizes(tensors, names, per)
    return per


def _auto(tensors: Sequence[torch.Tensor]) -> list[PerInput]:
    if not tensors or tensors[0].dim() == 0 or tensors[0].shape[0] == 0:
        return [{} for _ in tensors]  # an empty example batch stays static (symbols are >= 1)
    batch = tensors[0].shape[0]
    out: list[PerInput] = []
    for t in tensors:
        d = next((d for d, size in enumerate(t.shape) if size == batch), None)
        out.append({} if d is None else {d: "batch"})
    return out


def _input_index(key: Any, names: Sequence[str]) -> int:
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise CaptureError(
            f"dynamic_dims key {key!r} must be an input name or position",
            hint=f"inputs are {list(names)}",
        )
    if isinstance(key, int):
        if not 0 <= key < len(names):
            raise CaptureError(
                f"dynamic_dims names input position {key}, but the model takes "
                f"{len(names)} tensor input(s) {list(names)}"
            )
        return key
    if key not in names:
        raise CaptureError(
            f"dynamic_dims names an unknown input {key!r}",
            hint=f"the model's tensor inputs are {list(names)}",
        )
    return list(names).index(key)


def _dims_of(name: str, t: torch.Tensor, dims: Any) -> PerInput:
    if dims is None:
        return {}
    if not isinstance(dims, Mapping):
        raise CaptureError(
            f"dynamic_dims[{name!r}] must be a dict {{dim: name}}, not {type(dims).__name__}",
            hint=f"for example {_EXAMPLE}",
        )
    out: PerInput = {}
    for d, sym in dims.items():
        if isinstance(d, bool) or not isinstance(d, int):
            raise CaptureError(
                f"dynamic_dims[{name!r}] has the dim {d!r}: dims are ints (0, 1, -1, ...)"
            )
        if not -t.dim() <= d < t.dim():
            raise CaptureError(
                f"dynamic_dims[{name!r}] names dim {d}, out of range for input {name!r} of "
                f"shape {list(t.shape)} ({t.dim()}-d)"
            )
        if not isinstance(sym, str) or not sym.isidentifier():
            raise CaptureError(
                f"dynamic_dims[{name!r}][{d}] is {sym!r}: a dim's name must be an identifier "
                "such as 'batch' or 'seq'"
            )
        k = d % t.dim()
        if k in out:
            raise CaptureError(
                f"dynamic_dims[{name!r}] gives dim {k} two names ({out[k]!r} and {sym!r})",
                hint="name each dim once (negative dims count from the end)",
            )
        out[k] = sym
    return out


def _check_shared_sizes(
    tensors: Sequence[torch.Tensor], names: Sequence[str], per: Sequence[PerInput]
) -> None:
    first: dict[str, tuple[str, int, int]] = {}
    for t, name, dims in zip(tensors, names, per, strict=True):
        for d, sym in dims.items():
            size = int(t.shape[d])
            if sym in first and first[sym][2] != size:
                other, od, osize = first[sym]
                raise CaptureError(
                    f"dims named {sym!r} differ in the example inputs: {other!r} dim {od} is "
                    f"{osize}, {name!r} dim {d} is {size}",
                    hint="dims that share a name must have the same size; give them "
                    "different names if they vary independently",
                )
            first.setdefault(sym, (name, d, size))
