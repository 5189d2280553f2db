"""Bounded tracing: stop a trace whose work grows with a tensor's size instead of the model's.

A trace does work per ATen op dispatched on fake tensors. For a well-behaved model that is a
small multiple of its modules and parameters; it grows with a tensor's *size* only when Python
(or a torch decomposition) loops over a dim: a Python ``for`` over ``x.size(0)``, or a recurrent
layer whose decomposition unrolls once per time step (traced at the batch sentinel on the
sequence dim that is a million steps). ``trace_budget`` counts the dispatched ops and raises a
CaptureError once they pass a budget proportional to the model's own size, naming the ops that
grew, the module and the source line where the budget ran out.

Use it around one trace, inside the fake mode (``guarded_trace`` also quiets torch's
fake-tensor logger, which prints a traceback for every failed meta kernel)::

    with mode, torch.no_grad(), guarded_trace(model):
        gm = make_fx(fn, pre_dispatch=True)(*fakes)
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from types import FrameType
from typing import Any

import torch
from torch import nn
from torch.fx.experimental.symbolic_shapes import optimization_hint
from torch.utils._python_dispatch import TorchDispatchMode

from .._errors import CaptureError

BASE_OPS = 2_000
"""Ops any model may dispatch, whatever its size."""

OPS_PER_UNIT = 200
"""Ops allowed per module, parameter and buffer of the model (a decomposed attention or a
recurrent layer over a short example sequence stays far below this)."""

_INTERNAL = ("/torch/_", "/torch/fx/", "/torch/utils/", "/torch/overrides", "/fxonnx/capture/")


def op_budget(model: nn.Module) -> int:
    """The ops a trace of ``model`` may dispatch: ``BASE_OPS`` plus ``OPS_PER_UNIT`` per
    module, parameter tensor and buffer."""
    units = (
        sum(1 for _ in model.modules())
        + sum(1 for _ in model.parameters())
        + sum(1 for _ in model.buffers())
    )
    return BASE_OPS + OPS_PER_UNIT * units


class trace_budget(TorchDispatchMode):  # noqa: N801 - used as a context manager, like no_grad
    """Count ATen ops dispatched while active; past ``limit`` (default ``op_budget(model)``)
    raise a CaptureError saying which ops grew and where. ``counts`` keeps the histogram."""

    def __init__(self, model: nn.Module, limit: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.limit = op_budget(model) if limit is None else int(limit)
        self.counts: Counter[str] = Counter()
        self.total = 0
        self._names = {id(m): name for name, m in model.named_modules()}

    @classmethod
    def is_infra_mode(cls) -> bool:
        # like torch's own tracing modes: torch.cond then still lifts the tensors its branches
        # close over (its dynamo path refuses to run under a user dispatch mode)
        return True

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        # an op with one output per element of a dim (unbind) is as much work as that many ops,
        # and it is counted before it runs: unbinding a million-long dim takes minutes by itself
        cost = 1 + _outputs_per_dim(func, args, kwargs or {})
        self.total += cost
        self.counts[str(func)] += cost
        if self.total > self.limit:
            raise self._error()
        return func(*args, **(kwargs or {}))

    def _error(self) -> CaptureError:
        top = ", ".join(f"{op} x{n}" for op, n in self.counts.most_common(3))
        module, line = _where(sys._getframe(2), self._names)
        at = f" in module {module}" if module else ""
        at += f" at {line}" if line else ""
        return CaptureError(
            f"the trace stopped after {self.total} ATen ops{at}: that is past its budget of "
            f"{self.limit} ops for a model of this size, so the work grows with a tensor's size, "
            f"not the model's; the ops that grew: {top}",
            hint="look for a Python loop over a tensor dim, or a recurrent layer unrolled per "
            "time step on a dynamic dim (a sequence-first nn.RNN/GRU/LSTM has its batch at dim "
            "1: declare that dim dynamic, not dim 0); keep the loop out of forward() or make "
            "that dim static",
        )


def _outputs_per_dim(func: Any, args: Any, kwargs: dict) -> int:
    """How many tensors ``unbind``/``split`` will return, for those ops (0 for any other)."""
    name = getattr(func, "__name__", "")
    if not name.startswith(("unbind", "split.", "unsafe_split.")) or not args:
        return 0
    shape = getattr(args[0], "shape", None)
    if shape is None or not len(shape):
        return 0
    if name.startswith("unbind"):
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        return _int(shape[dim])
    size = args[1] if len(args) > 1 else kwargs.get("split_size", 0)
    dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
    if not isinstance(size, int) or size <= 0:
        return 0
    return -(-_int(shape[dim]) // size)


def _int(dim: Any) -> int:
    """A dim's size for counting: its hint when symbolic (``int()`` would add a guard and
    specialise the graph), 0 when there is none (an unbacked size)."""
    if isinstance(dim, int):
        return dim
    try:
        return int(optimization_hint(dim, fallback=0))
    except Exception:
        return 0


def _where(frame: FrameType | None, names: dict[int, str]) -> tuple[str | None, str | None]:
    """The innermost module of the model being run, and the innermost source line outside
    torch's tracing machinery, on the current Python stack."""
    module = line = None
    while frame is not None and (module is None or line is None):
        code = frame.f_code
        if line is None and not any(s in code.co_filename for s in _INTERNAL):
            line = f"{code.co_filename}:{frame.f_lineno} ({code.co_name})"
        if module is None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in names:
                name = names[id(owner)]
                module = f"{name or '<root>'!r} ({type(owner).__name__})"
        frame = frame.f_back
    return module, line


_FAKE_LOG = "torch._subclasses.fake_tensor"


@contextlib.contextmanager
def guarded_trace(model: nn.Module, limit: int | None = None) -> Iterator[trace_budget]:
    """What one trace runs under: ``trace_budget(model, limit)``, and torch's fake-tensor
    logger quieted. That logger prints the full traceback of every failed meta kernel at ERROR
    level (a hundred lines to stderr for a wrong input shape) although the failure is raised,
    and turned into one CaptureError, anyway."""
    logger = logging.getLogger(_FAKE_LOG)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with trace_budget(model, limit) as budget:
            yield budget
    finally:
        logger.setLevel(level)


def _pass_through(hop: Any) -> None:
    """Let a higher-order op (``torch.cond``) through the budget's mode: the rule runs with the
    mode popped and calls the op again for the modes below (tracing, fake tensors); the ops of
    its branches are still counted when they are traced."""

    @hop.py_impl(trace_budget)
    def _rule(mode: trace_budget, *args: Any, **kwargs: Any) -> Any:
        return hop(*args, **kwargs)


for _name in ("cond", "while_loop"):
    _hop = getattr(torch.ops.higher_order, _name, None)
    if _hop is not None:
        _pass_through(_hop)
