"""Directional derivatives of the ONNX artifact against eager forward-mode AD.

The optimized graph is lowered with its parameters as graph inputs, so a direction can move
them as well as the float user inputs. For each seeded direction ``v``, onnxruntime computes
``(f(x + h v) - f(x - h v)) / 2h`` and eager computes ``jvp(f, x, v)`` in float64; the check
passes when every element is within ``rtol * max |jvp|`` for one of the estimates: central at
``h`` and ``h / 4``, and one-sided at ``h / 4`` (a ReLU or max-pool kink inside the step spoils
the central difference but not the one-sided one on its other side).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import nn

from ..capture import Captured, ConstantLeaf, TensorSpec, capture
from ._report import Check


def _onnx_session(
    model: nn.Module,
    args: tuple,
    kwargs: dict,
    dtype: torch.dtype,
    passes: Any,
    skip: Any,
    dynamic_dims: Any = "auto",
) -> tuple[Any, Captured, list[str], list[str]]:
    """An onnxruntime session of the optimized graph in ``dtype`` with parameters as inputs."""
    from ..export import lower
    from ..runtime import Session, session_options
    from ._gradients import _cast

    m = copy.deepcopy(model).to(dtype).eval()
    a, k = _cast(args, dtype), _cast(kwargs, dtype)
    captured = capture(m, a, k, dynamic_dims=dynamic_dims)
    if passes != "none":
        from ..passes import run_passes
        from ._gradients import _flat_user

        captured, _ = run_passes(captured, passes, skip, example_inputs=_flat_user(captured, a, k))
    inputs = tuple(
        TensorSpec(s.name, "input", s.shape, s.dtype) if s.kind == "parameter" else s
        for s in captured.inputs
    )
    as_inputs = captured.replace(inputs=inputs)
    options = session_options()
    options.log_severity_level = 4  # a float64 probe may fail (no kernel): said in the notes
    session = Session(lower(as_inputs).SerializeToString(), provider="cpu", options=options)
    feed_names = [s.name for s in inputs if s.kind == "input"]
    return session, as_inputs, feed_names, [s.name for s in captured.user_inputs]


def baked_sources(captured: Captured) -> set[str]:
    """State that a folded constant copied (const_fold's ``FOLDED_FROM``): a parameter the
    graph still reads elsewhere (a tied embedding that a folded transpose feeds the LM head
    from) would move in eager along both uses but in the ONNX model along one."""
    from ..passes.const_fold import FOLDED_FROM

    return {
        name
        for node in captured.gm.graph.nodes
        if node.op == "placeholder"
        for name in node.meta.get(FOLDED_FROM, ())
    }


def directional_checks(
    model: nn.Module,
    args: tuple,
    kwargs: dict,
    passes: Any,
    skip: Sequence[str],
    directions: int,
    seed: int,
    fd: dict[torch.dtype, tuple[float, float]],
    dynamic_dims: Any = "auto",
) -> tuple[list[Check], list[str]]:
    notes: list[str] = []
    leaves, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
    params64 = {n: p.detach().to(torch.float64) for n, p in model.named_parameters()}
    eager = copy.deepcopy(model).to(torch.float64).eval()
    buffers = {n: b.detach().to(torch.float64) for n, b in eager.named_buffers()}
    for dtype in (torch.float64, torch.float32):
        try:
            session, captured, feed_names, user_names = _onnx_session(
                model, args, kwargs, dtype, passes, skip, dynamic_dims
            )
            # the point: parameters (by name) and user tensors, in float64 for eager
            user_pos = [
                i for i, want in enumerate(captured.leaves) if not isinstance(want, ConstantLeaf)
            ]
            point = {
                **params64,
                **dict(zip(user_names, [_to64(leaves[i]) for i in user_pos], strict=True)),
            }
            _run(session, feed_names, point)
            break
        except Exception as e:  # onnxruntime lacks float64 kernels for some ops (Conv, GRU)
            if dtype == torch.float32:
                raise
            first = str(e).strip().splitlines()[0][:160]
            notes.append(f"directional checks in float32: float64 ONNX model failed ({first})")
    narrow = _narrowest_float(captured)
    if dtype == torch.float64 and narrow is not None and narrow != torch.float64:
        notes.append(
            f"directional checks with float32 steps: the model computes parts in {narrow} "
            "(explicit casts), where float64 finite differences would be rounding noise"
        )
        h, rtol = fd[torch.float32]
    else:
        h, rtol = fd[dtype]
    moving, follows = _moving(feed_names, point, params64, baked_sources(captured))

    def f(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = dict(point)
        values.update(zip(moving, xs, strict=True))
        lv = list(leaves)
        for i, name in zip(user_pos, user_names, strict=True):
            lv[i] = values[name]
        a, k = pytree.tree_unflatten(lv, spec)
        values.update({gone: values[kept] for gone, kept in follows.items()})
        state = {**{n: values[n] for n in params64}, **buffers}
        out = torch.func.functional_call(eager, state, tuple(a), k)
        return tuple(t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor))

    def run(values: dict[str, torch.Tensor]) -> list[np.ndarray]:
        return _run(session, feed_names, values)

    center = run(point)
    gen = torch.Generator().manual_seed(seed)
    out_names = [s.name for s in captured.outputs]
    checks = []
    for d in range(directions):
        v = {}
        for n in moving:
            x = point[n]
            scale = float(x.abs().mean()) or 1.0
            v[n] = torch.randn(x.shape, generator=gen, dtype=torch.float64) * scale
        primals = tuple(point[n] for n in moving)
        tangents = tuple(v[n] for n in moving)
        try:
            jvp = _jvp(f, primals, tangents)
        except RuntimeError as e:  # explicit casts inside forward() (x.float()) break float64
            first = str(e).strip().splitlines()[0][:160]
            notes.append(f"directional checks skipped: eager does not run in float64 ({first})")
            return checks, notes
        estimates = []
        for step in (h, h / 4):
            plus = run({**point, **{n: point[n] + step * v[n] for n in moving}})
            minus = run({**point, **{n: point[n] - step * v[n] for n in moving}})
            estimates.append([_diff(p, q, 2 * step) for p, q in zip(plus, minus, strict=True)])
        # one-sided differences at the small step: exact on one side of a single kink
        estimates.append([_diff(p, c, h / 4) for p, c in zip(plus, center, strict=True)])
        estimates.append([_diff(c, q, h / 4) for c, q in zip(center, minus, strict=True)])
        floats = [i for i, j in enumerate(jvp) if j.is_floating_point()]
        scale = max((float(jvp[i].abs().max()) for i in floats), default=0.0) or 1.0
        atol = rtol * scale
        for i in floats:
            want = jvp[i].numpy()
            diff = np.min([np.abs(e[i] - want) for e in estimates], axis=0)
            worst = float(diff.max()) if diff.size else 0.0
            rel = float((diff / np.maximum(np.abs(want), 1e-12)).max()) if diff.size else 0.0
            note = f"{dtype}, steps {h:g} and {h / 4:g} x mean|x|"
            checks.append(
                Check(
                    f"d{d} {out_names[i]}",
                    "directional",
                    worst <= atol,
                    worst,
                    rel,
                    0.0,
                    atol,
                    note,
                )
            )
    return checks, notes


def _jvp(f: Any, primals: tuple, tangents: tuple) -> tuple[torch.Tensor, ...]:
    """Forward-mode AD; the math attention (fused CPU attention has no forward-mode formula),
    and the double-backward trick for other ops without one."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        try:
            return torch.func.jvp(f, primals, tangents)[1]
        except Exception:
            return torch.autograd.functional.jvp(f, primals, tangents)[1]


def _moving(
    feed_names: list[str],
    point: dict[str, torch.Tensor],
    params: dict[str, torch.Tensor],
    baked: set[str] = frozenset(),
) -> tuple[list[str], dict[str, str]]:
    """The ONNX inputs a direction moves, and for parameters the passes merged into another
    (bit-identical, weight dedup) the one whose value they follow in eager. Parameters folded
    into constants stay put on both sides, those a constant copied (``baked``) included; so do
    tied groups whose survivor is ambiguous."""
    from ._gradients import _tied_groups

    present = {n for n in feed_names if n in params}
    follows: dict[str, str] = {}
    frozen: set[str] = set(baked)
    for group in _tied_groups(params, present, []):
        kept = [n for n in group if n in present]
        if len(kept) == 1:
            follows.update({n: kept[0] for n in group if n != kept[0]})
        else:
            frozen.update(kept)
    moving = [
        n for n in feed_names if n in point and point[n].is_floating_point() and n not in frozen
    ]
    return moving, follows


def _diff(a: np.ndarray, b: np.ndarray, step: float) -> np.ndarray:
    return (a.astype(np.float64) - b.astype(np.float64)) / step


def _run(session: Any, names: list[str], values: dict[str, torch.Tensor]) -> list[np.ndarray]:
    return session.run_numpy([values[n].to(_np_dtype(session, n)).numpy() for n in names])


def _to64(t: Any) -> Any:
    return t.detach().to(torch.float64) if t.is_floating_point() else t


def _np_dtype(session: Any, name: str) -> torch.dtype:
    spec = next(s for s in session.inputs if s.name == name)
    return {
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float64): torch.float64,
        np.dtype(np.int64): torch.int64,
        np.dtype(np.int32): torch.int32,
    }.get(spec.dtype, torch.float32)


def _narrowest_float(captured: Captured) -> torch.dtype | None:
    """The lowest-precision floating dtype any value of the graph has (None if none float)."""
    order = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
    found = None
    for node in captured.gm.graph.nodes:
        val = node.meta.get("val")
        dtype = getattr(val, "dtype", None)
        if dtype in order and (found is None or order.index(dtype) > order.index(found)):
            found = dtype
    return found
