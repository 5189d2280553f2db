"""The pass contract, pipelines run to a fixed point, and the registry of passes by name.

A pass rewrites ``ctx.captured`` in place: the graph (``captured.gm``) and, for passes that fold or
prune weights, the state (``captured.state``) and signature (``captured.inputs``). It returns a
``PassResult``; a pattern that does not apply is a counted miss (``stats["miss:<reason>"]``), not an
exception. ``Pass.apply`` checks the contract around ``run``: the same graph module comes back, the
``modified`` flag agrees with a structural hash taken before and after, the graph lints, and it is
recompiled.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import fx

from .._errors import PassError
from ..capture import Captured


@dataclass
class PassContext:
    """What a pass may read and write: the Captured (graph, state, signature) and, when known,
    the example user tensors (flat, in ``captured.user_inputs`` order) for passes that measure
    their effect on the outputs (structured pruning), the target ONNX opset for passes whose
    benefit depends on what the exporter emits (attention fusion), and a memo that lets a pass
    skip work it already did on the same tensors in an earlier round."""

    captured: Captured
    example_inputs: tuple[torch.Tensor, ...] = ()
    opset: int | None = None  # the ONNX opset the graph will be lowered to, when known
    # facts a pass computed about state tensors, kept for the later rounds of one pipeline
    # (keyed by the pass; entries hold the tensor and its version, so a tensor changed in
    # place or a reused id never hits a stale entry)
    memo: dict[Any, Any] = field(default_factory=dict)

    @property
    def gm(self) -> fx.GraphModule:
        return self.captured.gm


@dataclass(frozen=True)
class PassResult:
    """One run of one pass: the graph module, whether anything changed, and counters (hits such
    as ``"folded"`` and misses as ``"miss:<reason>"``; other values, e.g. parameter counts, may be
    numbers or strings)."""

    gm: fx.GraphModule
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)
    graph_hash: str = ""  # structural_hash after the pass; set by Pass.apply


class Pass:
    """Base class: subclasses set ``name`` and implement ``run``. ``once = True`` passes run only
    in the first round of a pipeline (they are not idempotent, e.g. ratio pruning); ``lossy =
    True`` passes change the outputs on purpose, so per-pass verification re-bases its reference
    after them instead of failing. ``stage = "onnx"`` passes rewrite the lowered model for a
    provider: ``run_passes`` leaves them out of the ATen pipeline and ``compile`` applies them."""

    name: ClassVar[str] = ""
    once: ClassVar[bool] = False
    lossy: ClassVar[bool] = False
    stage: ClassVar[str] = "aten"

    def run(self, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    def apply(
        self, ctx: PassContext, before: str | None = None, *, recompile: bool = True
    ) -> PassResult:
        """Run the pass and check what it says against what it did. ``before``: the graph's
        ``structural_hash`` when the caller knows it (a pipeline hands on the digest the last
        pass left). An unchanged graph is neither linted nor recompiled again: its code is
        still current, and recompiling every pass was half of the pipeline's time.
        ``recompile=False`` leaves regenerating the Python code to the caller (a pipeline does
        it once, when the code is next needed): a pass that runs ``ctx.gm`` itself calls
        ``ctx.gm.recompile()`` first, as ``prune`` does."""
        gm = ctx.gm
        before = before or structural_hash(ctx.captured)
        dims = ctx.captured.shapes.snapshot()
        result = self.run(ctx)
        fixed = ctx.captured.shapes.fixed_since(dims)
        if fixed:
            raise PassError(
                f"pass {self.name!r} fixed the dynamic dim(s) {fixed} to their example size "
                "(it read a symbolic size as an int: a bug in fxonnx)",
                hint=f"skip=[{self.name!r}] avoids it meanwhile",
            )
        if result.gm is not gm or ctx.gm is not gm:
            raise PassError(f"pass {self.name!r} returned a different graph module")
        after = structural_hash(ctx.captured)
        changed = after != before
        if changed != result.modified:
            raise PassError(
                f"pass {self.name!r} reported modified={result.modified} but the graph "
                f"{'changed' if changed else 'did not change'}"
            )
        if changed:
            try:
                gm.graph.lint()
            except Exception as e:
                raise PassError(f"pass {self.name!r} left an invalid graph: {e}") from e
            if recompile:
                gm.recompile()
        return replace(result, graph_hash=after)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def structural_hash(captured: Captured) -> str:
    """A digest of the graph (ops, names, targets, arguments: nodes by identity) and of the
    state (names and tensor identities), so any rewrite of either changes it. Python's hash of
    the fx argument tuples (immutable, hashable), not their repr: formatting every node's
    arguments twice per pass was a tenth of the pipeline's time."""
    keys = []
    for node in captured.gm.graph.nodes:
        key = (node.op, node.name, node.target, node.args, node.kwargs)
        try:
            keys.append(hash(key))
        except TypeError:  # an unhashable constant argument (a slice before Python 3.12)
            keys.append(hash(repr(key)))
    keys.append(hash(tuple((spec.name, spec.kind) for spec in captured.inputs)))
    keys.append(hash(tuple(sorted((name, id(t)) for name, t in captured.state.items()))))
    h = hashlib.sha1(repr(keys).encode())
    return h.hexdigest()


