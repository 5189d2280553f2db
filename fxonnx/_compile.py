"""The public pipeline: capture -> lower -> onnxruntime session -> verification."""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
import torch.utils._pytree as pytree
from torch import nn

from ._checks import check_entry, check_path, structure_mismatch
from ._dimexpr import describe_all, evaluate, is_name
from ._errors import DynamicDimError, InputError, PassError, UnsupportedOpError
from .capture import Captured, ConstantLeaf, capture, unwrap_parallel
from .export import DEFAULT_OPSET, lower, save_model
from .runtime import (
    Session,
    aborting_ops,
    as_session_dtypes,
    fit_kernels,
    fit_schema,
    float32_boundary,
)
from .verify import Report
from .verify import verify as verify_outputs
from .verify._verify import eval_mode

log = logging.getLogger(__name__)


class CompiledModel:
    """A model running in onnxruntime that is called like the eager module: torch tensors in
    (positional and keyword), the eager output structure (tensor, tuple, list, dict) out."""

    def __init__(
        self, captured: Captured, onnx_model: onnx.ModelProto, session: Session, report: Report
    ) -> None:
        self.captured = captured
        self.onnx_model = onnx_model
        self.report = report
        self.use_session(session)

    def use_session(self, session: Session) -> None:
        """Run on ``session`` from now on (one of the same model)."""
        self.session = session
        self._fast = _FastPath.of(self.captured, session)
        # a flat tuple of tensors in, a tensor or tuple out, the session's own dtypes, on the
        # CPU: a signature the session has checked before goes straight through ``run_seen``
        fast = self._fast
        direct = fast.n_inputs == len(session.inputs) and fast.same_dtypes
        self._seen = session.run_seen if direct and not session.on_cuda else None
        self._leaf = fast.out_kind == "leaf"
        self._tuple = fast.out_kind == "tuple"
        self._keys = fast.keys  # a flat dict of tensors out (the zoo's text models)

    @property
    def provider(self) -> str:
        return self.session.provider

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.captured.user_inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.captured.outputs]

    def _flat_inputs(self, args: tuple, kwargs: dict) -> list[torch.Tensor]:
        leaves, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        if spec != self.captured.in_spec:
            raise InputError(
                structure_mismatch(args, kwargs, self.captured.in_spec),
                hint=f"call with the same arguments as the example: {self.input_names}",
            )
        tensors = []
        for leaf, want in zip(leaves, self.captured.leaves, strict=True):
            if isinstance(want, ConstantLeaf):
                if leaf != want.value:
                    raise InputError(
                        f"argument {want.name!r} was {want.value!r} at compile time and is baked "
                        f"into the graph; got {leaf!r}",
                        hint="recompile with the new value, or pass it as a tensor",
                    )
            elif not isinstance(leaf, torch.Tensor):
                raise InputError(
                    f"input {want.name!r} must be a torch.Tensor, got {type(leaf).__name__}"
                )
            else:
                tensors.append(leaf)
        return tensors

    def _output_shapes(self, tensors: list[torch.Tensor]) -> list[tuple[int, ...]] | None:
        env: dict[str, int] = {}
        for t, spec in zip(tensors, self.captured.user_inputs, strict=True):
            for size, dim in zip(t.shape, spec.shape, strict=False):
                if is_name(dim):
                    env[dim] = int(size)
        shapes = []
        for spec in self.captured.outputs:
            dims = [evaluate(d, env) for d in spec.shape]
            if None in dims:
                return None
            shapes.append(tuple(dims))
        return shapes

    def run_flat(self, args: tuple, kwargs: dict | None = None) -> list[torch.Tensor]:
        """The tensor outputs as a flat list (in ``output_names`` order)."""
        fast = self._fast
        tensors: Any = args  # the compile-time structure: a flat tuple of tensors
        if kwargs or len(args) != fast.n_inputs or not _plain_tensors(args):
            tensors = as_session_dtypes(self._flat_inputs(args, kwargs or {}), self.session)
        session = self.session
        outs = session.run_torch(tensors, self._output_shapes(tensors) if session.on_cuda else None)
        if fast.same_dtypes:
            return outs
        want = self.captured.outputs
        return [o.to(s.dtype) if o.dtype != s.dtype else o for o, s in zip(outs, want, strict=True)]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs and self._seen is not None:
            outs = self._seen(args)
            if outs is not None:
                return self._structure(outs)
        return self._structure(self.run_flat(args, kwargs))

    def _structure(self, outs: list[torch.Tensor]) -> Any:
        if self._leaf:
            return outs[0]
        if self._tuple:
            return tuple(outs)
        if self._keys:  # a flat dict: no pytree (about 2 µs a call)
            return dict(zip(self._keys, outs, strict=True))
        outs = iter(outs)
        leaves = [
            leaf.value if isinstance(leaf, ConstantLeaf) else next(outs)
            for leaf in self.captured.out_leaves
        ]
        return pytree.tree_unflatten(leaves, self.captured.out_spec)

    def save(self, path: str | os.PathLike, *, external_data: bool | None = None) -> list:
        """Write the ONNX model (weights in ``<path>.data`` when past 2 GB or asked for)."""
        return save_model(self.onnx_model, path, external_data=external_data)

    def save_bundle(
        self,
        directory: str | os.PathLike,
        *,
        overwrite: bool = False,
        fmt: str = "fxonnx",
        **kw: Any,
    ) -> Any:
        """Write a deployment bundle ("fxonnx" or "triton"); see ``fxonnx.bundle.save_bundle``."""
        from .bundle import save_bundle

        return save_bundle(self, directory, overwrite=overwrite, fmt=fmt, **kw)

    def __repr__(self) -> str:
        verdict = "ok" if self.report.ok else "FAILED"
        if not self.report.verified:
            verdict = "not verified"
        return (
            f"CompiledModel(inputs={self.input_names}, outputs={self.output_names}, "
            f"provider={self.provider!r}, nodes={len(self.onnx_model.graph.node)}, "
            f"verification={verdict})"
        )


