"""``torch.compile(model, backend="fxonnx")``: dynamo -> aot_autograd -> partitions in
onnxruntime.

aot_autograd hands over the forward graph (and, when something requires grad, the backward
graph) as functional ATen graphs whose weights are inputs. Each is split by the lowering
table: the supported regions become ``OnnxPartition``s (one onnxruntime session each, made
once per graph), the rest runs in torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import operator
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx

from .._errors import FxonnxError
from ..capture._recurrent import recurrent_as_whole_ops
from ..export.ops.backward import TRAINING_META
from ._onnx_module import make_partition
from ._options import Options
from ._partition import split
from ._torch_kernels import split_weight_grads

log = logging.getLogger(__name__)
aten = torch.ops.aten


@dataclass(frozen=True)
class GraphRecord:
    """What the backend did with one aot graph: its name (``graph3.forward``), the partitions
    run in onnxruntime, how many compute nodes went where, the ops left to torch, notes."""

    name: str
    partitions: tuple[str, ...]
    onnx_nodes: int
    torch_nodes: int
    unsupported: tuple[str, ...]
    notes: tuple[str, ...]
    ms: float


@dataclass
class Stats:
    """Process-wide counters of the backend (tests and the benchmark read them)."""

    sessions: int = 0
    graphs: list[GraphRecord] = field(default_factory=list)
    noted: set[str] = field(default_factory=set)
    compiled: int = 0  # graphs compiled so far: the next graph's number
    live: list[weakref.ref] = field(default_factory=list)  # the OnnxPartitions made

    def partitions(self) -> list[Any]:
        """The OnnxPartitions made since the last reset that are still in use."""
        return [p for p in (r() for r in self.live) if p is not None]


STATS = Stats()


def stats() -> Stats:
    """The backend's counters: ``sessions`` (onnxruntime sessions created), ``graphs`` (one
    ``GraphRecord`` per compiled aot graph)."""
    return STATS


def reset_stats() -> None:
    STATS.sessions = 0
    STATS.compiled = 0
    STATS.live.clear()
    STATS.graphs.clear()
    STATS.noted.clear()


def _decompositions() -> dict[Any, Callable]:
    """Decompositions applied while aot_autograd traces: the fused CPU attention kernel (no
    rule) into matmuls and softmax, where it is reached directly, and torch.nn's inference
    fast-path kernels (``_fastpath``) into the ops they compute."""
    from torch._decomp import get_decompositions

    from ._fastpath import DECOMPOSITIONS

    table = get_decompositions([aten._scaled_dot_product_flash_attention_for_cpu.default])
    return {**table, **DECOMPOSITIONS}


def _canonicalize(gm: fx.GraphModule) -> None:
    """``_unsafe_index`` (what nearest upsampling decomposes to) is ``index`` without the
    bounds check; the table lowers ``index``."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is aten._unsafe_index.Tensor:
            node.target = aten.index.Tensor
    gm.recompile()


def _mark_functional_batch_norm(gm: fx.GraphModule) -> None:
    """Train-mode batch norm in an aot graph is functional: its new running stats are graph
    outputs that aot_autograd writes back into the buffers, so it may be lowered."""
    for node in gm.graph.nodes:
        if node.target is aten._native_batch_norm_legit_functional.default:
            node.meta[TRAINING_META] = True


