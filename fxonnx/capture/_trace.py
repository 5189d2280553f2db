"""nn.Module + example inputs -> Captured: a functional, pre-dispatch ATen graph.

Pre-dispatch ATen keeps ``aten.linear``, ``aten.conv2d``, ``aten.layer_norm``, ``aten.gru`` and
``aten.scaled_dot_product_attention`` whole, which lower to single ONNX ops. Tracing runs on
fake tensors (no FLOPs, no memory) with the batch set to a sentinel; see ``_batch``.
"""

from __future__ import annotations

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
from . import _batch
from ._captured import BatchInfo, Captured, ConstantLeaf, TensorSpec
from ._functionalize import functionalize_simple
from ._signature import input_names, output_names, resolve_batch_dims, sanitize
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
    """Holds what one capture needs so that retries (second sentinel, static) share it."""

    def __init__(
        self, model: nn.Module, args: tuple, kwargs: dict, batch_dims: Any, dynamic: bool
    ) -> None:
        self.model = model
        self.names, leaves = input_names(model, args, kwargs)
        _, self.in_spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        self.leaves = leaves
        self.tensor_pos = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
        tensors = [leaves[i] for i in self.tensor_pos]
        tensor_names = [self.names[i] for i in self.tensor_pos]
        self.batch_dims = (
            resolve_batch_dims(tensors, tensor_names, batch_dims)
            if dynamic and batch_dims is not None
            else [None] * len(tensors)
        )
        self.example_batch = next(
            (t.shape[d] for t, d in zip(tensors, self.batch_dims, strict=True) if d is not None),
            None,
        )
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
        out = torch.func.functional_call(self.model, state, tuple(args), kwargs)
        out_leaves, self.out_spec = pytree.tree_flatten(out)
        self.out_leaves = out_leaves
        self.out_names = output_names(out)
        return [x for x in out_leaves if isinstance(x, torch.Tensor)]

    def _fake_inputs(self, mode: FakeTensorMode, batch: int | None) -> list[torch.Tensor]:
        fakes = [mode.from_tensor(t, static_shapes=True) for t in self.state.values()]
        for pos, d in zip(self.tensor_pos, self.batch_dims, strict=True):
            t = self.leaves[pos]
            shape = list(t.shape)
            if d is not None and batch is not None:
                shape[d] = batch
            with mode:
                fakes.append(torch.empty(shape, dtype=t.dtype, device=t.device))
        return fakes

    def trace(self, batch: int | None, *, stack_traces: bool = False) -> fx.GraphModule:
        """One fake-tensor, pre-dispatch trace with the batch dims set to ``batch``."""
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        fakes = self._fake_inputs(mode, batch)
        try:
            with mode, torch.no_grad(), without_value_checks():
                gm = make_fx(self._fn, pre_dispatch=True, record_stack_traces=stack_traces)(*fakes)
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
            with mode, torch.no_grad(), without_value_checks():
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
        n_mut = len(sig.buffers_to_mutate) + len(sig.user_inputs_to_mutate)
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
    batch_dims: Any = "auto",
    dynamic: bool = True,
) -> Captured:
    """Trace ``model(*args, **kwargs)`` into a Captured ATen graph.

    ``batch_dims``: "auto" (dim 0 of the first tensor input; other inputs use the dim of the same
    size), one int/None per tensor input, or {input name: dim}. ``dynamic=False`` specialises
    every shape to the example inputs. Parameters and buffers become named graph inputs.
    """
    if not isinstance(model, nn.Module):
        raise CaptureError(
            f"expected an nn.Module, got {type(model).__name__}",
            hint="wrap a function in an nn.Module whose forward() calls it",
        )
    if not isinstance(args, tuple):
        args = (args,)
    t0 = time.perf_counter()
    tracer = _Tracer(model, args, dict(kwargs or {}), batch_dims, dynamic)
    gm, info, notes = _trace_with_batch(tracer)
    captured = _assemble(tracer, gm, info, notes)
    log.debug("captured %d nodes in %.1f ms", len(gm.graph.nodes), (time.perf_counter() - t0) * 1e3)
    return captured


def _trace_with_batch(tracer: _Tracer) -> tuple[fx.GraphModule, BatchInfo, list[str]]:
    dims = tuple(tracer.batch_dims)
    example = tracer.example_batch
    if example is None:
        reason = "no input has a batch dim" if dims else "the model takes no tensor inputs"
        gm = tracer.trace(None)
        return gm, BatchInfo(False, None, dims, reason=reason), []
    s1 = _batch.SENTINEL
    try:
        gm = tracer.trace(s1)
        why = _batch.scan(gm, s1)
        if why is None:
            affines = _batch.multiples(gm, s1)
        else:
            s2 = _batch.SECOND_SENTINEL
            fitted = _batch.fit(gm, tracer.trace(s2), s1, s2)
            if isinstance(fitted, str):
                raise _StaticBatch(fitted)
            affines = fitted
        failed = _batch.scan_subgraphs(gm, s1) or _batch.symbolize(gm, affines, s1)
        if failed:
            raise _StaticBatch(failed)
        gm.recompile()
        return gm, BatchInfo(True, example, dims, sentinel=s1), []
    except (_StaticBatch, CaptureError) as e:
        reason = str(e).splitlines()[0]
        gm = tracer.trace(None)  # the real example shapes; a genuine error surfaces here
        note = f"batch is static ({example}): {reason}"
        warnings.warn(f"fxonnx: {note}", UserWarning, stacklevel=4)
        return gm, BatchInfo(False, example, dims, reason=reason), [note]


class _StaticBatch(Exception):
    """The batch cannot be made dynamic; the message says why."""


def _assemble(tracer: _Tracer, gm: fx.GraphModule, info: BatchInfo, notes: list[str]) -> Captured:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    state_names = list(tracer.state)
    user_names = [tracer.names[i] for i in tracer.tensor_pos]
    if len(placeholders) != len(state_names) + len(user_names):
        raise CaptureError(
            f"traced graph has {len(placeholders)} inputs, expected "
            f"{len(state_names) + len(user_names)}"
        )

    def spec(name: str, kind: Any, val: torch.Tensor) -> TensorSpec:
        return TensorSpec(name, kind, tuple(info.dim_of(int(d)) for d in val.shape), val.dtype)

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
    outputs = tuple(spec(n, "output", v) for n, v in zip(tensor_names, out_vals, strict=True))
    leaves = _mix(tracer.names, tracer.leaves, inputs[len(state_names) :])
    out_leaves = _mix(tracer.out_names, tracer.out_leaves, outputs)
    baked = [leaf.name for leaf in out_leaves if isinstance(leaf, ConstantLeaf)]
    if baked:
        notes.append(f"non-tensor outputs baked as constants: {baked}")
    gm.recompile()
    sentinel = info.sentinel

    def retrace() -> fx.GraphModule:
        return tracer.trace(sentinel, stack_traces=True)

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
        batch=info,
        method="make_fx(pre_dispatch, fake)",
        notes=notes,
        retrace=retrace,
    )


def _mix(
    names: list[str], leaves: list[Any], specs: tuple[TensorSpec, ...]
) -> tuple[TensorSpec | ConstantLeaf, ...]:
    """Pytree leaves as specs: tensors take the next spec, anything else is a baked constant."""
    it = iter(specs)
    return tuple(
        next(it) if isinstance(leaf, torch.Tensor) else ConstantLeaf(name, leaf)
        for name, leaf in zip(names, leaves, strict=True)
    )
