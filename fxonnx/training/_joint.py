"""The joint training graph: forward, loss, backward (and an optimizer step) as one ATen graph.

Gradients come from PyTorch's own derivative formulas: ``torch.autograd.grad`` over
``functional_call``, traced by ``make_fx`` on fake tensors whose dynamic dims are symbolic (the
capture's ``SymbolicInputs``), so the graph keeps them dynamic. (functorch's ``grad`` transform
would read symbolic sizes as ints inside matmul and fix them.) Afterwards:

- train-mode ``native_batch_norm`` (which mutates the running stats in place) becomes
  ``_native_batch_norm_legit_functional``, whose extra outputs are the new running stats
  (marked ``node.meta["fxonnx.training"]``: only there may it be lowered);
- in-place ops on inputs (``num_batches_tracked += 1``) become their functional twins whose
  results are the outputs, and in-place ops on intermediates their functional twins;
- random ops (dropout in training mode) are refused: the graph would not match eager.
"""

from __future__ import annotations

import contextlib
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from .._errors import CaptureError, ExportError
from ..capture import Shapes
from ..capture._dims import effective, from_batch_dims, mode, resolve
from ..capture._functionalize import _functional_twin, functionalize_simple
from ..capture._recurrent import recurrent_decomposed
from ..capture._symbolic import SymbolicInputs
from ..capture._transformer import eager_transformer_semantics
from ..capture._value_checks import without_value_checks
from ..export.ops.backward import TRAINING_META
from ._optim import Optimizer, step
from ._upsample import restore_backward_ops, symbolic_upsampling

aten = torch.ops.aten
log = logging.getLogger(__name__)

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
    """One graph input or output: its name, role and example value (fake, dims symbolic)."""

    name: str
    role: str  # parameter, buffer, state, step, lr, input, target | loss, grad, new
    val: Any
    source: str | None = None  # for "new" outputs: the input it replaces next step


@dataclass
class Joint:
    gm: fx.GraphModule
    inputs: list[Slot]
    outputs: list[Slot]
    shapes: Shapes


