"""The joint training graph: forward, loss, backward (and an optimizer step) as one ATen graph.

Gradients come from PyTorch's own derivative formulas: ``torch.func.grad_and_value`` over
``functional_call``, ``functionalize(remove="mutations")`` and ``make_fx`` on fake tensors with
the batch set to the capture sentinel (``fxonnx.capture._batch``), so the graph keeps a dynamic
batch. Afterwards:

- train-mode ``native_batch_norm`` (which mutates the running stats in place) becomes
  ``_native_batch_norm_legit_functional``, whose extra outputs are the new running stats
  (marked ``node.meta["fxonnx.training"]``: only there may it be lowered);
- ``copy_`` into an input (a mutated buffer) is dropped: the new value is the output;
- random ops (dropout in training mode) are refused: the graph would not match eager.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from .._errors import CaptureError, ExportError
from ..capture import BatchInfo, _batch
from ..capture._value_checks import without_value_checks
from ..export.ops.backward import TRAINING_META
from ._optim import Optimizer, step

aten = torch.ops.aten

_RANDOM = {
    aten.native_dropout.default,
    aten.bernoulli.default,
    aten.bernoulli.p,
    aten.bernoulli_.float,
    aten.bernoulli_.Tensor,
    aten.rand.default,
    aten.rand_like.default,
    aten.randn.default,
    aten.randn_like.default,
    aten.randint.low,
    aten.randperm.default,
}


@dataclass(frozen=True)
class Slot:
    """One graph input or output: its name, role and example value (fake, batch = sentinel)."""

    name: str
    role: str  # parameter, buffer, state, step, lr, input, target | loss, grad, new
    val: Any
    source: str | None = None  # for "new" outputs: the input it replaces next step


@dataclass
class Joint:
    gm: fx.GraphModule
    inputs: list[Slot]
    outputs: list[Slot]
    batch: BatchInfo


class _Spec:
    """What the traced function needs: the model, its named tensors and the roles of inputs."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Any,
        inputs: tuple[torch.Tensor, ...],
        targets: tuple[torch.Tensor, ...],
        opt: Optimizer | None,
        dims: tuple[int | None, ...],
    ) -> None:
        self.model, self.loss_fn, self.opt, self.dims = model, loss_fn, opt, dims
        self.params = {k: v for k, v in model.named_parameters() if v.requires_grad}
        frozen = {k: v for k, v in model.named_parameters() if not v.requires_grad}
        self.buffers = {**frozen, **dict(model.named_buffers())}
        self.inputs, self.targets = inputs, targets
        self.slots: list[Slot] = []
        for k, v in self.params.items():
            self.slots.append(Slot(k, "parameter", v))
        for k, v in self.buffers.items():
            self.slots.append(Slot(k, "buffer", v))
        if opt is not None:
            for slot in opt.slots:
                for k, v in self.params.items():
                    self.slots.append(Slot(f"{slot}.{k}", "state", torch.zeros_like(v)))
            if opt.counts_steps:
                self.slots.append(Slot("step", "step", torch.zeros((), dtype=torch.float32)))
            self.slots.append(Slot("lr", "lr", torch.zeros((), dtype=torch.float32)))
        for i, t in enumerate(inputs):
            self.slots.append(Slot("input" if len(inputs) == 1 else f"input.{i}", "input", t))
        for i, t in enumerate(targets):
            self.slots.append(Slot("target" if len(targets) == 1 else f"target.{i}", "target", t))
        self.out_slots: list[Slot] = []

    def fn(self, *flat: torch.Tensor) -> list[torch.Tensor]:
        by_role: dict[str, list[torch.Tensor]] = {}
        for slot, t in zip(self.slots, flat, strict=True):
            by_role.setdefault(slot.role, []).append(t)
        params = dict(zip(self.params, by_role.get("parameter", []), strict=True))
        buffers = dict(zip(self.buffers, by_role.get("buffer", []), strict=True))
        inputs, targets = by_role.get("input", []), by_role.get("target", [])

        # buffers are arguments, not closure: train-mode batch norm updates them in place
        def loss_of(p: dict[str, torch.Tensor], bufs: dict[str, torch.Tensor]) -> torch.Tensor:
            out = torch.func.functional_call(self.model, {**p, **bufs}, tuple(inputs))
            loss = self.loss_fn(out, *targets)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
                raise ExportError("loss_fn must return a scalar (0-d) tensor")
            return loss

        grads, loss = torch.func.grad_and_value(loss_of)(params, buffers)
        names = list(self.params)
        outs = [loss] + [grads[k] for k in names] + list(buffers.values())
        self.out_slots = [Slot("loss", "loss", None)]
        self.out_slots += [Slot(f"grad.{k}", "grad", None) for k in names]
        self.out_slots += [Slot(f"{k}.new", "new", None, k) for k in buffers]
        if self.opt is not None:
            state = by_role.get("state", [])
            n = len(names)
            per_slot = [state[i * n : (i + 1) * n] for i in range(len(self.opt.slots))]
            count = by_role["step"][0] if "step" in by_role else None
            lr = by_role["lr"][0]
            new_p, new_s, new_count = step(
                self.opt, [params[k] for k in names], [grads[k] for k in names], per_slot, count, lr
            )
            outs += new_p
            self.out_slots += [Slot(f"{k}.new", "new", None, k) for k in names]
            for slot, values in zip(self.opt.slots, new_s, strict=True):
                outs += values
                self.out_slots += [
                    Slot(f"{slot}.{k}.new", "new", None, f"{slot}.{k}") for k in names
                ]
            if new_count is not None:
                outs.append(new_count)
                self.out_slots.append(Slot("step.new", "new", None, "step"))
        return outs

    def fakes(self, mode: FakeTensorMode, batch: int | None) -> list[torch.Tensor]:
        out = []
        dims = iter(self.dims)
        for slot in self.slots:
            t = slot.val
            shape = list(t.shape)
            if slot.role in ("input", "target"):
                d = next(dims)
                if batch is not None and d is not None:
                    shape[d] = batch
            with mode:
                out.append(torch.empty(shape, dtype=t.dtype))
        return out


