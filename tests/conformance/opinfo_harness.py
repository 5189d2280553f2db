"""OpInfo samples -> tiny nn.Modules -> fxonnx.compile -> compared with eager.

Which OpInfos: every one whose name (or ATen name) is the overload packet of a rule in fxonnx's
lowering table, and every ``nn.functional.*`` OpInfo (what torch.nn layers call). Each sample's
tensor leaves become graph inputs; every non-tensor argument is baked into the module."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import nn

# int64/int32/bool beside fp32: the integer and bool dtypes every op taking ints should handle.
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.int64, torch.int32, torch.bool)
# The fast tier (default test run) takes the first FAST_SAMPLES samples of each (op, dtype).
FAST_SAMPLES = 2
DTYPE_NAMES = {torch.float32: "f32", torch.int64: "i64", torch.int32: "i32", torch.bool: "b8"}


@functools.cache
def op_db() -> list:
    from torch.testing._internal.common_methods_invocations import op_db as db

    return list(db)


@functools.cache
def lowered_names() -> frozenset[str]:
    """Overload-packet names of the ATen ops in fxonnx's lowering table (``aten.add.Tensor`` ->
    ``add``)."""
    import fxonnx.export.ops  # noqa: F401 - registers the rules
    from fxonnx.export._registry import registered

    names = set()
    for target in registered():
        packet = getattr(target, "_overloadpacket", None)
        if packet is not None:
            names.add(packet.__name__)
    return frozenset(names)


def op_id(op: Any) -> str:
    return op.name + ("." + op.variant_test_name if op.variant_test_name else "")


def _candidates(op: Any) -> set[str]:
    short = op.name.split(".")[-1]
    names = {op.name, short, op.aten_name or "", short.lstrip("_")}
    return {n for n in names if n}


def aten_names(op: Any) -> frozenset[str]:
    """The lowering-table ops an OpInfo exercises by name (empty for nn.functional ops that
    decompose into other ATen ops)."""
    return frozenset(_candidates(op) & lowered_names())


@functools.cache
def selected_ops() -> tuple:
    """OpInfos in scope, sorted by id; ids are unique."""
    seen: dict[str, Any] = {}
    for op in op_db():
        if aten_names(op) or op.name.startswith("nn.functional."):
            seen.setdefault(op_id(op), op)
    return tuple(seen[k] for k in sorted(seen))


def dtypes_for(op: Any) -> tuple[torch.dtype, ...]:
    supported = op.supported_dtypes("cpu")
    return tuple(d for d in DTYPES if d in supported)


def samples(op: Any, dtype: torch.dtype, limit: int | None = None) -> list:
    """The OpInfo's first ``limit`` (default: all) samples at ``dtype``: seeded and generated
    lazily, so sample ``i`` is the same whatever the limit."""
    return _samples(op_id(op), dtype, limit)


@functools.cache
def _samples(name: str, dtype: torch.dtype, limit: int | None) -> list:
    op = _by_id()[name]
    torch.manual_seed(0)
    return list(itertools.islice(op.sample_inputs("cpu", dtype, requires_grad=False), limit))


@functools.cache
def _by_id() -> dict[str, Any]:
    return {op_id(op): op for op in selected_ops()}


def sample_of(case: Case) -> Any:
    return samples(case.op, case.dtype, None if case.full else FAST_SAMPLES)[case.index]


def features(sample: Any) -> set[str]:
    """Shape edge cases a sample exercises: "0-d" and "zero-size" tensor leaves."""
    leaves = pytree.tree_leaves((sample.input, tuple(sample.args), dict(sample.kwargs)))
    found = set()
    for t in leaves:
        if isinstance(t, torch.Tensor):
            if t.dim() == 0:
                found.add("0-d")
            if t.numel() == 0:
                found.add("zero-size")
    return found


# Ops returning indices whose order among equal values torch leaves unspecified (unless
# stable=True): indices pointing at equal values are as good as eager's.
TIE_ORDER = frozenset({"topk", "sort", "argsort"})


def _ties_resolved(name: str, sample: Any, x: torch.Tensor, want: list, got: list) -> list:
    """``got`` with its index output replaced by eager's when both select the same values."""
    args, kwargs = tuple(sample.args), dict(sample.kwargs)
    if x.dim() == 0 or kwargs.get("stable") or (name != "topk" and len(args) > 2 and args[2]):
        return got
    dim = (
        (args[1] if len(args) > 1 else kwargs.get("dim", -1))
        if name == "topk"
        else (args[0] if args else kwargs.get("dim", -1))
    )
    i = 0 if name == "argsort" else 1
    w_idx, g_idx = want[i], got[i]
    if g_idx.shape != w_idx.shape or g_idx.dtype != w_idx.dtype:
        return got
    if torch.equal(x.gather(dim, g_idx), x.gather(dim, w_idx)):
        return [*got[:i], w_idx, *got[i + 1 :]]
    return got


