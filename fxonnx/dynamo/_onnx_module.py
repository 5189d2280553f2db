"""One partition of a dynamo graph lowered to ONNX and run in an onnxruntime session.

The partition's placeholders carry fake tensors (dims: SymInts of dynamo's ``ShapeEnv``) and
SymInt sizes; they become a ``Captured`` graph whose tensor inputs keep their symbols as
``dim_param``s (``s0``) and whose SymInt inputs are int64 ``[1]`` tensors, the form SymInt
values take in lowering. The session is created once, at compile time: a new size inside
dynamo's guards runs the same session.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
import sympy
import torch
import torch.utils._pytree as pytree
from torch import fx

from .._errors import ExportError, RuntimeSessionError
from ..capture import Captured, Shapes, TensorSpec
from ..capture._signature import sanitize
from ..export import lower
from ..runtime import Session
from ..runtime._races import racy_on_threads
from ..verify import Report
from ..verify._compare import compare
from . import _nchwc as nchwc
from ._options import Options
from ._partition import op_name

log = logging.getLogger(__name__)

_TENSOR, _INT = 0, 1


def _symbols_of(vals: list[Any]) -> tuple[Any, dict[sympy.Symbol, sympy.Symbol]]:
    """The ShapeEnv of the traced values and a printed name (its own: ``s0``) per symbol."""
    env = None
    printed: dict[sympy.Symbol, sympy.Symbol] = {}

    def visit(size: Any) -> None:
        nonlocal env
        if isinstance(size, torch.SymInt):
            node = size.node
            env = env or node.shape_env
            for sym in node.expr.free_symbols:
                printed.setdefault(sym, sympy.Symbol(str(sym), integer=True, positive=True))

    for v in vals:
        if isinstance(v, torch.Tensor):
            for d in v.shape:
                visit(d)
        else:
            visit(v)
    return env, printed


def _spec(name: str, kind: str, val: Any, shapes: Shapes) -> TensorSpec:
    if isinstance(val, torch.Tensor):
        return TensorSpec(name, kind, tuple(shapes.dim(d) for d in val.shape), val.dtype)  # type: ignore[arg-type]
    return TensorSpec(name, kind, (1,), torch.int64)  # type: ignore[arg-type]


def captured_of(gm: fx.GraphModule) -> Captured:
    """The partition as a Captured graph: every placeholder a user input (the weights are
    inputs too: dynamo lifts them), every output a named tensor."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    outs = pytree.tree_leaves(out_node.args[0])
    vals = [n.meta.get("val") for n in placeholders] + [o.meta.get("val") for o in outs]
    env, printed = _symbols_of(vals)
    shapes = Shapes(requested="explicit", env=env, printed=printed)
    inputs = tuple(_spec(sanitize(n.name), "input", n.meta["val"], shapes) for n in placeholders)
    outputs = tuple(
        _spec(f"out{i}_{sanitize(o.name)}", "output", o.meta["val"], shapes)
        for i, o in enumerate(outs)
    )
    empty = pytree.tree_flatten(((), {}))[1]
    return Captured(
        gm=gm,
        inputs=inputs,
        outputs=outputs,
        state={},
        in_spec=empty,
        leaves=inputs,
        out_spec=empty,
        out_leaves=outputs,
        shapes=shapes,
        method="dynamo",
    )


class _Racy(Exception):
    """A partition's ONNX graph has nodes whose CPU kernel races on more than one thread
    (``racy_on_threads``: ``"<onnx node name> (ScatterND, reduction=add)"`` each)."""

    def __init__(self, nodes: list[str]) -> None:
        super().__init__(nodes[0])
        self.nodes = nodes


def _racy_sources(sub: fx.GraphModule, racy: list[str]) -> frozenset[str]:
    """The fx nodes of ``sub`` whose lowering emitted the ``racy`` ONNX nodes: a rule's ONNX
    nodes are named ``n:<fx node>`` or ``n:<fx node>_<i>`` (an ambiguous name gives every fx
    node it could come from: one more node left to torch, never a wrong one kept)."""
    names = [r.split(" (", 1)[0] for r in racy]
    found = set()
    for node in sub.graph.nodes:
        if node.op != "call_function":
            continue
        pattern = re.compile(rf"n:{re.escape(node.name)}(_\d+)?")
        if any(pattern.fullmatch(n) for n in names):
            found.add(node.name)
    return frozenset(found)