def _trace(spec: _Spec, batch: int | None) -> fx.GraphModule:
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fakes = spec.fakes(mode, batch)
    fn = torch.func.functionalize(spec.fn, remove="mutations")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        # the math attention is differentiated op by op (no fused backward kernels)
        with mode, sdpa_kernel(SDPBackend.MATH), without_value_checks():
            gm = make_fx(fn)(*fakes)
    except ExportError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise CaptureError(f"tracing the training step failed: {type(e).__name__}: {first}") from e
    _check_random(gm)
    _functional_batch_norm(gm)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _check_random(gm: fx.GraphModule) -> None:
    random = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in _RANDOM]
    if random:
        raise ExportError(
            f"the training step draws random numbers ({random[0].target}, e.g. dropout in "
            "training mode); its ONNX graph could not match eager PyTorch step for step",
            hint="put dropout layers in eval mode (module.eval()) or set p=0 before export",
        )


def _functional_batch_norm(gm: fx.GraphModule) -> None:
    """Mutating ops on graph inputs -> functional ops whose results feed the outputs."""
    graph = gm.graph
    current: dict[fx.Node, fx.Node] = {}  # input placeholder -> its latest value
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is aten.native_batch_norm.default:
            x, w, b, rm, rv, training, momentum, eps = node.args
            if rm is None or rv is None:
                continue
            rm, rv = current.get(rm, rm), current.get(rv, rv)
            if not training:
                node.target = aten._native_batch_norm_legit_no_training.default
                node.args = (x, w, b, rm, rv, momentum, eps)
                continue
            with graph.inserting_before(node):
                new = graph.call_function(
                    aten._native_batch_norm_legit_functional.default,
                    (x, w, b, rm, rv, True, momentum, eps),
                )
                items = [graph.call_function(operator.getitem, (new, i)) for i in (3, 4)]
            vals = tuple(node.meta["val"]) + (rm.meta["val"], rv.meta["val"])
            new.meta["val"] = vals
            new.meta[TRAINING_META] = True  # its new running stats are graph outputs
            for item, v in zip(items, vals[3:], strict=True):
                item.meta["val"] = v
            node.replace_all_uses_with(new)
            graph.erase_node(node)
            _remember(current, rm, items[0])
            _remember(current, rv, items[1])
        elif node.target is aten.copy_.default and node.args[0].op == "placeholder":
            _remember(current, node.args[0], node.args[1])
            graph.erase_node(node)
        elif node.target in (aten.copy_.default,) or (
            isinstance(node.target, torch._ops.OpOverload) and node.target._schema.is_mutable
        ):
            raise ExportError(f"training graph mutates {node.args[0]} in place ({node.target})")
    out = next(n for n in graph.nodes if n.op == "output")
    out.args = (tuple(_latest(current, v) for v in out.args[0]),)