# Ops whose output values are undefined (uninitialised memory): only shape and dtype compare.
UNDEFINED_VALUES = frozenset(
    {"empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided"}
)


class SampleModule(nn.Module):
    """Calls ``fn(input, *args, **kwargs)`` with the tensors passed to forward() put back in
    place of the sample's tensor leaves (non-tensor leaves are baked)."""

    def __init__(self, fn: Any, structure: Any, spec: Any, slots: list[int]) -> None:
        super().__init__()
        self.fn, self.structure, self.spec, self.slots = fn, structure, spec, slots

    def forward(self, *tensors: torch.Tensor) -> Any:
        leaves = list(self.structure)
        for slot, t in zip(self.slots, tensors, strict=True):
            leaves[slot] = t
        inp, args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        return self.fn(inp, *args, **kwargs)


def wrap(op: Any, sample: Any) -> tuple[SampleModule, tuple[torch.Tensor, ...]]:
    leaves, spec = pytree.tree_flatten((sample.input, tuple(sample.args), dict(sample.kwargs)))
    slots = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
    tensors = tuple(leaves[i].detach().clone() for i in slots)
    baked = [None if i in slots else leaf for i, leaf in enumerate(leaves)]
    return SampleModule(op.op, baked, spec, slots), tensors


@dataclasses.dataclass(frozen=True)
class Case:
    """One sample of one OpInfo at one dtype; ``index`` counts the OpInfo's samples."""

    op: Any
    dtype: torch.dtype
    index: int
    full: bool = False  # generated in the full tier (all samples) rather than the fast one

    @property
    def id(self) -> str:
        return f"{op_id(self.op)}-{DTYPE_NAMES[self.dtype]}-{self.index}"


def tensor_leaves(out: Any) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


class Mismatch(AssertionError):
    """The compiled sample ran but its outputs differ from eager."""


def run_case(case: Case) -> None:
    """Compile the sample (static shapes, no built-in verification) and compare every tensor
    output with eager at the dtype's tolerance (fxonnx.verify). Raises FxonnxError when fxonnx
    refuses the sample, Mismatch when the numbers differ."""
    import fxonnx
    from fxonnx.verify import compare

    sample = sample_of(case)
    module, tensors = wrap(case.op, sample)
    with torch.no_grad():
        want = tensor_leaves(module(*[t.clone() for t in tensors]))
        cm = fxonnx.compile(module, tensors, dynamic_dims=None, verify=False, provider="cpu")
        got = tensor_leaves(cm(*tensors))
    if len(got) != len(want):
        raise Mismatch(f"{len(got)} tensor outputs, eager has {len(want)}")
    if case.op.name in TIE_ORDER and len(got) == len(want):
        got = _ties_resolved(case.op.name, sample, tensors[0], want, got)
    if case.op.name in UNDEFINED_VALUES:
        want = [torch.zeros_like(w) for w in want]
        got = [torch.zeros_like(g) for g in got]
    bad = [
        f"output {i}: {c.note or f'max abs err {c.max_abs:.3g}, rel {c.max_rel:.3g}'}"
        for i, (w, g) in enumerate(zip(want, got, strict=True))
        if not (c := compare(f"output {i}", w, g)).ok
    ]
    if bad:
        raise Mismatch(f"{case.id}: " + "; ".join(bad) + f" [{sample}]")


# -- outcomes and reasons ------------------------------------------------------------------
REFUSALS = ("UnsupportedOpError", "ExportError", "CaptureError")


def _squash(text: str) -> str:
    """A message with its numbers, shapes and node names folded, so samples group by cause."""
    text = text.split("\n")[0]
    text = re.sub(r"\[[^\]]*\]", "[..]", text)
    text = re.sub(r"(?<![a-z_])-?\d+(\.\d+)?", "N", text)
    text = re.sub(r"(name |Name:)'[^']*'", r"\1'..'", text)
    text = re.sub(r"\(n:[^)]*\)", "(n:..)", text)
    return text.strip()[:160]


