"""Small graph helpers shared by the passes: matching calls, state placeholders, new constants,
and ``node.meta["val"]`` for nodes a pass creates (evaluated on the captured FakeTensors)."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import fx
from torch._guards import detect_fake_mode
from torch._subclasses.fake_tensor import FakeTensor

from ..capture import Captured, TensorSpec, fake_weights, same_shape, size_hint, static_dim

aten = torch.ops.aten

Target = Any


def calls(gm: fx.GraphModule, *targets: Target) -> Iterator[fx.Node]:
    """call_function nodes with one of ``targets`` (a snapshot: safe to rewrite while iterating)."""
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in targets and node.graph is gm.graph:
            yield node


def is_call(node: Any, *targets: Target) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target in targets


def only_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def val(node: Any) -> Any:
    return node.meta.get("val") if isinstance(node, fx.Node) else node


def scalar_operand(node: fx.Node) -> tuple[fx.Node, float] | None:
    """For ``mul``/``add``/``div``/``sub`` with one tensor and one Python number: (tensor, number).
    ``add``/``sub`` with ``alpha != 1`` and a number on the left of ``div``/``sub`` do not count."""
    if node.op != "call_function" or len(node.args) != 2:
        return None
    if node.kwargs.get("alpha", 1) != 1:
        return None
    a, b = node.args
    if isinstance(a, fx.Node) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return a, float(b)
    commutes = node.target in (aten.mul.Tensor, aten.add.Tensor, aten.mul.Scalar, aten.add.Scalar)
    if commutes and isinstance(b, fx.Node) and isinstance(a, (int, float)):
        return b, float(a)
    return None


def static_shape(node: Any) -> tuple[int | None, ...]:
    """The traced shape with None for the dims that vary at run time (as ``ctx.static_shape``
    in the lowering rules)."""
    return tuple(static_dim(d) for d in val(node).shape)


def slice_args(node: fx.Node) -> tuple[Any, Any, Any, Any]:
    """``slice.Tensor``'s (dim, start, end, step) with its defaults filled in."""
    dim, start, end, step = list(node.args[1:]) + [0, None, None, 1][len(node.args) - 1 :]
    return dim, start, end, step


def same_meta(a: Any, b: Any) -> bool:
    """Same shape and dtype according to the traced FakeTensors."""
    va, vb = val(a), val(b)
    if not isinstance(va, torch.Tensor) or not isinstance(vb, torch.Tensor):
        return False
    return same_shape(va.shape, vb.shape) and va.dtype == vb.dtype


def fake_mode(gm: fx.GraphModule) -> Any:
    """The FakeTensorMode of the captured metadata (cached in ``gm.meta``)."""
    if "fxonnx.fake_mode" not in gm.meta:
        vals = [n.meta.get("val") for n in gm.graph.nodes if n.op == "placeholder"]
        gm.meta["fxonnx.fake_mode"] = detect_fake_mode(
            [v for v in vals if isinstance(v, torch.Tensor)]
        )
    return gm.meta["fxonnx.fake_mode"]


def infer_meta(node: fx.Node) -> None:
    """Fill ``node.meta["val"]`` by running its op on its inputs' FakeTensors."""

    def fake(a: Any) -> Any:
        return a.meta["val"] if isinstance(a, fx.Node) else a

    args = fx.node.map_arg(node.args, fake)
    kwargs = fx.node.map_arg(node.kwargs, fake)
    if node.target is operator.getitem:
        node.meta["val"] = args[0][args[1]]
        return
    mode = fake_mode(node.graph.owning_module)
    if mode is None:
        node.meta["val"] = node.target(*args, **kwargs)
        return
    static = _on_meta(mode, node.target, args, kwargs)
    if static is not None:
        node.meta["val"] = static
        return
    with mode:
        node.meta["val"] = node.target(*args, **kwargs)


def _on_meta(mode: Any, target: Target, args: Any, kwargs: Any) -> Any:
    """The op's FakeTensor result computed on meta tensors, when every tensor input has static
    sizes (weights, as in fold_bn's arithmetic): 3x cheaper than dispatching through a symbolic
    FakeTensorMode, which dominated fold_bn. None (use the mode) for symbolic sizes, ops that
    do not return one tensor, or anything the meta kernels refuse."""
    leaves = pytree.tree_leaves((args, kwargs))
    fakes = [a for a in leaves if isinstance(a, torch.Tensor)]
    if not fakes or not all(isinstance(a, FakeTensor) and _static(a) for a in fakes):
        return None
    device = fakes[0].fake_device
    if any(a.fake_device != device for a in fakes):
        return None

    def meta(a: Any) -> Any:
        if isinstance(a, FakeTensor):
            return torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device="meta")
        return a

    try:
        margs, mkwargs = pytree.tree_map(meta, (args, kwargs))
        out = target(*margs, **mkwargs)
        if not isinstance(out, torch.Tensor) or out.device.type != "meta":
            return None
        return FakeTensor(mode, out, device)
    except Exception:  # noqa: BLE001 - no meta kernel, or a refusal: the mode decides
        return None


