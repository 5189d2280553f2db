"""Argument checks shared by the public entry points, so that a wrong type gets one error that
names the argument and the fix instead of a traceback from deep inside torch or onnx.

torch is imported inside the functions: ``check_path`` runs in torch-free serving processes.
"""

from __future__ import annotations

import os
from typing import Any

from ._errors import CaptureError


def check_path(path: Any, argument: str = "path") -> None:
    """``path`` must be a str or os.PathLike (a TypeError naming ``argument`` otherwise)."""
    if isinstance(path, (str, os.PathLike)):
        return
    raise TypeError(
        f"{argument} must be a str or os.PathLike, not {type(path).__name__} ({path!r:.80})"
    )


def check_opset(opset: Any) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"opset must be an int (18 to 23), not {type(opset).__name__} {opset!r}")


def check_model(model: Any) -> None:
    from torch import nn

    if not isinstance(model, nn.Module):
        raise CaptureError(
            f"expected an nn.Module, got {type(model).__name__}",
            hint="wrap a function in an nn.Module whose forward() calls it",
        )


def check_example(args: Any, kwargs: dict | None) -> None:
    """Example inputs must be torch tensors with data: a numpy array, or a tensor on the meta
    device, is refused by its position (``args[0]``, ``kwargs['mask']``)."""
    import numpy as np
    import torch
    import torch.utils._pytree as pytree

    if not isinstance(args, tuple):
        args = (args,)
    leaves, _ = pytree.tree_flatten_with_path((tuple(args), dict(kwargs or {})))
    for path, leaf in leaves:
        where = _where(path)
        if isinstance(leaf, np.ndarray):
            raise CaptureError(
                f"example input {where} is a numpy array; fxonnx traces torch tensors",
                hint=f"pass torch.from_numpy(...) for {where}",
            )
        if isinstance(leaf, torch.Tensor) and leaf.device.type == "meta":
            raise CaptureError(
                f"example input {where} is on the meta device, which has no data to verify with",
                hint="give real example tensors (on cpu, or cuda)",
            )


def _where(path: tuple) -> str:
    import torch.utils._pytree as pytree

    kind, *rest = path
    head = "args" if getattr(kind, "idx", 1) == 0 else "kwargs"
    return head + pytree.keystr(tuple(rest))


def check_entry(model: Any, args: Any, kwargs: dict | None, opset: Any = None) -> None:
    """The checks ``compile``, ``export`` and ``check_gradients`` run before capturing."""
    check_model(model)
    check_example(args, kwargs)
    if opset is not None:
        check_opset(opset)


def structure_mismatch(args: tuple, kwargs: dict, expected: Any) -> str:
    """A readable line for inputs whose structure differs from the example's (``expected``:
    the example's pytree spec of ``(args, kwargs)``)."""
    import torch.utils._pytree as pytree

    want_args, want_kwargs = expected.children_specs
    want = f"compiled for {want_args.num_children} positional input(s)"
    if want_kwargs.context:
        want += f" and keyword input(s) {list(want_kwargs.context)}"
    got = f"{len(args)} positional"
    if kwargs:
        got += f" and keyword(s) {list(kwargs)}"
    same_count = len(args) == want_args.num_children and list(kwargs) == list(
        want_kwargs.context or []
    )
    if same_count:  # same arguments, different nesting (a list where a tensor was)
        _, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        got += f" nested differently: {pytree.treespec_pprint(spec)[:200]}"
    return f"inputs have a different structure than at compile time: {want}; got {got}"