# -- registry ----------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by its ``name``. Duplicate names are errors."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"pass {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a pass (tests register throwaway passes)."""
    _REGISTRY.pop(name, None)


def available_passes() -> list[str]:
    """Every registered pass name, sorted."""
    return sorted(_REGISTRY)


def get_pass(name: str, **options: Any) -> Pass:
    cls = _REGISTRY.get(name)
    if cls is None:
        raise PassError(f"unknown pass {name!r}", hint=f"choose from {available_passes()}")
    return cls(**options)


# -- pipeline ----------------------------------------------------------------------------------


class Pipeline:
    """Passes run in order, the whole list repeated until no pass modifies the graph or
    ``max_rounds`` is reached. ``after_each(pass, ran)`` (optional) is called after every pass
    that modified the graph, with the names of the passes that ran before it."""

    def __init__(self, passes: Sequence[Pass], max_rounds: int = 3) -> None:
        self.passes = list(passes)
        self.max_rounds = max_rounds

    def run(self, ctx: PassContext, after_each: Any = None) -> list[dict[str, Any]]:
        """Returns one dict per pass: name, rounds it ran, modified, time in ms and stats: hits
        summed over the rounds, misses (``miss:*``) as counted in the pass's last round (what is
        left at the fixed point)."""
        records = {p.name: _Record(p.name) for p in self.passes}
        ran: list[str] = []
        digest = None
        stale = False  # the graph changed since its Python code was last generated
        for round_ in range(self.max_rounds):
            any_change = False
            for p in self.passes:
                if p.once and round_ > 0:
                    continue
                t0 = time.perf_counter()
                try:
                    result = p.apply(ctx, digest, recompile=False)
                except PassError:
                    raise
                except Exception as e:
                    raise PassError(
                        f"pass {p.name!r} failed: {type(e).__name__}: {e}"
                        + (f" (after passes {ran})" if ran else "")
                    ) from e
                digest = result.graph_hash
                rec = records[p.name]
                rec.ms += (time.perf_counter() - t0) * 1e3
                rec.rounds += 1
                rec.modified |= result.modified
                rec.misses = {k: v for k, v in result.stats.items() if k.startswith("miss:")}
                for k, v in result.stats.items():
                    if k.startswith("miss:"):
                        continue
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        rec.stats[k] = rec.stats.get(k, 0) + v
                    else:
                        rec.stats[k] = v
                stale |= result.modified
                if result.modified and after_each is not None:
                    ctx.gm.recompile()  # after_each runs the graph
                    stale = False
                    after_each(p, list(ran))
                ran.append(p.name)
                any_change |= result.modified
            if not any_change:
                break
        if stale:
            ctx.gm.recompile()
        return [r.to_dict() for r in records.values()]


@dataclass
class _Record:
    name: str
    rounds: int = 0
    modified: bool = False
    ms: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    misses: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rounds": self.rounds,
            "modified": self.modified,
            "ms": round(self.ms, 3),
            "stats": dict(sorted({**self.stats, **self.misses}.items())),
        }