def classify(case: Case, error: BaseException | None) -> tuple[str, str] | None:
    """(expected exception class name, reason) for a failing sample, None when it passed.

    Reasons start with who owns the fix: ``[unsupported]`` (refused with an FxonnxError, no
    rule or an option a rule refuses), ``[edges]``/``[ops]`` (another helper's open work),
    ``[bug]`` (a wrong result or a raw onnxruntime failure: must become a match or a refusal)."""
    if error is None:
        return None
    kind = type(error).__name__
    msg = str(error)
    feats = features(sample_of(case))
    edge = ", ".join(sorted(feats))
    if kind == "UnsupportedOpError":
        ops = sorted({op.target for op in getattr(error, "ops", [])})
        owner = "[ops]" if any(_owned_by_ops(o) for o in ops) else "[unsupported]"
        return kind, f"{owner} no lowering: {', '.join(ops)}"
    if kind == "ExportError" and re.match(r"lowering \w+ \(.*\) failed", msg):
        owner = f"[edges] ({edge})" if feats else "[bug]"
        return kind, f"{owner} a rule crashed: {_squash(msg)}"
    if kind == "ExportError":
        return kind, f"[unsupported] refused: {_squash(msg)}"
    if kind == "CaptureError":
        m = re.search(r"\((\w+Exception: [\w.]+)\)", msg) or re.search(r"(\w+Error: .{0,80})", msg)
        why = m.group(1) if m else _squash(msg)
        return kind, f"[unsupported] capture refused: {why}"
    refused = re.match(r"onnxruntime has no \w+ kernel for (.*?); .*so fxonnx does not", msg)
    if kind == "RuntimeSessionError" and refused:  # fxonnx's own refusal, before onnxruntime
        return kind, f"[unsupported] refused: no exact kernel for {refused.group(1)}"
    if kind == "RuntimeSessionError":
        owner = f"[edges] ({edge})" if feats else "[bug]"
        op = re.search(r"Op \((\w+)\)|operator \((\w+)\)|for (\w+)\(\d+\)|running (\w+) node", msg)
        onnx_op = next((g for g in op.groups() if g), "?") if op else "?"
        if re.search(
            r"has incorrect size|must have at least \d+ dimensions|cannot be less than", msg
        ):
            return kind, (
                f"[edges] unbatched input: onnxruntime refuses {onnx_op} without a batch dim "
                "(raw RuntimeSessionError)"
            )
        m = re.search(r"Type '(tensor\(\w+\))' of input parameter", msg)
        if m or "Could not find an implementation" in msg:  # whatever the shape: a dtype gap
            dt = m.group(1) if m else f"tensor({str(case.dtype).removeprefix('torch.')})"
            return kind, (
                f"[bug:dtype] onnxruntime has no {onnx_op} kernel for {dt}: "
                "cast or refuse at lowering"
            )
        return kind, f"{owner} onnxruntime fails in {onnx_op}: {_squash(msg.split(':', 1)[-1])}"
    if kind == "Mismatch":
        owner = f"[edges] ({edge})" if feats else "[bug]"
        what = "shape" if "shape [" in msg else "dtype" if "dtype torch" in msg else "values"
        rel = re.search(r"rel ([\d.e+-]+)", msg)
        if owner == "[bug]" and what == "values" and rel and float(rel.group(1)) < 1e-3:
            owner = "[precision] fp32 error above rtol 1e-4 but below 1e-3:"
        if "NaN in" in msg:
            what = "NaN propagation"
        return kind, f"{owner} wrong {what} vs eager"
    return kind, f"[bug] raw {kind}: {_squash(msg)}"


_OPS_HELPER = (
    "diff",
    "binary_cross_entropy",
    "kl_div",
    "rms_norm",
    "repeat_interleave",
    "expand_as",
    "rnn_",
    "gru_cell",
    "lstm_cell",
)


def _owned_by_ops(target: str) -> bool:
    return "loss" in target or any(k in target for k in _OPS_HELPER)


def cases(full: bool) -> list[Case]:
    """Every (OpInfo, dtype, sample) of the tier: the fast tier takes the first FAST_SAMPLES
    samples of each (op, dtype) but int32, the full tier all of them."""
    out = []
    for op in selected_ops():
        for dtype in dtypes_for(op):
            if not full and dtype == torch.int32:  # int64 stands for the integers in the fast tier
                continue
            n = len(samples(op, dtype, None if full else FAST_SAMPLES))
            out += [Case(op, dtype, i, full) for i in range(n)]
    return out


def outcome(case: Case) -> BaseException | None:
    """The exception running the case raised (None when it matched eager)."""
    try:
        run_case(case)
    except Exception as e:  # noqa: BLE001 - every failure is classified, none is hidden
        return e
    return None


def ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    parts, start = [], None
    for i, x in enumerate(indices):
        if start is None:
            start = x
        if i + 1 == len(indices) or indices[i + 1] != x + 1:
            parts.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(parts)


def unranges(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