@dataclass(frozen=True)
class _FastPath:
    """What lets a call skip pytree work: ``n_inputs`` when the inputs are exactly a flat tuple
    of that many tensors (-1 otherwise), the output structure ("leaf", "tuple", "dict" of
    tensors under ``keys``, or "tree"), and whether onnxruntime's output dtypes already are the
    eager ones."""

    n_inputs: int
    out_kind: str
    same_dtypes: bool
    keys: tuple = ()

    @staticmethod
    def of(captured: Captured, session: Session) -> _FastPath:
        leaves = captured.leaves
        flat = not any(isinstance(leaf, ConstantLeaf) for leaf in leaves)
        flat = flat and captured.in_spec == pytree.tree_structure((tuple(leaves), {}))
        out_kind = "tree"
        if not any(isinstance(leaf, ConstantLeaf) for leaf in captured.out_leaves):
            n = len(captured.out_leaves)
            if n == 1 and captured.out_spec == pytree.tree_structure(0):
                out_kind = "leaf"
            elif captured.out_spec == pytree.tree_structure(tuple(range(n))):
                out_kind = "tuple"
            elif captured.out_spec.type is dict:
                keys = tuple(captured.out_spec.context)
                if captured.out_spec == pytree.tree_structure(dict.fromkeys(keys, 0)):
                    out_kind = "dict"
        same = [_torch_dtype(o.dtype) for o in session.outputs] == [
            o.dtype for o in captured.outputs
        ]
        keys = tuple(captured.out_spec.context) if out_kind == "dict" else ()
        return _FastPath(len(leaves) if flat else -1, out_kind, same, keys)


def _plain_tensors(args: tuple) -> bool:
    """Every argument a plain torch.Tensor, none bfloat16 (those take the full path, where
    ``as_session_dtypes`` widens them for float32 sessions)."""
    for a in args:
        if type(a) is not torch.Tensor or a.dtype is torch.bfloat16:
            return False
    return True