def _static(t: torch.Tensor) -> bool:
    return all(type(d) is int for d in t.shape) and all(type(d) is int for d in t.stride())


def call(
    graph: fx.Graph,
    target: Target,
    args: tuple,
    kwargs: dict | None = None,
    *,
    like: fx.Node | None = None,
) -> fx.Node:
    """Create a call_function node (at the graph's insert point) with its meta["val"]: that of
    ``like`` when the pass knows the new node computes a value of the same metadata (the conv
    that a batch norm folds into, with new weights), else evaluated on the inputs' FakeTensors."""
    node = graph.call_function(target, args, kwargs or {})
    if like is not None:
        node.meta["val"] = like.meta["val"]
    else:
        infer_meta(node)
    return node


def replace(node: fx.Node, new: fx.Node) -> None:
    """Reroute every user of ``node`` to ``new`` and erase ``node`` when nothing uses it."""
    node.replace_all_uses_with(new)
    if not node.users:
        node.graph.erase_node(node)


def erase_dead(node: fx.Node) -> None:
    """Erase ``node`` if unused, then every producer that only it used (never placeholders)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n.op != "call_function" or n.users or n._erased:
            continue
        inputs = n.all_input_nodes
        n.graph.erase_node(n)
        stack.extend(inputs)


# -- state placeholders ------------------------------------------------------------------------


def placeholder_specs(captured: Captured) -> dict[fx.Node, TensorSpec]:
    # the graph's op index, not a walk over every node: passes call this per node
    nodes = captured.gm.graph.find_nodes(op="placeholder")
    return dict(zip(nodes, captured.inputs, strict=True))


def state_of(
    captured: Captured, node: Any, specs: dict[fx.Node, TensorSpec] | None = None
) -> torch.Tensor | None:
    """The value of a parameter/buffer/constant placeholder or get_attr tensor, else None.
    ``specs``: ``placeholder_specs(captured)``, for a caller that asks about every node."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "get_attr":
        value = getattr(captured.gm, node.target, None)
        return value if isinstance(value, torch.Tensor) else None
    if node.op != "placeholder":
        return None
    spec = (specs if specs is not None else placeholder_specs(captured)).get(node)
    if spec is None or spec.kind == "input":
        return None
    return captured.state[spec.name]


def add_constant(captured: Captured, tensor: torch.Tensor, hint: str) -> fx.Node:
    """A new ``constant`` placeholder (after the state inputs, before the user inputs) holding
    ``tensor`` in ``captured.state``; the exporter makes it an initializer."""
    graph = captured.gm.graph
    used = graph._graph_namespace._used_names  # every name the graph ever gave a node
    name, i = hint, 0
    while name in used or name in captured.state or any(s.name == name for s in captured.inputs):
        i += 1
        name = f"{hint}_{i}"
    placeholders = graph.find_nodes(op="placeholder")
    n_state = sum(1 for s in captured.inputs if s.kind != "input")
    if n_state < len(placeholders):
        where = graph.inserting_before(placeholders[n_state])  # before the first user input
    elif placeholders:
        where = graph.inserting_after(placeholders[-1])
    else:
        where = graph.inserting_before(next(iter(graph.nodes), None))
    with where:
        node = graph.placeholder(name)
    assert node.name == name, (node.name, name)
    tensor = tensor.detach()
    mode = fake_mode(captured.gm)
    node.meta["val"] = fake_weights(mode, [tensor])[0] if mode else tensor
    spec = TensorSpec(name, "constant", tuple(tensor.shape), tensor.dtype)
    inputs = list(captured.inputs)
    inputs.insert(n_state, spec)
    captured.inputs = tuple(inputs)
    captured.state[name] = tensor
    return node


def remove_unused_state(captured: Captured) -> list[str]:
    """Drop parameter/buffer/constant placeholders that nothing uses (and their state)."""
    removed = []
    specs = placeholder_specs(captured)
    keep = []
    for node, spec in specs.items():
        if spec.kind != "input" and not node.users:
            captured.gm.graph.erase_node(node)
            captured.state.pop(spec.name, None)
            removed.append(spec.name)
        else:
            keep.append(spec)
    if removed:
        captured.inputs = tuple(keep)
    return removed


def numel(node: fx.Node) -> int:
    v = val(node)
    return size_hint(v.numel()) if isinstance(v, torch.Tensor) else 0


_SQUEEZES = (
    torch.ops.aten.squeeze.dim,
    torch.ops.aten.squeeze.dims,
    torch.ops.aten.squeeze.default,
)


def squeezes_dynamic_dim(node: fx.Node) -> bool:
    """A squeeze one of whose candidate dims has a dynamic size: whether eager drops it depends
    on the runtime size, so passes leave it for lowering (which refuses it)."""
    if not is_call(node, *_SQUEEZES):
        return False
    v = val(node.args[0])
    if v is None:
        return False
    rank = v.dim()
    if rank == 0:
        return False
    if node.target is torch.ops.aten.squeeze.default:
        dims = list(range(rank))
    else:
        arg = node.args[1]
        dims = [d % rank for d in (arg if isinstance(arg, (list, tuple)) else [arg])]
    return any(static_dim(v.shape[d]) is None for d in dims)
