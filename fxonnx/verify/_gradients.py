"""``check_gradients``: are the captured (and optimized) graph's gradients eager's gradients?

Three kinds of evidence, one Report:

- ``grad``: autograd through the transformed ATen graph against eager autograd, by name, for
  every parameter and float input. The scalar is ``loss(outputs)`` or a seeded random cotangent
  dotted with the outputs. Tolerance ``atol = rtol * max |grad|`` over all gradients, so
  analytically-zero gradients (a conv bias before batch norm) do not fail on rounding noise.
  Parameters a pass removed are reported as such (ok, with a note), not compared as zeros;
  bit-identical parameters a pass tied together (weight dedup) are compared as sums.
- ``gradcheck`` (``dtype=torch.float64``): ``torch.autograd.gradcheck`` on the transformed graph.
- ``directional``: the ONNX artifact itself. Central finite differences of the onnxruntime
  forward along seeded random directions in inputs and parameters, against eager forward-mode
  AD (``torch.func.jvp``) in float64. In float64 where onnxruntime runs the model (its CPU Conv
  has no float64 kernel), else in float32 with a step of 1e-3 (and 2.5e-4) of each tensor's scale.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import nn

from .._checks import check_entry
from .._errors import VerificationError
from ..capture import Captured, ConstantLeaf, capture, unwrap_parallel
from ._compare import compare, tolerance
from ._report import Check, Report

# Finite-difference step (relative to each tensor's mean magnitude; the check also tries a
# quarter of it, per element, since a step can straddle a ReLU or max-pool kink) and the
# tolerance it earns, as a fraction of the largest |directional derivative|. In float64 the
# step is small enough that a direction moving every weight of a deep ReLU model rarely
# crosses kinks at all: transformer_encoder (4 ReLU layers, mean-pooled, so one kink spoils
# every output) was off by 5e-4 at 1e-6 and is within 8e-9 at 1e-7, where rounding is ~1e-9.
_FD = {torch.float64: (1e-7, 1e-5), torch.float32: (1e-3, 5e-2)}


def _flat_user(captured: Captured, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    leaves = pytree.tree_leaves((tuple(args), dict(kwargs)))
    return [
        leaf
        for leaf, want in zip(leaves, captured.leaves, strict=True)
        if not isinstance(want, ConstantLeaf)
    ]


def _cast(x: Any, dtype: torch.dtype) -> Any:
    return pytree.tree_map(
        lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t, x
    )


def _prepare(
    model: nn.Module,
    args: tuple,
    kwargs: dict,
    dtype: torch.dtype,
    passes: Any,
    skip: Sequence[str],
    dynamic_dims: Any = "auto",
) -> tuple[nn.Module, tuple, dict, Captured, Captured, list[dict[str, Any]]]:
    """An eval-mode copy of the model in ``dtype``, its capture, and the optimized capture."""
    m = copy.deepcopy(model).to(dtype).eval()
    a, k = _cast(args, dtype), _cast(kwargs, dtype)
    captured = capture(m, a, k, dynamic_dims=dynamic_dims)
    stats: list[dict[str, Any]] = []
    optimized = captured
    if passes != "none":
        from ..passes import run_passes

        optimized, stats = run_passes(
            captured, passes, skip, example_inputs=_flat_user(captured, a, k)
        )
    return m, a, k, captured, optimized, stats


def _graph_forward(captured: Captured, params: dict[str, torch.Tensor], user: list) -> list:
    args = [params.get(s.name, captured.state.get(s.name)) for s in captured.state_inputs]
    out = captured.gm(*args, *user)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _structured(captured: Captured, flat: list[torch.Tensor]) -> Any:
    it = iter(flat)
    leaves = [
        leaf.value if isinstance(leaf, ConstantLeaf) else next(it) for leaf in captured.out_leaves
    ]
    return pytree.tree_unflatten(leaves, captured.out_spec)


def _scalar(
    outs: list[torch.Tensor], structured: Any, loss: Callable | None, cotangents: list
) -> torch.Tensor:
    if loss is not None:
        value = loss(structured)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"loss(outputs) must return a scalar (0-d) tensor, got {shape}; "
                "reduce it, e.g. loss=lambda out: out.sum()"
            )
        return value
    total = sum(
        (o * c).sum() for o, c in zip(outs, cotangents, strict=True) if o.is_floating_point()
    )
    return total if isinstance(total, torch.Tensor) else torch.zeros(())


def _eager_outputs(model: nn.Module, args: tuple, kwargs: dict) -> tuple[Any, list[torch.Tensor]]:
    out = model(*args, **kwargs)
    return out, [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def _grad_checks(
    m: nn.Module,
    args: tuple,
    kwargs: dict,
    captured: Captured,
    optimized: Captured,
    loss: Callable | None,
    seed: int,
    dtype: torch.dtype,
) -> list[Check]:
    gen = torch.Generator().manual_seed(seed)
    # eager
    user = _flat_user(captured, args, kwargs)
    float_user = [i for i, t in enumerate(user) if t.is_floating_point()]
    leaves, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
    user_iter = iter(range(len(user)))
    req_user = [u.detach().clone().requires_grad_(u.is_floating_point()) for u in user]
    new_leaves = []
    for leaf, want in zip(leaves, captured.leaves, strict=True):
        new_leaves.append(leaf if isinstance(want, ConstantLeaf) else req_user[next(user_iter)])
    e_args, e_kwargs = pytree.tree_unflatten(new_leaves, spec)
    params = dict(m.named_parameters())
    try:
        structured, outs = _eager_outputs(m, tuple(e_args), dict(e_kwargs))
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise VerificationError(
            f"the eager model failed on the example inputs: {type(e).__name__}: {first}",
            hint="check the example inputs' dtypes and shapes against the model",
        ) from e
    cot = [
        torch.randn(o.shape, generator=gen, dtype=o.dtype) if o.is_floating_point() else None
        for o in outs
    ]
    wrt_names = list(params) + [captured.user_inputs[i].name for i in float_user]
    wrt = list(params.values()) + [req_user[i] for i in float_user]
    want = _grads(_scalar(outs, structured, loss, cot), wrt)
    want_by_name = dict(zip(wrt_names, want, strict=True))
    # the transformed graph
    present = {s.name for s in optimized.state_inputs if s.kind == "parameter"}
    g_params = {
        n: optimized.state[n].detach().clone().requires_grad_(True) for n in params if n in present
    }
    g_user = [u.detach().clone().requires_grad_(u.is_floating_point()) for u in user]
    g_outs = _graph_forward(optimized, g_params, g_user)
    g_wrt_names = list(g_params) + [captured.user_inputs[i].name for i in float_user]
    g_wrt = list(g_params.values()) + [g_user[i] for i in float_user]
    scalar = _scalar(g_outs, _structured(optimized, g_outs), loss, cot)
    got = _grads(scalar, g_wrt)
    got_by_name = dict(zip(g_wrt_names, got, strict=True))
    rtol = tolerance(dtype)[0]
    gmax = max((float(g.abs().max()) for g in want if g.numel()), default=0.0)
    atol = rtol * gmax if gmax else tolerance(dtype)[1]
    checks = []
    present |= set(got_by_name)  # and the float user inputs
    for group in _tied_groups(params, present, wrt_names):
        kept = [n for n in group if n in present]
        gone = [n for n in group if n not in present]
        if not kept:
            for name in gone:
                note = "removed by the passes (folded into constants or dropped)"
                checks.append(Check(name, "grad", True, 0.0, 0.0, rtol, atol, note))
            continue
        if len(group) == 1:
            name = group[0]
            want_g, got_g = want_by_name[name], got_by_name[name]
            checks.append(compare(name, want_g, got_g, kind="grad", rtol=rtol, atol=atol))
            continue
        # bit-identical parameters the passes tied together (weight dedup): the gradients of
        # the ones kept carry the sum of all of theirs
        label = kept[0] if len(kept) == 1 else " + ".join(kept)
        want_sum = sum(want_by_name[n] for n in group)
        got_sum = sum(got_by_name[n] for n in kept)
        note = f"tied by the passes with {len(gone)} bit-identical parameter(s): sums compared"
        check = compare(label, want_sum, got_sum, kind="grad", rtol=rtol, atol=atol)
        checks.append(dataclasses.replace(check, note=note))
        for name in gone:
            note = f"merged into {label} by the passes (identical values): compared there"
            checks.append(Check(name, "grad", True, 0.0, 0.0, rtol, atol, note))
    return checks


def _tied_groups(
    params: dict[str, torch.Tensor], present: set[str], names: list[str]
) -> list[list[str]]:
    """Parameters in groups of bit-identical values where the passes removed some of a group
    (weight dedup keeps one of them; which one is the pass's business); else singletons."""
    by_value: dict[tuple, list[str]] = {}
    for name, p in params.items():
        t = p.detach().contiguous()
        raw = t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        by_value.setdefault((t.dtype, tuple(t.shape), raw), []).append(name)
    groups: list[list[str]] = []
    grouped: set[str] = set()
    for members in by_value.values():
        if len(members) > 1 and any(m not in present for m in members):
            groups.append(members)
            grouped.update(members)
    groups += [[n] for n in names if n not in grouped]
    return groups


def _gradcheck(optimized: Captured, user: list[torch.Tensor]) -> Check:
    """torch.autograd.gradcheck (fast mode: random projections) on the transformed graph,
    with respect to every float64 parameter and user input, as one vector z with
    x_t = x_t0 + sqrt(N / n_t) z_t. Fast mode makes one numerical derivative per input tensor
    (two forward runs each): one vector costs 2 runs where MobileNetV2's 159 tensors cost 318
    (a minute). The scale gives every tensor an equal share of the random direction, as
    per-tensor inputs would, so a wrong gradient of a small tensor (a bias) still shows."""
    names = [s.name for s in optimized.state_inputs if s.kind == "parameter"]
    float_user = [i for i, t in enumerate(user) if t.is_floating_point()]
    tensors = [optimized.state[n].detach() for n in names]
    tensors += [user[i].detach() for i in float_user]
    sizes = [max(1, t.numel()) for t in tensors]
    scales = [math.sqrt(sum(sizes) / n) for n in sizes]
    z = torch.zeros(sum(t.numel() for t in tensors), dtype=torch.float64, requires_grad=True)

    def fn(vector: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pieces = torch.split(vector, [t.numel() for t in tensors])
        xs = [t + s * p.view(t.shape) for t, s, p in zip(tensors, scales, pieces, strict=True)]
        ps = dict(zip(names, xs[: len(names)], strict=True))
        u = list(user)
        for i, x in zip(float_user, xs[len(names) :], strict=True):
            u[i] = x
        outs = _graph_forward(optimized, ps, u)
        return tuple(o for o in outs if o.is_floating_point())

    try:
        ok = torch.autograd.gradcheck(fn, (z,), fast_mode=True, raise_exception=True)
        note = f"fast mode over {len(tensors)} tensors as one vector"
    except Exception as e:  # gradcheck reports by raising; keep its first line
        ok, note = False, str(e).strip().splitlines()[0][:300]
    return Check("gradcheck", "grad", bool(ok), 0.0, 0.0, 0.0, 0.0, note)


def _grads(scalar: torch.Tensor, wrt: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """d scalar / d wrt; zeros when the scalar does not depend on them differentiably (outputs
    computed through comparisons, an integer cast)."""
    if not scalar.requires_grad:
        return tuple(torch.zeros_like(t) for t in wrt)
    return torch.autograd.grad(scalar, wrt, allow_unused=True, materialize_grads=True)


def check_gradients(
    model: nn.Module,
    args: Any = (),
    kwargs: dict | None = None,
    *,
    passes: str | Sequence[Any] = "default",
    skip: Sequence[str] = (),
    loss: Callable[[Any], torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float32,
    directions: int = 2,
    seed: int = 0,
    bake_constants: bool = False,
    dynamic_dims: Any = "auto",
) -> Report:
    """Compare the gradients of the captured graph (optimized by ``passes``: "default", "none"
    or a list, minus ``skip``) with eager autograd, and the ONNX model's directional
    derivatives with eager forward mode. The model runs in eval mode (as ``compile`` captures
    it). ``loss(outputs)`` gives the scalar (default: a seeded random cotangent). With
    ``dtype=torch.float64`` the model and inputs are cast and ``gradcheck`` runs too;
    ``directions=0`` skips the ONNX check. ``dynamic_dims`` as in ``compile`` (the graphs are
    differentiated at the example's sizes). Returns a Report; it does not raise.

    The graph gradients are taken with ``const_fold`` held back (``bake_constants=True`` keeps
    it): the folds before it are computations on the original parameters, which const_fold then
    bakes into constants for inference, so holding it back keeps every parameter's gradient
    comparable. The ONNX directional check runs the pipeline as given, const_fold included."""
    from ..passes import chooses
    from ._directional import directional_checks

    check_entry(model, args, kwargs)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, not {dtype!r}")
    if isinstance(directions, bool) or not isinstance(directions, int) or directions < 0:
        raise ValueError(f"directions must be an int >= 0 (0 skips them), not {directions!r}")
    if not isinstance(args, tuple):
        args = (args,)
    kwargs = dict(kwargs or {})
    model, unwrapped = unwrap_parallel(model)
    t0 = time.perf_counter()
    grad_skip = list(skip)
    held_back = not bake_constants and chooses(passes, skip, "const_fold")
    if held_back:
        grad_skip.append("const_fold")
    m, a, k, captured, optimized, stats = _prepare(
        model, args, kwargs, dtype, passes, grad_skip, dynamic_dims
    )
    stages = {"capture+passes": (time.perf_counter() - t0) * 1e3}
    t0 = time.perf_counter()
    checks = _grad_checks(m, a, k, captured, optimized, loss, seed, dtype)
    notes = [f"gradients of the graph after passes={passes!r} (eval mode) vs eager autograd"]
    if unwrapped:
        notes.insert(0, unwrapped)
    if held_back:
        notes.append(
            "const_fold held back for the graph gradients so that folded parameters stay "
            "comparable (bake_constants=True includes it)"
        )
    stages["grad"] = (time.perf_counter() - t0) * 1e3
    if dtype == torch.float64:
        t0 = time.perf_counter()
        checks.append(_gradcheck(optimized, _flat_user(captured, a, k)))
        stages["gradcheck"] = (time.perf_counter() - t0) * 1e3
    if directions:
        t0 = time.perf_counter()
        dir_checks, dir_notes = directional_checks(
            model, args, kwargs, passes, skip, directions, seed, _FD, dynamic_dims
        )
        checks += dir_checks
        notes += dir_notes
        stages["directional"] = (time.perf_counter() - t0) * 1e3
    return Report(checks=tuple(checks), stages=stages, notes=tuple(notes), passes=tuple(stats))