def _remember(current: dict[fx.Node, fx.Node], value: fx.Node, new: fx.Node) -> None:
    """``value`` is an input or a value that stands for one: map the input to ``new``."""
    for ph, latest in list(current.items()):
        if latest is value:
            current[ph] = new
            return
    current[value] = new


def _latest(current: dict[fx.Node, fx.Node], v: Any) -> Any:
    return current.get(v, v) if isinstance(v, fx.Node) else v


def trace_joint(
    model: nn.Module,
    loss_fn: Any,
    inputs: tuple[torch.Tensor, ...],
    targets: tuple[torch.Tensor, ...],
    opt: Optimizer | None,
    *,
    dynamic: bool = True,
    batch_dims: Sequence[int | None] | None = None,
) -> Joint:
    """Trace the training step; the batch stays dynamic when the graph's batch arithmetic can
    be expressed from the runtime batch size. ``batch_dims``: the batch dim of each input (None:
    none); by default dim 0 of the first input, and for the other inputs and the targets their
    first dim of the same size."""
    dims = _batch_dims(inputs, targets, batch_dims)
    spec = _Spec(model, loss_fn, inputs, targets, opt, dims)
    tensors = inputs + targets
    example = next((t.shape[d] for t, d in zip(tensors, dims, strict=True) if d is not None), None)
    info = BatchInfo(False, example, dims, reason="dynamic=False")
    gm = None
    if dynamic and example is not None:
        s1 = _batch.SENTINEL
        gm = _trace(spec, s1)
        why = _batch.scan(gm, s1)
        if why is None:
            affines: Any = _batch.multiples(gm, s1)
        else:
            s2 = _batch.SECOND_SENTINEL
            affines = _batch.fit(gm, _trace(spec, s2), s1, s2)
        failed = affines if isinstance(affines, str) else _batch.symbolize(gm, affines, s1)
        if failed:
            info = BatchInfo(False, example, dims, reason=failed)
            gm = None
        else:
            gm.recompile()
            info = BatchInfo(True, example, dims, sentinel=s1)
    if gm is None:
        gm = _trace(spec, None)
    return _finish(spec, gm, info)


def _batch_dims(
    inputs: tuple[torch.Tensor, ...],
    targets: tuple[torch.Tensor, ...],
    given: Sequence[int | None] | None,
) -> tuple[int | None, ...]:
    if given is not None:
        if len(given) != len(inputs):
            raise ExportError(f"batch_dims has {len(given)} entries for {len(inputs)} input(s)")
        dims = [None if d is None else d % inputs[i].dim() for i, d in enumerate(given)]
    elif inputs and inputs[0].dim():
        dims = [0]
    else:
        dims = [None]
    first = next((t.shape[d] for t, d in zip(inputs, dims, strict=False) if d is not None), None)

    def same_size(t: torch.Tensor) -> int | None:
        return next((d for d, n in enumerate(t.shape) if n == first), None)

    if given is None:
        dims += [same_size(t) for t in inputs[1:]]
    dims += [same_size(t) if first is not None else None for t in targets]
    return tuple(dims)


def _finish(spec: _Spec, gm: fx.GraphModule, info: BatchInfo) -> Joint:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    inputs = [
        Slot(s.name, s.role, ph.meta["val"]) for s, ph in zip(spec.slots, placeholders, strict=True)
    ]
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    values = list(out_node.args[0])
    # buffers the step does not change (frozen parameters, eval-mode layers) are not outputs
    keep = [
        i
        for i, (slot, v) in enumerate(zip(spec.out_slots, values, strict=True))
        if not (slot.role == "new" and isinstance(v, fx.Node) and v.op == "placeholder")
    ]
    out_node.args = ([values[i] for i in keep],)
    gm.recompile()
    outputs = [
        Slot(
            spec.out_slots[i].name,
            spec.out_slots[i].role,
            values[i].meta["val"],
            spec.out_slots[i].source,
        )
        for i in keep
    ]
    return Joint(gm, inputs, outputs, info)
