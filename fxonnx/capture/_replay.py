"""Repeated layers traced once: a call of a module that matches an earlier call copies that
call's nodes instead of running the module's Python again.

Why: a trace costs Python per op, and with symbolic dims about 10 µs per SymInt operation
in torch's ``SymNode`` machinery; ``nn.MultiheadAttention`` alone does hundreds of them per
call. A transformer repeats the same block N times with the same input shapes, so N-1 of those
traces redo identical work. ``replayed_layers`` records the nodes each candidate module call
appends to the graph; a later call of a module with the same structure on inputs with the same
metadata gets a copy of those nodes, rewired to its own inputs and parameters.

A call is replayed only when that is the same graph by construction:
- the two modules have the same class, ``forward``, parameter and buffer metadata, training
  flag, child structure and plain attributes (ints, strings, dtypes, functions by identity...;
  any other attribute, a hook, or a plain tensor attribute makes a module ineligible), and the
  first call left its attributes unchanged;
- the inputs have the same pytree structure, constants, and tensor metadata (symbolic sizes
  compared as expressions, never with a guard), and alias each other the same way;
- the recorded nodes read nothing from outside but those inputs, the module's own parameters
  and buffers, symbolic sizes and constants, write only tensors they created, create no
  unbacked symbols, and every output tensor is one of them.
Anything else runs the module normally. ``tests/capture/test_replay.py`` checks that graphs
traced with and without replay are the same.

The hook is make_fx's ``PythonKeyTracer.call_module``, replaced once at import by a function
that calls the original unless ``replayed_layers`` is active in the current context.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import types
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import fx, nn
from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily
from torch.fx.experimental.proxy_tensor import (
    PythonKeyTracer,
    disable_proxy_modes_tracing,
    get_proxy_slot,
    track_tensor_tree,
)

from ._fake_weights import fake_like
from ._functionalize import is_view

_ACTIVE: contextvars.ContextVar[_Memo | None] = contextvars.ContextVar(
    "fxonnx_replay", default=None
)
_SIMPLE = (int, float, bool, str, type(None), torch.dtype, torch.device, enum.Enum)
_BY_IDENTITY = (types.FunctionType, types.BuiltinFunctionType, type)
_MISSING: Any = object()
_SIZE_READS = {
    torch.ops.aten.sym_size.int,
    torch.ops.aten.sym_stride.int,
    torch.ops.aten.sym_numel.default,
    torch.ops.aten.sym_storage_offset.default,
}


@contextlib.contextmanager
def replayed_layers(model: nn.Module) -> Iterator[Counter[str]]:
    """While active, make_fx traces of ``model`` replay repeated module calls. Yields counts
    (``replayed``, ``recorded``) for logs and tests."""
    memo = _Memo(model)
    token = _ACTIVE.set(memo)
    try:
        yield memo.stats
    finally:
        _ACTIVE.reset(token)


_traced_call_module = PythonKeyTracer.call_module


def _call_module(
    tracer: PythonKeyTracer, m: nn.Module, forward: Any, args: tuple, kwargs: dict
) -> Any:
    memo = _ACTIVE.get()
    if memo is None or id(m) not in memo.repeated:
        return _traced_call_module(tracer, m, forward, args, kwargs)
    return memo.call(tracer, m, forward, args, kwargs)


PythonKeyTracer.call_module = _call_module  # type: ignore[method-assign]


class _Memo:
    """The recorded calls of one trace, by (module signature, input signature)."""

    def __init__(self, model: nn.Module) -> None:
        self.signatures: dict[int, Any] = {}
        self.repeated: set[int] = set()
        self.records: dict[Any, _Record | None] = {}
        self.stats: Counter[str] = Counter()
        containers = [m for m in model.modules() if m._modules]
        kinds = Counter(type(m) for m in containers)
        if _global_hooks() or all(n < 2 for n in kinds.values()):
            return  # no two layers of one class: nothing can repeat (most small models)
        for m in model.modules():
            _module_signature(m, self.signatures)
        layers = [m for m in containers if self.signatures[id(m)] is not None]
        counts = Counter(self.signatures[id(m)] for m in layers)
        self.repeated = {id(m) for m in layers if counts[self.signatures[id(m)]] > 1}

    def call(
        self, tracer: PythonKeyTracer, m: nn.Module, forward: Any, args: tuple, kwargs: dict
    ) -> Any:
        leaves, spec = pytree.tree_flatten((args, kwargs))
        key = _call_key(self.signatures[id(m)], leaves, spec)
        record = self.records.get(key, _MISSING) if key is not None else None
        if isinstance(record, _Record):
            out = record.replay(tracer, m, leaves)
            if out is not _MISSING:
                self.stats["replayed"] += 1
                return out
        if record is not _MISSING:  # not replayable, or its inputs are not traced values
            return forward(*args, **kwargs)
        inputs, state = _input_nodes(tracer, leaves), _state_nodes(tracer, m)
        before = _attribute_snapshot(m)
        last = tracer.graph._root.prev
        out = forward(*args, **kwargs)
        made = None
        if inputs is not None and state is not None and _attribute_snapshot(m) == before:
            made = _Record.make(tracer, last, inputs, state, out)
        self.records[key] = made
        self.stats["recorded" if made is not None else "not_replayable"] += 1
        return out


class _Record:
    """The nodes one module call appended, and how they connect to the call's inputs."""

    def __init__(
        self,
        nodes: list[fx.Node],
        inputs: list[fx.Node | None],
        state: dict[str, fx.Node],
        outputs: list[tuple[str, Any]],
        out_spec: Any,
    ) -> None:
        self.nodes, self.inputs, self.state = nodes, inputs, state
        self.outputs, self.out_spec = outputs, out_spec

    @staticmethod
    def make(
        tracer: PythonKeyTracer,
        last: fx.Node,
        inputs: list[fx.Node | None],
        state: dict[str, fx.Node],
        out: Any,
    ) -> _Record | None:
        nodes = []
        node = last.next
        while node is not tracer.graph._root:
            nodes.append(node)
            node = node.next
        inside = set(nodes)
        outside = {n for n in inputs if n is not None} | set(state.values())
        if not nodes or not all(_self_contained(n, inside, outside) for n in nodes):
            return None
        out_leaves, out_spec = pytree.tree_flatten(out)
        read = {
            _storage(n.meta["val"]) for n in outside if isinstance(n.meta.get("val"), FakeTensor)
        }
        outputs: list[tuple[str, Any]] = []
        for leaf in out_leaves:
            if isinstance(leaf, torch.Tensor):
                slot = get_proxy_slot(leaf, tracer, None)
                fresh = (
                    isinstance(leaf, FakeTensor)
                    and slot is not None
                    and slot.constant is None
                    and slot.proxy.node in inside
                    and _storage(leaf) not in read
                    and leaf.storage_offset() == 0
                    and not leaf.requires_grad
                )
                if not fresh:
                    return None
                outputs.append(("tensor", (slot.proxy.node, leaf)))
            else:
                if _frozen(leaf) is _MISSING:
                    return None
                outputs.append(("constant", leaf))
        return _Record(nodes, inputs, state, outputs, out_spec)

    def replay(self, tracer: PythonKeyTracer, m: nn.Module, leaves: list) -> Any:
        inputs, state = _input_nodes(tracer, leaves), _state_nodes(tracer, m)
        if inputs is None or state is None or state.keys() != self.state.keys():
            return _MISSING
        env: dict[fx.Node, fx.Node] = {}
        for old, new in zip(self.inputs, inputs, strict=True):
            if old is not None and new is not None:
                env[old] = new
        for name, old in self.state.items():
            env[old] = state[name]
        graph = tracer.graph
        for node in self.nodes:
            if node.target in _SIZE_READS and node.args[0] not in env:
                env[node] = node  # a size of a tensor from outside the call: the same value
            else:
                env[node] = graph.node_copy(node, lambda n: env.get(n, n))
        made: dict[fx.Node, torch.Tensor] = {}
        outs = []
        for kind, payload in self.outputs:
            if kind == "constant":
                outs.append(payload)
                continue
            node, like = payload
            new = env[node]
            if new not in made:
                made[new] = _fresh_like(like)
                track_tensor_tree(made[new], fx.Proxy(new, tracer), constant=None, tracer=tracer)
            outs.append(made[new])
        return pytree.tree_unflatten(outs, self.out_spec)


