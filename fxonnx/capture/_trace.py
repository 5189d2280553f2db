"""nn.Module + example inputs -> Captured: a functional, pre-dispatch ATen graph.

Pre-dispatch ATen keeps ``aten.linear``, ``aten.conv2d``, ``aten.layer_norm``, ``aten.gru`` and
``aten.scaled_dot_product_attention`` whole, which lower to single ONNX ops. Tracing runs on
fake tensors (no FLOPs, no memory); dynamic dims are SymInts of one ShapeEnv (``_symbolic``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
import warnings
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import fx, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from .._errors import CaptureError
from . import (
    _dims,
    _fake_kernels,  # noqa: F401  (fake kernels of ops torch gives none)
)
from ._budget import guarded_trace
from ._captured import Captured, ConstantLeaf, Shapes, TensorSpec
from ._fake_weights import fake_weights
from ._functionalize import functionalize_simple
from ._lazy import lazy_codegen
from ._recurrent import recurrent_as_whole_ops
from ._replay import replayed_layers
from ._signature import input_names, output_names, sanitize
from ._symbolic import SymbolicInputs
from ._transformer import eager_transformer_semantics
from ._value_checks import without_value_checks

log = logging.getLogger(__name__)

_DATA_DEPENDENT = (
    "DataDependentOutputException",
    "GuardOnDataDependentSymNode",
    "DynamicOutputShapeException",
    "UnsupportedOperatorException",
)
_GRAD_MODE_OPS = {torch._C._set_grad_enabled}


def _user_frame(exc: BaseException) -> str | None:
    frames = traceback.extract_tb(exc.__traceback__)
    skip = ("/torch/", "/fxonnx/capture/", "/functorch/", "contextlib.py")
    user = [f for f in frames if not any(s in f.filename for s in skip)]
    if not user:
        return None
    f = user[-1]
    return f"{f.filename}:{f.lineno}: {(f.line or '').strip()}"


def _capture_error(exc: BaseException) -> CaptureError:
    where = _user_frame(exc)
    at = f" at {where}" if where else ""
    kind = type(exc).__name__
    if "pack_padded_sequence" in str(exc) or "_pack_sequence" in str(exc):
        return CaptureError(
            f"a PackedSequence{at} cannot be captured: its layout depends on the lengths' values",
            hint="pass the padded batch to the recurrent layer and mask the padded steps after "
            "it (or use the full lengths)",
        )
    if kind in _DATA_DEPENDENT or "data-dependent" in str(exc) or "data dependent" in str(exc):
        return CaptureError(
            f"data-dependent Python control flow or value{at} cannot be captured: the graph "
            f"would depend on tensor values ({kind}: {str(exc).splitlines()[0][:160]})",
            hint="express the branch with torch.cond(pred, true_fn, false_fn, (operands,)) and "
            "keep values as tensors instead of calling .item()/.tolist()/bool()",
        )
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else kind
    return CaptureError(f"the model failed while being traced{at}: {kind}: {first}")


class _Tracer:
    """Holds what one capture needs so that retraces (static fallback, source lines) share it."""

    def __init__(
        self,
        model: nn.Module,
        args: tuple,
        kwargs: dict,
        dynamic_dims: Any,
        batch_dims: Any = None,
        dynamic: bool = True,
    ) -> None:
        self.model = model
        self.names, leaves = input_names(model, args, kwargs)
        _, self.in_spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        self.leaves = leaves
        self.tensor_pos = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
        self.tensors = [leaves[i] for i in self.tensor_pos]
        self.tensor_names = [self.names[i] for i in self.tensor_pos]
        dynamic_dims = _dims.effective(dynamic_dims, batch_dims, dynamic, self.tensor_names)
        self.requested = _dims.mode(dynamic_dims)
        self.per_input = _dims.resolve(self.tensors, self.tensor_names, dynamic_dims)
        self.state = {
            **dict(model.named_parameters()),
            **dict(model.named_buffers()),
        }
        self.n_params = len(dict(model.named_parameters()))
        self.out_spec: pytree.TreeSpec | None = None
        self.out_leaves: list[Any] = []

    # -- the function make_fx traces -------------------------------------------------------
    def _fn(self, *flat: torch.Tensor) -> list[torch.Tensor]:
        n = len(self.state)
        state = dict(zip(self.state, flat[:n], strict=True))
        leaves = list(self.leaves)
        for pos, t in zip(self.tensor_pos, flat[n:], strict=True):
            leaves[pos] = t
        args, kwargs = pytree.tree_unflatten(leaves, self.in_spec)
        with recurrent_as_whole_ops():
            out = torch.func.functional_call(self.model, state, tuple(args), kwargs)
        out_leaves, self.out_spec = pytree.tree_flatten(out)
        self.out_leaves = out_leaves
        self.out_names = output_names(out)
        return [x for x in out_leaves if isinstance(x, torch.Tensor)]

    def symbolic_inputs(self) -> SymbolicInputs:
        return SymbolicInputs.create(self.tensors, self.tensor_names, self.per_input)

    def trace(
        self, symbolic: SymbolicInputs | None = None, *, stack_traces: bool = False
    ) -> fx.GraphModule:
        """One fake-tensor, pre-dispatch trace; dynamic dims are ``symbolic``'s SymInts."""
        if symbolic is None:
            mode = FakeTensorMode(allow_non_fake_inputs=True)
            with mode:
                user = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in self.tensors]
        else:
            mode = symbolic.mode
            user = [symbolic.fake(t, d) for t, d in zip(self.tensors, self.per_input, strict=True)]
        fakes = fake_weights(mode, list(self.state.values())) + user
        config = symbolic.tracing() if symbolic is not None else contextlib.nullcontext()
        with config, eager_transformer_semantics():  # torch.nn code that reads values
            try:
                with (
                    mode,
                    torch.no_grad(),
                    without_value_checks(),
                    guarded_trace(self.model),
                    replayed_layers(self.model) as replays,
                ):
                    trace = make_fx(self._fn, pre_dispatch=True, record_stack_traces=stack_traces)
                    with lazy_codegen():
                        gm = trace(*fakes)
                log.debug("layer calls replayed: %s", dict(replays))
            except CaptureError:
                raise
            except Exception as e:
                raise _capture_error(e) from e
            _drop_grad_mode_calls(gm)
            reason = functionalize_simple(gm)
            if reason is not None:
                log.info("full functionalization needed: %s", reason)
                gm = self._trace_functionalized(mode, fakes)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        return gm

    def _trace_functionalized(self, mode: FakeTensorMode, fakes: list) -> fx.GraphModule:
        """torch's own functionalization (slower): for mutations of views and inputs."""
        from torch._functorch.aot_autograd import aot_export_module

        tracer = self

        class Flat(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = tracer.model

            def forward(self, *user: torch.Tensor) -> tuple[torch.Tensor, ...]:
                leaves = list(tracer.leaves)
                for pos, t in zip(tracer.tensor_pos, user, strict=True):
                    leaves[pos] = t
                args, kwargs = pytree.tree_unflatten(leaves, tracer.in_spec)
                out = self.inner(*args, **kwargs)
                out_leaves, tracer.out_spec = pytree.tree_flatten(out)
                tracer.out_leaves = out_leaves
                tracer.out_names = output_names(out)
                return tuple(x for x in out_leaves if isinstance(x, torch.Tensor))

        try:
            with mode, torch.no_grad(), without_value_checks(), guarded_trace(tracer.model):
                gm, sig = aot_export_module(
                    Flat(), tuple(fakes[len(self.state) :]), trace_joint=False, pre_dispatch=True
                )
        except Exception as e:
            raise _capture_error(e) from e
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        by_name = {n: i for i, n in enumerate(sig.parameters + sig.buffers)}
        order = [by_name.get("inner." + k) for k in self.state]
        if None in order or len(placeholders) != len(self.state) + len(self.tensor_pos):
            raise CaptureError("functionalized graph has an unexpected signature")
        # reorder state placeholders to our order (parameters and buffers by name)
        state_nodes = [placeholders[i] for i in order]  # type: ignore[index]
        user_nodes = placeholders[len(self.state) :]
        _reorder_placeholders(gm, state_nodes + user_nodes)
        out_node = next(n for n in gm.graph.nodes if n.op == "output")
        mutated = getattr(sig, "parameters_to_mutate", {})  # Embedding(max_norm=...)
        n_mut = len(sig.buffers_to_mutate) + len(sig.user_inputs_to_mutate) + len(mutated)
        outs = list(out_node.args[0])
        out_node.args = (outs[n_mut:],)
        if n_mut:
            log.warning(
                "the model mutates %d input(s) or buffer(s); the export ignores that", n_mut
            )
        return gm


def _reorder_placeholders(gm: fx.GraphModule, ordered: list[fx.Node]) -> None:
    anchor = next(n for n in gm.graph.nodes if n.op != "placeholder")
    for node in ordered:
        anchor.prepend(node)


def _drop_grad_mode_calls(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in _GRAD_MODE_OPS:
            gm.graph.erase_node(node)


def capture(
    model: nn.Module,
    args: tuple = (),
    kwargs: dict | None = None,
    *,
    dynamic_dims: Any = "auto",
    batch_dims: Any = None,
    dynamic: bool = True,
) -> Captured:
    """Trace ``model(*args, **kwargs)`` into a Captured ATen graph.

    ``dynamic_dims``: "auto" (the batch: dim 0 of the first tensor input and the dim of the same
    size in the others), "all" (every dim; what the model fixes becomes static), None (static)
    or {input name or position: {dim: name}} (see ``_dims``). A requested dim that the model's
    code fixes raises CaptureError naming the input, dim, value and source line (under "auto"
    and "all" it becomes static with a note). ``batch_dims`` (one dim per input, or {name: dim},
    all named "batch") and ``dynamic=False`` (None) are shorthands for it. Parameters and
    buffers become named graph inputs.
    """
    if not isinstance(model, nn.Module):
        raise CaptureError(
            f"expected an nn.Module, got {type(model).__name__}",
            hint="wrap a function in an nn.Module whose forward() calls it",
        )
    if not isinstance(args, tuple):
        args = (args,)
    t0 = time.perf_counter()
    tracer = _Tracer(model, args, dict(kwargs or {}), dynamic_dims, batch_dims, dynamic)
    gm, shapes, notes, symbolic = _trace_dims(tracer)
    captured = _assemble(tracer, gm, shapes, notes, symbolic)
    log.debug("captured %d nodes in %.1f ms", len(gm.graph.nodes), (time.perf_counter() - t0) * 1e3)
    return captured


def _trace_dims(
    tracer: _Tracer,
) -> tuple[fx.GraphModule, Shapes, list[str], SymbolicInputs | None]:
    requested = tracer.requested
    if not any(tracer.per_input):
        return tracer.trace(), Shapes(requested=requested), [], None
    symbolic = tracer.symbolic_inputs()
    try:
        gm = tracer.trace(symbolic)
    except CaptureError as e:
        if requested == "explicit":
            raise
        gm = tracer.trace()  # fails the same way when the problem is not the dynamic dims
        note = f"dims are static: tracing with symbolic dims failed ({str(e).splitlines()[0]})"
        warnings.warn(f"fxonnx: {note}", UserWarning, stacklevel=4)
        return gm, Shapes(requested=requested), [note], None
    user = [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"][len(tracer.state) :]
    shapes, fixed = symbolic.analyze(requested, user)
    if fixed and requested == "explicit":
        raise CaptureError(
            f"{fixed[0].describe()}, but dynamic_dims asks for it to vary",
            hint="remove it from dynamic_dims, or change the model code that fixes its size "
            "(a table or weight of that size, a reshape to a constant)",
        )
    notes = [f"{f.describe()}; that dim is static" for f in fixed]
    if notes and requested == "auto":
        warnings.warn(f"fxonnx: {notes[0]}", UserWarning, stacklevel=4)
    return gm, shapes, notes, (symbolic if shapes.dynamic else None)


def _assemble(
    tracer: _Tracer,
    gm: fx.GraphModule,
    shapes: Shapes,
    notes: list[str],
    symbolic: SymbolicInputs | None,
) -> Captured:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    state_names = list(tracer.state)
    user_names = [tracer.names[i] for i in tracer.tensor_pos]
    if len(placeholders) != len(state_names) + len(user_names):
        raise CaptureError(
            f"traced graph has {len(placeholders)} inputs, expected "
            f"{len(state_names) + len(user_names)}"
        )

    def spec(name: str, kind: Any, val: torch.Tensor) -> TensorSpec:
        return TensorSpec(name, kind, tuple(shapes.dim(d) for d in val.shape), val.dtype)

    inputs = []
    for i, (node, name) in enumerate(zip(placeholders, state_names + user_names, strict=True)):
        kind = (
            "input" if i >= len(state_names) else ("parameter" if i < tracer.n_params else "buffer")
        )
        node._rename(sanitize(name))
        node.target = node.name
        inputs.append(spec(name, kind, node.meta["val"]))
    state = {name: t.detach() for name, t in tracer.state.items()}
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = getattr(gm, node.target)
            if isinstance(value, torch.Tensor):
                state[node.target] = value.detach()
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    out_vals = [n.meta["val"] for n in out_node.args[0]]
    tensor_names = [
        name
        for name, leaf in zip(tracer.out_names, tracer.out_leaves, strict=True)
        if isinstance(leaf, torch.Tensor)
    ]
    tensor_names = _distinct_from(tensor_names, {s.name for s in inputs})
    outputs = tuple(spec(n, "output", v) for n, v in zip(tensor_names, out_vals, strict=True))
    leaves = _mix(tracer.names, tracer.leaves, inputs[len(state_names) :])
    out_leaves = _mix(tracer.out_names, tracer.out_leaves, outputs)
    baked = [leaf.name for leaf in out_leaves if isinstance(leaf, ConstantLeaf)]
    if baked:
        notes.append(f"non-tensor outputs baked as constants: {baked}")
    gm.recompile()

    def retrace() -> fx.GraphModule:
        again = tracer.symbolic_inputs() if symbolic is not None else None
        return tracer.trace(again, stack_traces=True)

    assert tracer.out_spec is not None
    return Captured(
        gm=gm,
        inputs=tuple(inputs),
        outputs=outputs,
        state=state,
        in_spec=tracer.in_spec,
        leaves=leaves,
        out_spec=tracer.out_spec,
        out_leaves=out_leaves,
        shapes=shapes,
        method="make_fx(pre_dispatch, fake" + (", symbolic)" if shapes.dynamic else ")"),
        notes=notes,
        retrace=retrace,
    )


def _distinct_from(names: list[str], taken: set[str]) -> list[str]:
    """Output names that no input has (ONNX values are named once): ``{"a": a + 1}`` of an
    input ``a`` is the output ``a.output``. The Python outputs keep their keys."""
    out = []
    for name in names:
        candidate, i = name, 0
        while candidate in taken:
            i += 1
            candidate = f"{name}.output" + (f"{i}" if i > 1 else "")
        taken.add(candidate)
        out.append(candidate)
    return out


def _mix(
    names: list[str], leaves: list[Any], specs: tuple[TensorSpec, ...]
) -> tuple[TensorSpec | ConstantLeaf, ...]:
    """Pytree leaves as specs: tensors take the next spec, anything else is a baked constant."""
    it = iter(specs)
    return tuple(
        next(it) if isinstance(leaf, torch.Tensor) else ConstantLeaf(name, leaf)
        for name, leaf in zip(names, leaves, strict=True)
    )
