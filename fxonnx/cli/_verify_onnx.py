"""``fxonnx verify FILE.onnx``: onnx.checker, a smoke run, and eager comparison with --model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..verify import Check
from ._common import UsageError
from ._load import load_model


def _checker(path: str) -> Check:
    import onnx

    if not Path(path).is_file():
        raise UsageError(f"file not found: {path}")
    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as e:  # noqa: BLE001 - the checker's verdict is the result
        note = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        return Check("onnx.checker", "checker", False, 0.0, 0.0, 0.0, 0.0, note)
    return Check("onnx.checker", "checker", True, 0.0, 0.0, 0.0, 0.0, "full_check passed")


def _result(path: str, checks: list[Check], provider: str, compared: bool) -> dict[str, Any]:
    return {
        "target": path,
        "mode": "onnx+model" if compared else "onnx",
        "compared_with_eager": compared,
        "provider": provider,
        "ok": all(c.ok for c in checks),
        "checks": [c.to_dict() for c in checks],
        "notes": [] if compared else ["no --model given: could not compare with eager"],
    }


def smoke(path: str, provider: str) -> dict[str, Any]:
    """Checker plus one run on random inputs (dynamic dims at 2): outputs must be finite."""
    from ..runtime import Session

    checks = [_checker(path)]
    if not checks[0].ok:
        return _result(path, checks, provider, compared=False)
    session = Session(path, provider=provider)
    rng = np.random.default_rng(0)
    feeds = []
    for spec in session.inputs:
        shape = tuple(d if isinstance(d, int) and d > 0 else 2 for d in spec.shape)
        if spec.dtype.kind == "f":
            feeds.append(rng.standard_normal(shape).astype(spec.dtype))
        elif spec.dtype.kind == "b":
            feeds.append(rng.integers(0, 2, shape).astype(bool))
        else:
            feeds.append(rng.integers(0, 2, shape).astype(spec.dtype))
    outs = session.run_numpy(feeds)
    for spec, out in zip(session.outputs, outs, strict=True):
        finite = bool(np.isfinite(out).all()) if out.dtype.kind == "f" else True
        note = f"ran, shape {list(out.shape)}" + ("" if finite else ", non-finite values")
        checks.append(Check(spec.name, "smoke", finite, 0.0, 0.0, 0.0, 0.0, note))
    return _result(path, checks, session.provider, compared=False)


def against_model(path: str, args: argparse.Namespace, provider: str) -> dict[str, Any]:
    """Run FILE.onnx and the PyTorch model on the same inputs (and at second sizes of the
    file's named dynamic dims) and compare output by output."""
    import torch
    import torch.utils._pytree as pytree

    from ..runtime import Session
    from ..verify import compare_all, resize_to, second_sizes, symbols_of

    checks = [_checker(path)]
    loaded = load_model(args.model, args.input, args.batch)
    session = Session(path, provider=provider)
    names = [s.name for s in session.outputs]

    def compare(inputs: tuple, suffix: str) -> list[Check]:
        tensors = [t for t in pytree.tree_leaves(inputs) if isinstance(t, torch.Tensor)]
        with torch.no_grad():
            want = [t for t in pytree.tree_leaves(loaded.module(*inputs)) if torch.is_tensor(t)]
        got = session.run_torch(tensors)
        return compare_all(names, want, got, suffix=suffix)

    checks += compare(loaded.args, "")
    signatures = [s.shape for s in session.inputs]
    tensors = [t for t in pytree.tree_leaves(loaded.args) if isinstance(t, torch.Tensor)]
    sizes = second_sizes(symbols_of(signatures, tensors, session.dim_constraints))
    if sizes:
        resized = resize_to(loaded.args, {}, signatures, sizes)[0]
        checks += compare(resized, " @" + ",".join(f"{n}={v}" for n, v in sizes.items()))
    return _result(path, checks, session.provider, compared=True)