class _Spec:
    """What the traced function needs: the model, its named tensors and the roles of inputs."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Any,
        inputs: tuple[torch.Tensor, ...],
        targets: tuple[torch.Tensor, ...],
        opt: Optimizer | None,
    ) -> None:
        self.model, self.loss_fn, self.opt = model, loss_fn, opt
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

        params = {k: t.detach().requires_grad_(True) for k, t in params.items()}
        with torch.enable_grad(), recurrent_decomposed():
            loss = loss_of(params, buffers)
            found = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        grads = {
            k: torch.zeros_like(p) if g is None else g
            for (k, p), g in zip(params.items(), found, strict=True)
        }
        params = {k: p.detach() for k, p in params.items()}
        loss = loss.detach()
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

    @property
    def data_names(self) -> list[str]:
        return [s.name for s in self.slots if s.role in ("input", "target")]

    def fakes(self, symbolic: SymbolicInputs | None) -> tuple[FakeTensorMode, list[torch.Tensor]]:
        mode = symbolic.mode if symbolic is not None else FakeTensorMode(allow_non_fake_inputs=True)
        dims = iter(symbolic.per_input if symbolic is not None else [])
        out = []
        for slot in self.slots:
            t = slot.val
            if symbolic is not None and slot.role in ("input", "target"):
                out.append(symbolic.fake(t, next(dims)))
                continue
            with mode:
                out.append(torch.empty(t.shape, dtype=t.dtype))
        return mode, out


def _trace(spec: _Spec, symbolic: SymbolicInputs | None) -> fx.GraphModule:
    mode, fakes = spec.fakes(symbolic)
    fn = spec.fn
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        # the math attention is differentiated op by op (no fused backward kernels); without
        # mkldnn, CPU LSTM/GRU training steps are cells per time step (mkldnn_rnn_layer has no
        # ONNX form)
        config = symbolic.tracing() if symbolic is not None else contextlib.nullcontext()
        with (
            config,
            mode,
            sdpa_kernel(SDPBackend.MATH),
            without_value_checks(),
            torch.backends.mkldnn.flags(enabled=False),
            eager_transformer_semantics(),
            symbolic_upsampling(),
        ):
            gm = make_fx(fn)(*fakes)
    except ExportError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise CaptureError(f"tracing the training step failed: {type(e).__name__}: {first}") from e
    _check_random(gm)
    restore_backward_ops(gm)
    _functional_batch_norm(gm)
    reason = functionalize_simple(gm)
    if reason is not None:
        raise ExportError(f"the training step cannot be made functional: {reason}")
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
        elif _mutates_input(node):
            twin = _functional_twin(node.target)
            if twin is None:
                raise ExportError(f"training graph mutates {node.args[0]} in place ({node.target})")
            source = node.args[0]
            latest = current.get(source, source)
            with graph.inserting_before(node):
                new = graph.call_function(twin, (latest, *node.args[1:]), node.kwargs)
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
            graph.erase_node(node)
            _remember(current, latest, new)
    out = next(n for n in graph.nodes if n.op == "output")
    out.args = (tuple(_latest(current, v) for v in out.args[0]),)


def _mutates_input(node: fx.Node) -> bool:
    """An in-place op (``add_``) whose mutated first argument is a graph input."""
    target = node.target
    if not isinstance(target, torch._ops.OpOverload) or not target._schema.is_mutable:
        return False
    first = node.args[0] if node.args else None
    return isinstance(first, fx.Node) and first.op == "placeholder"


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
    dynamic_dims: Any = "auto",
    batch_dims: Sequence[int | None] | None = None,
    dynamic: bool = True,
) -> Joint:
    """Trace the training step with ``dynamic_dims`` over the inputs and targets (names
    ``input``/``input.<i>``, ``target``/``target.<i>``; see ``fxonnx.capture``). "auto": dim 0
    of the first input is the batch, and the other inputs and the targets carry it on their
    first dim of that size. ``batch_dims`` (one dim per input) is the older shorthand."""
    spec = _Spec(model, loss_fn, inputs, targets, opt)
    tensors = list(inputs + targets)
    names = spec.data_names
    wanted = effective(dynamic_dims, None, dynamic, names)
    if batch_dims is not None:
        if dynamic_dims != "auto":
            raise ExportError("batch_dims and dynamic_dims were both given")
        if len(batch_dims) != len(inputs):
            raise ExportError(
                f"batch_dims has {len(batch_dims)} entries for {len(inputs)} input(s)"
            )
        wanted = _with_targets(from_batch_dims(batch_dims, names[: len(inputs)]), tensors, names)
    per_input = resolve(tensors, names, wanted)
    requested = mode(wanted)
    if not any(per_input):
        return _finish(spec, _trace(spec, None), Shapes(requested=requested))
    symbolic = SymbolicInputs.create(tensors, names, per_input)
    gm = _trace(spec, symbolic)
    user = [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"]
    user = [v for v, s in zip(user, spec.slots, strict=True) if s.role in ("input", "target")]
    shapes, fixed = symbolic.analyze(requested, user)
    if fixed and requested == "explicit":
        raise CaptureError(f"{fixed[0].describe()}, but dynamic_dims asks for it to vary")
    for f in fixed:
        log.warning("fxonnx: training graph: %s; that dim is static", f.describe())
    return _finish(spec, gm, shapes)


def _with_targets(spec: dict, tensors: list[torch.Tensor], names: list[str]) -> dict:
    """Targets carry the batch on their first dim of the inputs' batch size."""
    sizes = {int(tensors[k].shape[d]) for k, dims in spec.items() for d in dims}
    if len(sizes) != 1:
        return spec
    (batch,) = sizes
    for i, name in enumerate(names):
        if name.startswith("target") and i not in spec:
            d = next((d for d, n in enumerate(tensors[i].shape) if n == batch), None)
            if d is not None:
                spec[i] = {d: "batch"}
    return spec


def _finish(spec: _Spec, gm: fx.GraphModule, shapes: Shapes) -> Joint:
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
    return Joint(gm, inputs, outputs, shapes)