def _torch_dtype(dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


def _capture_and_lower(
    model: nn.Module,
    args: Any,
    kwargs: dict | None,
    *,
    opset: int,
    dynamic_dims: Any,
    batch_dims: Any,
    dynamic: bool,
    fallback: str | None,
    passes: Any = "default",
    skip: Any = (),
    prune: Any = None,
    verify_each: bool = False,
    pass_stats: list | None = None,
) -> tuple[Captured, onnx.ModelProto, dict[str, float], list[str]]:
    check_entry(model, args, kwargs, opset)
    if fallback not in (None, "torch.onnx"):
        raise ValueError(f"fallback must be None or 'torch.onnx', not {fallback!r}")
    notes: list[str] = []
    stages: dict[str, float] = {}
    with eval_mode(model) as was_training:
        if was_training:
            notes.append("model was in training mode; captured in eval mode")
        t0 = time.perf_counter()
        captured = capture(
            model, args, kwargs, dynamic_dims=dynamic_dims, batch_dims=batch_dims, dynamic=dynamic
        )
        stages["capture"] = (time.perf_counter() - t0) * 1e3
    notes += captured.notes
    if captured.shapes.dynamic:
        uses = "; ".join(
            f"{s.name}: " + ", ".join(f"{i} dim {d}" for i, d in s.uses)
            for s in captured.shapes.symbols
        )
        notes.append(f"dynamic dims {describe_all(captured.shapes.constraints())} ({uses})")
    stats: list[dict] = []
    if passes != "none" or prune:
        from .passes import run_passes

        t0 = time.perf_counter()
        captured, stats = run_passes(
            captured,
            passes,
            skip,
            prune=prune,
            verify_each=verify_each,
            opset=opset,
            # pruning measures how far the outputs moved on them, verify_each checks each pass
            example_inputs=_user_tensors(captured, args, kwargs) if verify_each or prune else (),
        )
        stages["passes"] = (time.perf_counter() - t0) * 1e3
        if pass_stats is not None:
            pass_stats.extend(stats)
    t0 = time.perf_counter()
    try:
        onnx_model = lower(captured, opset=opset)
        _fold_lowered_constants(onnx_model, stats)
        onnx_model, widened = fit_schema(onnx_model)  # bool Max, int32 MaxPool: valid ONNX
        notes += widened
    except DynamicDimError as e:
        if captured.shapes.requested != "auto":
            raise
        # the default asked for a dynamic batch; a graph that cannot keep one is exported static
        note = f"dims are static: {e.message}"
        warnings.warn(f"fxonnx: {note}", UserWarning, stacklevel=3)
        if pass_stats is not None:
            pass_stats.clear()
        captured, onnx_model, stages, more = _capture_and_lower(
            model,
            args,
            kwargs,
            opset=opset,
            dynamic_dims=None,
            batch_dims=None,
            dynamic=True,
            fallback=fallback,
            passes=passes,
            skip=skip,
            prune=prune,
            verify_each=verify_each,
            pass_stats=pass_stats,
        )
        return captured, onnx_model, stages, [*notes, note, *more]
    except UnsupportedOpError as e:
        if fallback != "torch.onnx":
            raise
        from .export._fallback import export_with_torch_onnx

        onnx_model = export_with_torch_onnx(captured, opset)
        notes.append(
            "exported by torch.onnx.export (fallback='torch.onnx') because these ops have no "
            f"fxonnx lowering: {sorted({op.target for op in e.ops})}"
        )
    stages["lower"] = (time.perf_counter() - t0) * 1e3
    return captured, onnx_model, stages, notes


def _fold_lowered_constants(onnx_model: onnx.ModelProto, stats: list[dict]) -> None:
    """const_fold, when it ran, also folds what lowering rules emitted on initializers only (the
    gate reordering of recurrent weights); its stats count those as ``onnx_folded``."""
    entry = next((s for s in stats if s["name"] == "const_fold"), None)
    if entry is None:
        return
    from .export import fold_initializer_nodes

    t0 = time.perf_counter()
    folded = fold_initializer_nodes(onnx_model)
    entry["ms"] = round(entry["ms"] + (time.perf_counter() - t0) * 1e3, 3)
    if folded:
        entry["modified"] = True
        entry["stats"]["onnx_folded"] = folded


def _target_provider(provider: str) -> str:
    """The provider the session will really run on ("auto" resolved, with its one warning)."""
    from .runtime._providers import CUDA, resolve

    return "cuda" if resolve(provider)[0] == CUDA else "cpu"


def _fuse_for_provider(
    onnx_model: onnx.ModelProto,
    provider: str,
    passes: Any,
    skip: Any,
    stats: list[dict],
    runtime_ops: bool,
) -> None:
    """The ``stage="onnx"`` pass ``fuse_activation``, when chosen, on the lowered model; without
    ``runtime_ops`` it holds back (the model stays standard ONNX) and its record says so."""
    from .passes import chooses

    if not chooses(passes, skip, "fuse_activation"):
        return
    if not runtime_ops:
        stats.append(
            {
                "name": "fuse_activation",
                "rounds": 0,
                "modified": False,
                "ms": 0.0,
                "stats": {"miss:runtime_ops_off": 1},
            }
        )
        return
    from .export import fuse_activations

    t0 = time.perf_counter()
    result = fuse_activations(onnx_model, provider)
    stats.append(
        {
            "name": "fuse_activation",
            "rounds": 1,
            "modified": bool(result.get("fused")),
            "ms": round((time.perf_counter() - t0) * 1e3, 3),
            "stats": result,
        }
    )


def _user_tensors(captured: Captured, args: Any, kwargs: dict | None) -> list[torch.Tensor]:
    """The example's tensor leaves, in ``captured.user_inputs`` order."""
    if not isinstance(args, tuple):
        args = (args,)
    leaves = pytree.tree_leaves((tuple(args), dict(kwargs or {})))
    return [
        leaf
        for leaf, want in zip(leaves, captured.leaves, strict=True)
        if not isinstance(want, ConstantLeaf)
    ]


def compile(  # noqa: A001 - the public name mirrors torch.compile
    model: nn.Module,
    args: Any = (),
    kwargs: dict | None = None,
    *,
    provider: str = "auto",
    opset: int = DEFAULT_OPSET,
    verify: bool | str = True,
    dynamic_dims: Any = "auto",
    batch_dims: Any = None,
    dynamic: bool = True,
    fallback: str | None = None,
    passes: str | list[str] = "default",
    skip: list[str] | tuple[str, ...] = (),
    prune: float | dict[str, float] | None = None,
    runtime_ops: bool = False,
) -> CompiledModel:
    """Capture ``model`` on the example inputs, lower it to ONNX and load it in onnxruntime.

    ``provider``: "cpu", "cuda" or "auto" (CUDA when it really works, else the CPU with one
    warning). ``verify`` (default) compares the compiled model with eager on the example inputs
    and at a second value of every dynamic dim; a mismatch raises VerificationError.
    ``dynamic_dims`` names the dims that may vary: "auto" (the batch), "all", None (static) or
    ``{"input_ids": {0: "batch", 1: "seq"}}``; ``batch_dims`` and ``dynamic=False`` are
    shorthands (see ``fxonnx.capture.capture``).
    ``fallback="torch.onnx"`` hands graphs with unsupported ops to ``torch.onnx.export``.
    ``passes`` ("default", "none" or pass names, see ``fxonnx.passes.available_passes()``) minus
    ``skip`` optimize the graph first; ``prune`` (a ratio or {layer: ratio}) removes that share
    of conv/linear channels by L1 norm. ``verify="each-pass"`` also checks the graph in torch
    after every pass (PassError names the pass and the first diverging node). Per-pass stats
    land in ``report.passes``, their time in ``report.stages["passes"]``.
    ``runtime_ops=True`` lets ``fuse_activation`` write onnxruntime's ``com.microsoft``
    FusedConv/FusedGemm into ``onnx_model`` (and so into saved files and bundles); by default
    the model is standard ONNX, which onnxruntime fuses the same way at session start.
    """
    if verify not in (True, False, "each-pass"):
        raise ValueError(f"verify must be True, False or 'each-pass', not {verify!r}")
    if not runtime_ops and isinstance(passes, (list, tuple)) and "fuse_activation" in passes:
        raise PassError(
            "fuse_activation writes onnxruntime-only com.microsoft ops into the model",
            hint="pass runtime_ops=True (CLI: fxonnx export --ort-ops) to ask for them, or "
            "leave it out",
        )
    model, unwrapped = unwrap_parallel(model)
    pass_stats: list = []
    captured, onnx_model, stages, notes = _capture_and_lower(
        model,
        args,
        kwargs,
        opset=opset,
        dynamic_dims=dynamic_dims,
        batch_dims=batch_dims,
        dynamic=dynamic,
        fallback=fallback,
        passes=passes,
        skip=skip,
        prune=prune,
        verify_each=verify == "each-pass",
        pass_stats=pass_stats,
    )
    target = _target_provider(provider)
    _fuse_for_provider(onnx_model, target, passes, skip, pass_stats, runtime_ops)
    t0 = time.perf_counter()
    onnx_model, kernel_notes = fit_kernels(onnx_model, target)
    runnable, boundary = float32_boundary(onnx_model)
    notes = [*notes, *kernel_notes, *([boundary] if boundary else [])]
    session = Session(runnable.SerializeToString(), provider=target)
    session.refuse_empty = aborting_ops(runnable)
    stages["session"] = (time.perf_counter() - t0) * 1e3
    notes = [unwrapped, *notes] if unwrapped else notes
    report = Report(stages=stages, notes=tuple(notes), passes=tuple(pass_stats))
    compiled = CompiledModel(captured, onnx_model, session, report)
    if verify:
        reference, pruned = model, ()
        if prune:  # lossy on purpose: check the export against the pruned graph in torch
            from .passes import GraphReference

            reference = GraphReference(captured)
            pruned = ("pruned: verified against the pruned graph (deviation in report.passes)",)
        checked = verify_outputs(reference, args, compiled, kwargs)
        compiled.report = report.add(
            checks=checked.checks, notes=checked.notes + pruned, stages=checked.stages
        )
        compiled.report.raise_if_failed()
        if session.pattern_pinned:  # else the example's shapes would plan every call's memory
            fresh = Session(runnable.SerializeToString(), provider=target)
            fresh.refuse_empty = session.refuse_empty
            compiled.use_session(fresh)
    return compiled


def export(
    model: nn.Module,
    args: Any,
    path: str | os.PathLike | None = None,
    kwargs: dict | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_dims: Any = "auto",
    batch_dims: Any = None,
    dynamic: bool = True,
    fallback: str | None = None,
    external_data: bool | None = None,
    passes: str | list[str] = "default",
    skip: list[str] | tuple[str, ...] = (),
    prune: float | dict[str, float] | None = None,
) -> onnx.ModelProto:
    """Capture, optimize (``passes`` minus ``skip``, optional ``prune``; see ``compile``) and
    lower ``model`` to ONNX without running it; save to ``path`` when given."""
    model, unwrapped = unwrap_parallel(model)
    if unwrapped:
        log.info("fxonnx: %s", unwrapped)
    if path is not None:
        check_path(path)
    _, onnx_model, _, notes = _capture_and_lower(
        model,
        args,
        kwargs,
        opset=opset,
        dynamic_dims=dynamic_dims,
        batch_dims=batch_dims,
        dynamic=dynamic,
        fallback=fallback,
        passes=passes,
        skip=skip,
        prune=prune,
    )
    for note in notes:
        log.info("fxonnx: %s", note)
    if path is not None:
        save_model(onnx_model, path, external_data=external_data)
    return onnx_model
