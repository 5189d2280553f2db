"""Naming: user inputs after the forward() parameters, outputs after their place in the result."""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch.utils._pytree as pytree
from torch import nn


def _key_str(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def sanitize(name: str) -> str:
    """A Python identifier for an FX placeholder (ONNX keeps the original name)."""
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else f"_{ident}"


def input_names(model: nn.Module, args: tuple, kwargs: dict) -> tuple[list[str], list[Any]]:
    """Flatten ``(args, kwargs)`` and name every leaf after the forward() parameter it came from.

    A tensor passed as ``x`` is ``x``; a tuple argument ``xs`` gives ``xs.0, xs.1``; a dict
    argument gives ``arg.key``; extra positional arguments of ``*args`` are ``args.0, ...``.
    """
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_pos = next((p.name for p in params if p.kind == p.VAR_POSITIONAL), "args")
    leaves_with_path, _ = pytree.tree_flatten_with_path((tuple(args), dict(kwargs)))
    names, leaves = [], []
    for path, leaf in leaves_with_path:
        group, head, rest = path[0], path[1], path[2:]
        index = _key_str(head)
        if _key_str(group) == "0":
            i = int(index)
            base = positional[i].name if i < len(positional) else f"{var_pos}.{i - len(positional)}"
        else:
            base = index
        names.append(".".join([base, *(_key_str(k) for k in rest)]))
        leaves.append(leaf)
    return names, leaves


def output_names(out: Any) -> list[str]:
    """``output`` for a lone tensor, ``output.0`` for tuples, the keys (joined by '.') for dicts."""
    leaves_with_path, _ = pytree.tree_flatten_with_path(out)
    if len(leaves_with_path) == 1 and not leaves_with_path[0][0]:
        return ["output"]
    names = []
    for path, _leaf in leaves_with_path:
        parts = [_key_str(k) for k in path]
        named = hasattr(path[0], "key") or hasattr(path[0], "name")
        names.append(".".join(parts) if named else "output." + ".".join(parts))
    return names