def compile_graph(gm: fx.GraphModule, kind: str, options: Options, boxed: bool = True) -> Callable:
    """Partition ``gm`` and put an onnxruntime session behind every supported region;
    ``boxed``: return aot_autograd's calling convention (a list in), else dynamo's."""
    import time

    t0 = time.perf_counter()
    name = f"graph{STATS.compiled}.{kind}"
    STATS.compiled += 1
    _canonicalize(gm)
    _mark_functional_batch_norm(gm)
    kept = split_weight_grads(gm) if options.torch_kernels and options.on_cpu() else frozenset()
    parts = split(gm, kept)
    notes: list[str] = []
    info: list[str] = [_kept_note(gm, kept)] if kept else []
    names = []
    in_torch = 0  # nodes of the partitions that a rule or onnxruntime left to torch
    if options.freeze and kind != "inference":  # training graphs' weights change every step
        options = dataclasses.replace(options, freeze=False)
    for sub_name in parts.partitions:
        built = make_partition(getattr(parts.gm, sub_name), f"{name}.{sub_name}", options)
        STATS.sessions += len(built.sessions)
        STATS.live += [weakref.ref(p) for p in built.sessions]
        names += [p.name for p in built.sessions]
        notes += built.notes
        info += built.info
        in_torch += built.in_torch
        delattr(parts.gm, sub_name)  # an OnnxPartition is a plain callable, not a child module
        setattr(parts.gm, sub_name, built.module)
    parts.gm.recompile()
    fresh = [op for op in parts.unsupported if op not in STATS.noted]
    if parts.unsupported:
        notes.insert(
            0,
            f"fxonnx: no ONNX lowering for {', '.join(parts.unsupported)}; these ops run in torch",
        )
    if fresh:
        STATS.noted.update(fresh)
        log.warning("fxonnx: no ONNX lowering for %s; these ops run in torch", ", ".join(fresh))
    for note in notes[1 if parts.unsupported else 0 :]:
        log.warning("fxonnx: %s", note)
    for note in info:
        log.info("fxonnx: %s", note)
    record = GraphRecord(
        name,
        tuple(names),
        parts.onnx_nodes - in_torch,
        parts.torch_nodes + in_torch,
        parts.unsupported,
        tuple(notes + info),
        (time.perf_counter() - t0) * 1e3,
    )
    STATS.graphs.append(record)
    log.info(
        "fxonnx: %s: %d partition(s) in onnxruntime (%d nodes), %d node(s) in torch",
        name,
        len(names),
        parts.onnx_nodes - in_torch,
        parts.torch_nodes + in_torch,
    )
    direct = _direct(parts.gm, boxed)
    if direct is not None:
        return direct
    if not boxed:
        return parts.gm.forward
    from torch._functorch.aot_autograd import make_boxed_func

    return make_boxed_func(parts.gm.forward)


def _kept_note(gm: fx.GraphModule, kept: frozenset[str]) -> str:
    counts = Counter(str(n.target) for n in gm.graph.nodes if n.name in kept)
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(counts.items()))
    return f"{ops} run in torch, whose CPU kernels are faster (options torch_kernels)"


def _direct(gm: fx.GraphModule, boxed: bool) -> Callable | None:
    """A call straight to the one OnnxPartition, when the split graph is only that: its
    placeholders (in any order) in, the partition's outputs out (inference graphs; a
    training forward also returns saved inputs). ``boxed``: aot_autograd's calling
    convention (a list of arguments in, a tuple out); else dynamo's (positional arguments).
    It skips the GraphModule's generated forward: the boxed call of mlp's partition at
    batch 1 took 13.9 µs through it against 11.1 for the partition; the whole compiled call
    33.3 µs against 33.8, lenet_cifar's 122 against 125 (interleaved)."""
    from ._onnx_module import OnnxPartition

    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    body = [n for n in nodes if n.op not in ("placeholder", "output")]
    if not body or body[0].op != "call_module" or body[0].kwargs:
        return None
    call, picks = body[0], body[1:]
    part = getattr(gm, call.target, None)
    if not isinstance(part, OnnxPartition) or any(a not in placeholders for a in call.args):
        return None
    outs = nodes[-1].args[0]
    if not isinstance(outs, (tuple, list)):
        return None
    if part._single:
        if picks or list(outs) != [call]:
            return None
    elif list(outs) != picks or any(
        n.target is not operator.getitem or n.args != (call, i) for i, n in enumerate(picks)
    ):
        return None
    order = [placeholders.index(a) for a in call.args]
    single = part._single
    if not boxed:
        if order == list(range(len(placeholders))):
            return (lambda *args: (part(*args),)) if single else part
        return lambda *args: _as_tuple(part(*[args[i] for i in order]), single)
    if order == list(range(len(placeholders))):

        def g(args: list) -> Any:
            return _as_tuple(part(*args), single)

    else:

        def g(args: list) -> Any:
            return _as_tuple(part(*[args[i] for i in order]), single)

    g._boxed_call = True  # type: ignore[attr-defined]
    return g