class OnnxPartition:
    """Called like the fused fx submodule it replaces; runs it in onnxruntime. ``verify``
    compares the first call with the submodule run in torch. A plain callable, not an
    nn.Module: Module.__call__'s hook machinery costs as much as a small session run."""

    def __init__(
        self, sub: fx.GraphModule, name: str, options: Options, split_racy: bool = False
    ) -> None:
        self.name = name
        self.options = options
        self.torch_module = sub
        self.verified = not options.verify
        t0 = time.perf_counter()
        captured = captured_of(sub)
        self.pass_stats: dict[str, dict] = {}  # the passes' counters on this partition, by name
        if options.passes != "none" or options.skip:
            from ..passes import run_passes

            captured, stats = run_passes(
                captured, options.passes, options.skip, opset=options.opset
            )
            self.pass_stats = {s["name"]: s["stats"] for s in stats}
        self.onnx_model = lower(captured, opset=options.opset, graph_name=sanitize(name))
        self.notes: list[str] = []
        threads = options.threads
        racy = racy_on_threads(self.onnx_model)
        if racy and threads != 1:
            # onnxruntime's CPU ScatterND loses updates of duplicate indices on >1 thread
            if split_racy:
                raise _Racy(racy)
            threads = 1
            self.notes.append(
                f"partition {name} runs on 1 onnxruntime thread: {racy[0]} loses updates "
                "with more (fxonnx/runtime/_races.py)"
            )
        self._threads = threads
        self._in_names = [s.name for s in captured.inputs]
        placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
        self._in_kinds = [
            _TENSOR if isinstance(n.meta["val"], torch.Tensor) else _INT for n in placeholders
        ]
        self._baked: frozenset[int] = frozenset()
        self._views: list[Any] = [None] * len(self._in_names)
        # created here in every case: a model onnxruntime refuses fails now, where
        # make_partition leaves the partition to torch, and it is what thawing goes back to
        session, self.nchwc, reorders = self._open_fast(self.onnx_model)
        self._inputs_reorders = reorders
        self._use(session, reorders)
        # weights baked into a second session at the first call (options.freeze, inference
        # graphs, CPU): (input position, tensor, version, data_ptr) of each, checked per call
        self._freeze = options.freeze and not self.session.on_cuda
        self._frozen: tuple[tuple[int, torch.Tensor, int, int], ...] = ()
        self.ms = (time.perf_counter() - t0) * 1e3
        self._out_names = [s.name for s in captured.outputs]
        out_node = next(n for n in sub.graph.nodes if n.op == "output")
        self._out_kinds = [
            _TENSOR if isinstance(o.meta["val"], torch.Tensor) else _INT
            for o in pytree.tree_leaves(out_node.args[0])
        ]
        self._single = not isinstance(out_node.args[0], (tuple, list))
        self._all_tensors = all(k == _TENSOR for k in self._out_kinds)

    def _use(self, session: Session, reorders: tuple[nchwc.Reorder, ...] = ()) -> None:
        """Call ``session`` from now on. The call path is hot: it goes to the raw
        InferenceSession's C++ ``run`` (its Python ``run`` only checks that every input is
        fed, which the partition always does, and retries on other providers for CUDA)."""
        self.session = session
        self._ort = session._session
        self._on_cuda = session.on_cuda
        c_run = getattr(self._ort, "_sess", None)
        self._run = c_run.run if c_run is not None else self._python_run
        position = {name: i for i, name in enumerate(self._in_names)}
        self._reorders = tuple((tuple(position[s] for s in r.sources), r) for r in reorders)
        self._plan_feeds()

    def _python_run(self, names: list[str], feeds: dict, run_options: Any = None) -> Any:
        return self._ort.run(names, feeds, run_options)

    def _plan_feeds(self) -> None:
        """(position, input name, is a tensor) of every input fed to the session as it is
        (not baked into it, not only read through a blocked copy)."""
        fed = {v.name for v in self._ort.get_inputs()}
        self._plan = tuple(
            (i, name, kind == _TENSOR)
            for i, (name, kind) in enumerate(zip(self._in_names, self._in_kinds, strict=True))
            if i not in self._baked and name in fed
        )

    def _open(self, model: Any) -> Session:
        return Session(
            model.SerializeToString(), provider=self.options.provider, threads=self._threads
        )

    def _open_fast(self, model: Any) -> tuple[Session, int, tuple[nchwc.Reorder, ...]]:
        """The session for ``model`` with its run-time-weight convolutions in onnxruntime's
        NCHWc kernels (``_nchwc``) on the CPU, how many were, and the blocked weights the
        call computes in torch; the plain model where there are none or onnxruntime refuses
        the rewritten one."""
        if not self.options.on_cpu():
            return self._open(model), 0, ()
        done = nchwc.rewrite(model, nchwc.block_size(), reorder_outside=True)
        if done.count:
            try:
                return self._open(done.model), done.count, done.reorders
            except RuntimeSessionError as e:
                log.info("fxonnx: %s: NCHWc convolutions refused: %s", self.name, e)
        return self._open(model), 0, ()

    def _bake(self, args: tuple) -> None:
        """The session for these weights: the module's parameters and buffers among ``args``
        (dynamo marks them static) become initializers, which onnxruntime pre-packs and folds
        (Conv + BatchNorm, transposed Gemm weights) as it cannot for graph inputs."""
        static = [
            i
            for i, (kind, a) in enumerate(zip(self._in_kinds, args, strict=True))
            if kind == _TENSOR and getattr(a, "_dynamo_static_input_type", None) is not None
        ]
        if not static:
            self._freeze = False
            return
        model = onnx.ModelProto()
        model.CopyFrom(self.onnx_model)
        names = {self._in_names[i]: args[i] for i in static}
        kept = [v for v in model.graph.input if v.name not in names]
        del model.graph.input[:]
        model.graph.input.extend(kept)
        for name, t in names.items():
            array = t.detach().contiguous().numpy()
            model.graph.initializer.append(onnx.numpy_helper.from_array(array, name))
        try:
            frozen = self._open(model)
        except RuntimeSessionError as e:  # the weights stay inputs, as without freezing
            log.info("fxonnx: %s: weights not baked: %s", self.name, str(e).splitlines()[0])
            self._freeze = False
            return
        self._inputs_session = self.session
        self._frozen = tuple((i, args[i], args[i]._version, args[i].data_ptr()) for i in static)
        self._baked = frozenset(static)
        self._use(frozen)

    def _weights_unchanged(self, args: tuple) -> bool:
        return all(
            args[i] is t and t._version == version and t.data_ptr() == ptr
            for i, t, version, ptr in self._frozen
        )

    def _thaw(self) -> None:
        """Weights changed in place (an optimizer step, ``load_state_dict``) or were swapped
        since they were baked: from now on they are inputs, as without freezing."""
        log.info(
            "fxonnx: %s: weights changed since they were baked; now taken as inputs", self.name
        )
        self._freeze, self._frozen, self._baked = False, (), frozenset()
        self._use(self._inputs_session, self._inputs_reorders)

    def __call__(self, *args: Any) -> Any:
        if self._freeze:
            if not self._frozen:
                self._bake(args)
            elif not self._weights_unchanged(args):
                self._thaw()
        if len(args) != len(self._in_kinds):
            raise RuntimeSessionError(
                f"partition {self.name} takes {len(self._in_kinds)} inputs, got {len(args)}"
            )
        if self._on_cuda:
            outs = self._run_bound(args)
        else:
            # CPU tensors go in as numpy views of their memory and come out as torch views
            # of onnxruntime's arrays: no copies (a non-contiguous input is made contiguous).
            # The weights are the same tensors every call (updated in place by optimizers):
            # their views are kept while the tensor and its storage are the same.
            feeds = {}
            cache = self._views
            for i, name, is_tensor in self._plan:
                a = args[i]
                if not is_tensor:
                    feeds[name] = np.array([int(a)], dtype=np.int64)
                    continue
                held = cache[i]
                if held is not None and held[0] is a and held[1] == a.data_ptr():
                    feeds[name] = held[2]
                    continue
                t = a.detach() if a.requires_grad else a
                view = (t if t.is_contiguous() else t.contiguous()).numpy()
                if isinstance(a, torch.nn.Parameter):
                    cache[i] = (a, a.data_ptr(), view)
                feeds[name] = view
            for where, reorder in self._reorders:
                computed = reorder.compute(*(args[i] for i in where))
                for name, t in zip(reorder.outputs, computed, strict=True):
                    feeds[name] = t.numpy()
            arrays = self._run(self._out_names, feeds, None)
            if self._all_tensors:
                outs = [torch.from_numpy(o) for o in arrays]
            else:
                outs = [
                    torch.from_numpy(o) if kind == _TENSOR else int(o.reshape(-1)[0])
                    for o, kind in zip(arrays, self._out_kinds, strict=True)
                ]
        if not self.verified:
            self._verify(args, outs)
        return outs[0] if self._single else tuple(outs)

    def _run_bound(self, args: tuple) -> list[Any]:
        tensors = [
            a if kind == _TENSOR else torch.tensor([int(a)], dtype=torch.int64)
            for a, kind in zip(args, self._in_kinds, strict=True)
        ]
        if any(t.is_cuda for t in tensors):
            device = next(t.device for t in tensors if t.is_cuda)
            tensors = [t.to(device) for t in tensors]
        raw = self.session.run_torch(tensors)
        return [
            o if kind == _TENSOR else int(o.reshape(-1)[0])
            for o, kind in zip(raw, self._out_kinds, strict=True)
        ]

    def _verify(self, args: tuple, outs: list[Any]) -> None:
        self.verified = True
        want = self.torch_module(*args)
        want = list(want) if isinstance(want, (tuple, list)) else [want]
        checks = []
        for name, w, g in zip(self._out_names, want, outs, strict=True):
            if isinstance(w, torch.Tensor):
                checks.append(compare(f"{self.name} {name}", w, g))
            else:
                checks.append(compare(f"{self.name} {name}", torch.tensor(w), torch.tensor(g)))
        Report(checks=tuple(checks)).raise_if_failed(f"fxonnx partition {self.name}")