def _self_contained(node: fx.Node, inside: set[fx.Node], outside: set[fx.Node]) -> bool:
    """``node`` reads only recorded nodes, the call's inputs and state, symbolic sizes and
    constants; writes only tensors the call made; binds no new (unbacked) symbols."""
    if node.op not in ("call_function", "get_attr") or "unbacked_bindings" in node.meta:
        return False
    for read in node.all_input_nodes:
        if read in inside or read in outside or read.op == "get_attr" or node.target in _SIZE_READS:
            continue
        if not isinstance(read.meta.get("val"), (torch.SymInt, torch.SymFloat, torch.SymBool)):
            return False
    target = node.target
    if isinstance(target, torch._ops.OpOverload) and target._schema.is_mutable:
        for written in _written_args(node, target):
            base = written
            while is_view(base):
                base = base.args[0]
            if base not in inside:
                return False
    return True


def _written_args(node: fx.Node, op: torch._ops.OpOverload) -> list[fx.Node]:
    out = []
    for i, arg in enumerate(op._schema.arguments):
        if arg.alias_info is None or not arg.alias_info.is_write:
            continue
        value = node.args[i] if i < len(node.args) else node.kwargs.get(arg.name)
        if isinstance(value, fx.Node):
            out.append(value)
        elif isinstance(value, (list, tuple)):
            out.extend(v for v in value if isinstance(v, fx.Node))
    return out