def _as_tuple(out: Any, single: bool) -> Any:
    return (out,) if single else out


def backend(
    gm: fx.GraphModule,
    example_inputs: Sequence[Any],
    options: dict[str, Any] | None = None,
    **unknown: Any,
) -> Callable:
    """The dynamo backend ``"fxonnx"``: ``torch.compile(m, backend="fxonnx", options={...})``
    (see ``Options`` for the option names)."""
    if unknown:
        raise FxonnxError(
            f"backend='fxonnx' does not take {sorted(unknown)}",
            hint='pass its settings as options={"provider": ..., "verify": ...}',
        )
    opts = Options.parse(options)
    if not _needs_grad(example_inputs):
        with _tracing_as_lowered():
            graph = _inference_graph(gm, example_inputs)
        if graph is not None:
            return compile_graph(graph, "inference", opts, boxed=False)
    from functools import partial

    from torch._dynamo.backends.common import aot_autograd

    aot = aot_autograd(
        fw_compiler=partial(_aot_compiler, kind="forward", options=opts),
        bw_compiler=partial(_aot_compiler, kind="backward", options=opts),
        inference_compiler=partial(_aot_compiler, kind="inference", options=opts),
        decompositions=_decompositions(),
    )
    with _tracing_as_lowered():  # aot_autograd traces forward and backward here
        return aot(gm, example_inputs)


@contextlib.contextmanager
def _tracing_as_lowered() -> Iterator[None]:
    """Attention traced as torch's math implementation becomes matmuls and softmax, and its
    backward their gradients (the fused CPU kernel's backward has no rule; its decomposed
    forward would not feed it); recurrent layers as whole ops without grad."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]), _whole_recurrent_ops():
        yield


def _needs_grad(example_inputs: Sequence[Any]) -> bool:
    """Whether aot_autograd would trace a backward: grad mode on (dynamo guards on it, so it
    holds at every call of this graph) and some input requiring grad."""
    return torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in example_inputs
    )


def _inference_graph(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
    """The functional ATen graph of an inference graph with dynamo's own calling convention
    (the same inputs, the same outputs), or None where that takes aot_autograd's run-time
    wrappers: an input mutated (train-mode batch norm's running stats under no_grad), an
    output aliasing an input, anything else its export refuses. Called without them, mlp at
    batch 1 took 32.3 µs per compiled call against 34.3 through aot_autograd (interleaved)."""
    from torch._functorch.aot_autograd import aot_export_joint_simple

    try:
        return aot_export_joint_simple(
            gm, tuple(example_inputs), trace_joint=False, decompositions=_decompositions()
        )
    except Exception as e:  # noqa: BLE001  (aot_autograd below handles what this refuses)
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]  # a bare assert has none
        log.debug("fxonnx: inference graph through aot_autograd: %s", why)
        return None


def _whole_recurrent_ops() -> Any:
    """Without grad, recurrent layers (traced by dynamo when its ``allow_rnn`` is set) become
    capture's whole ``fxonnx::`` ops, one ONNX RNN/GRU/LSTM each at any sequence length,
    instead of torch's decomposition: one step per time step, and the LSTM's CPU path
    ``mkldnn_rnn_layer``, which has no rule. Training graphs keep the decomposition: their
    backward needs the per-step ops."""
    return contextlib.nullcontext() if torch.is_grad_enabled() else recurrent_as_whole_ops()


def _aot_compiler(
    gm: fx.GraphModule, example_inputs: Sequence[Any], *, kind: str, options: Options
) -> Callable:
    return compile_graph(gm, kind, options)


def register() -> None:
    """Make ``backend="fxonnx"`` known to torch without the installed entry point (a source
    checkout on ``PYTHONPATH``); a no-op when the name is already known."""
    from torch._dynamo.backends.registry import lookup_backend, register_backend
    from torch._dynamo.exc import InvalidBackend

    try:
        lookup_backend("fxonnx")
    except InvalidBackend:
        register_backend(backend, name="fxonnx")