def _culprit(sub: fx.GraphModule, error: Exception) -> str | None:
    """The node a lowering error names (rules start their messages with the node's name)."""
    text = str(error)
    for node in sub.graph.nodes:
        if node.op == "call_function" and (
            text.startswith(f"{node.name}:") or text.startswith(f"lowering {node.name} (")
        ):
            return node.name
    return None


@dataclass
class Built:
    """A partition as built: the module to call, the sessions created, notes on what fell
    back to torch and on how sessions run."""

    module: Any  # an OnnxPartition, or an fx.GraphModule run in torch
    sessions: list[OnnxPartition] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what fell back to torch (warned)
    info: list[str] = field(default_factory=list)  # how sessions run (logged at INFO)
    in_torch: int = 0  # compute nodes of the partition that ended up running in torch


_RACY_WHY = (
    "its ScatterND with a reduction loses updates on more than one onnxruntime thread "
    "(fxonnx/runtime/_races.py), and a one-thread session for the whole partition is slower"
)


def make_partition(sub: fx.GraphModule, name: str, options: Options, depth: int = 0) -> Built:
    """An OnnxPartition for ``sub``. When a rule refuses one of its nodes (an op variant the
    table does not lower: the gradient of a transposed convolution), that node stays in
    torch and the rest of ``sub`` is partitioned again around it. So do the nodes lowered to
    a kernel that races on several onnxruntime threads (the embedding gradient, accumulating
    ``index_put``): torch's kernels for them are exact, and the rest keeps every thread."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    try:
        # aot_autograd calls the compiler inside its fake mode: constants must be real
        with unset_fake_temporarily():
            part = OnnxPartition(sub, name, options, split_racy=depth < _MAX_DEPTH)
        return Built(part, [part], info=list(part.notes))
    except _Racy as e:
        racy = _racy_sources(sub, e.nodes)
        if not racy:  # not traced back to an fx node: the whole partition on one thread
            with unset_fake_temporarily():
                part = OnnxPartition(sub, name, options)
            return Built(part, [part], info=list(part.notes))
        info = [f"{n} ({_target(sub, n)}) runs in torch: {_RACY_WHY}" for n in sorted(racy)]
        return _resplit(sub, name, options, depth, racy, Built(sub, [], info=info))
    except (ExportError, RuntimeSessionError) as e:  # lowering problems; config errors propagate
        bad = _culprit(sub, e)
        first = str(e).splitlines()[0]
        if bad is None or depth >= _MAX_DEPTH:
            notes = [f"partition {name} runs in torch: {first}"]
            return Built(sub, [], notes, in_torch=_compute_nodes(sub))
        built = Built(sub, [], [f"{bad} ({_target(sub, bad)}) runs in torch: {first}"])
        return _resplit(sub, name, options, depth, frozenset({bad}), built)


_MAX_DEPTH = 16


def _compute_nodes(sub: fx.GraphModule) -> int:
    from ._partition import _computes

    return sum(1 for n in sub.graph.nodes if n.op == "call_function" and _computes(n))


def _target(sub: fx.GraphModule, node_name: str) -> str:
    return op_name(next(n.target for n in sub.graph.nodes if n.name == node_name))


def _resplit(
    sub: fx.GraphModule,
    name: str,
    options: Options,
    depth: int,
    exclude: frozenset[str],
    built: Built,
) -> Built:
    """``sub`` partitioned again with the ``exclude``d nodes in torch, each new partition
    made by ``make_partition``; ``built`` collects sessions and notes."""
    from ._partition import split

    inner = split(sub, exclude=exclude)
    built.in_torch += len(exclude)
    for i, sub_name in enumerate(inner.partitions):
        child = make_partition(getattr(inner.gm, sub_name), f"{name}.{i}", options, depth + 1)
        delattr(inner.gm, sub_name)
        setattr(inner.gm, sub_name, child.module)
        built.sessions += child.sessions
        built.notes += child.notes
        built.info += child.info
        built.in_torch += child.in_torch
    inner.gm.recompile()
    built.module = inner.gm
    return built