def _input_nodes(tracer: PythonKeyTracer, leaves: list) -> list[fx.Node | None] | None:
    out: list[fx.Node | None] = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            slot = get_proxy_slot(leaf, tracer, None)
            if slot is None:
                return None
            out.append(slot.proxy.node)
        else:
            out.append(None)
    return out


def _state_nodes(tracer: PythonKeyTracer, m: nn.Module) -> dict[str, fx.Node] | None:
    out = {}
    tensors = [
        *m.named_parameters(remove_duplicate=False),
        *m.named_buffers(remove_duplicate=False),
    ]
    for name, t in tensors:
        slot = get_proxy_slot(t, tracer, None)
        if slot is None:
            return None
        out[name] = slot.proxy.node
    return out


def _fresh_like(t: FakeTensor) -> FakeTensor:
    """A new fake tensor with ``t``'s metadata, made without tracing anything."""
    with unset_fake_temporarily(), disable_proxy_modes_tracing():
        return fake_like(t.fake_mode, t)


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def _global_hooks() -> bool:
    module = torch.nn.modules.module
    return bool(
        module._global_forward_hooks
        or module._global_forward_pre_hooks
        or module._global_backward_hooks
        or module._global_backward_pre_hooks
    )


_BASE_ATTRIBUTES = frozenset(nn.Module().__dict__)


def _module_signature(m: nn.Module, cache: dict[int, Any]) -> Any:
    """What a module's trace depends on besides its inputs, or None when that can't be named."""
    if id(m) in cache:
        return cache[id(m)]
    cache[id(m)] = None
    children = tuple(
        (name, _module_signature(c, cache)) for name, c in m._modules.items() if c is not None
    )
    attrs = _plain_attributes(m)
    hooked = (
        m._forward_hooks
        or m._forward_pre_hooks
        or m._backward_hooks
        or m._backward_pre_hooks
        or "forward" in m.__dict__
    )
    if attrs is None or hooked or any(sig is None for _, sig in children):
        return None
    cache[id(m)] = (
        type(m),
        m.training,
        _tensors_signature(m._parameters),
        _tensors_signature(m._buffers),
        attrs,
        children,
    )
    return cache[id(m)]


def _tensors_signature(tensors: dict[str, Any]) -> tuple:
    return tuple(
        (name, None if t is None else (tuple(t.shape), t.dtype, t.device, t.requires_grad))
        for name, t in tensors.items()
    )


def _plain_attributes(m: nn.Module) -> tuple | None:
    """The module's own attributes that its forward may read, or None if one can't be
    compared (a plain tensor, an arbitrary object)."""
    out = []
    for name, value in m.__dict__.items():
        if name in _BASE_ATTRIBUTES:
            continue
        frozen = _frozen(value)
        if frozen is _MISSING:
            return None
        out.append((name, frozen))
    return tuple(out)


def _attribute_snapshot(m: nn.Module) -> tuple:
    return tuple(_plain_attributes(sub) for sub in m.modules())


def _frozen(value: Any) -> Any:
    if isinstance(value, _SIMPLE):
        return (type(value), value)
    if isinstance(value, _BY_IDENTITY):
        return ("id", id(value))
    if isinstance(value, (tuple, list)):
        items = tuple(_frozen(v) for v in value)
        return _MISSING if any(i is _MISSING for i in items) else (type(value), items)
    return _MISSING


def _tensor_signature(t: torch.Tensor) -> Any:
    def expr(s: Any) -> Any:
        return s.node.expr if isinstance(s, torch.SymInt) else s

    return (
        tuple(expr(s) for s in t.shape),
        tuple(expr(s) for s in t.stride()),
        expr(t.storage_offset()),
        t.dtype,
        t.device,
        t.requires_grad,
    )


def _call_key(module_sig: Any, leaves: list, spec: Any) -> Any:
    """What the call's trace depends on: the module's signature, the inputs' structure,
    constants and tensor metadata, and which inputs share storage."""
    items = []
    storages: dict[int, int] = {}
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            if not isinstance(leaf, FakeTensor):
                return None
            shared = storages.setdefault(_storage(leaf), len(storages))
            items.append(("tensor", shared, _tensor_signature(leaf)))
        else:
            frozen = _frozen(leaf)
            if frozen is _MISSING:
                return None
            items.append(frozen)
    return (module_sig, spec, tuple(items))
