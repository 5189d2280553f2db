"""Hypothesis strategies for random models built from the layers and ops fxonnx lowers.

A model is a chain of blocks drawn one after another; each block is drawn for the current
shape and dtype (so every model is valid in eager PyTorch), optionally wrapped in a residual
add, and the chain may end by combining with a second input (comparison, ``where``, maximum).
Inputs cover 0-d, unbatched, size-1 and zero-size dims, float32/float64/int64, and a random
example batch. ``describe()`` is what a failure prints: it shrinks with the draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import strategies as st
from torch import nn

Shape = tuple[int, ...]
EPS = 1e-3
"""Normalisation epsilon: on (nearly) constant inputs a norm divides rounding noise by
sqrt(eps), and torch's default 1e-5 amplifies fp32 rounding 300x past any honest tolerance."""


class Block(nn.Module):
    """``fn(mods, x)`` with its submodules registered (so functional_call swaps their weights)."""

    def __init__(self, desc: str, fn: Callable[..., torch.Tensor], **mods: nn.Module) -> None:
        super().__init__()
        self.desc = desc
        self.fn = fn
        self.mods = nn.ModuleDict(mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.mods, x)

    def extra_repr(self) -> str:
        return self.desc


class Residual(nn.Module):
    def __init__(self, inner: Block) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


class FuzzModel(nn.Module):
    """The blocks in order, then (with a second input) ``combine(h, y)``."""

    def __init__(
        self, blocks: list[nn.Module], combine: str | None, float_dtypes: tuple = ()
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.combine = combine
        self.float_dtypes = float_dtypes  # what the chain computes in: sets the tolerance

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks(x)
        if self.combine is None or y is None:
            return h
        return COMBINE[self.combine](h, y)


COMBINE: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": lambda h, y: h + y,
    "where_gt": lambda h, y: torch.where(h > y, h, y),
    "maximum": torch.maximum,
    "ge_float": lambda h, y: (h >= y).to(h.dtype) * h,
    "eq_count": lambda h, y: (h == y).sum(-1) if h.dim() else (h == y).long(),
}


@dataclass
class Case:
    """One drawn model with its example inputs; ``batched`` marks inputs whose dim 0 is a batch."""

    model: FuzzModel
    inputs: tuple[torch.Tensor, ...]
    batched: bool
    dynamic: bool
    differentiable: bool
    steps: list[str] = field(default_factory=list)

    def describe(self) -> str:
        shapes = ", ".join(f"{tuple(t.shape)}:{str(t.dtype)[6:]}" for t in self.inputs)
        return f"inputs ({shapes}) dynamic={self.dynamic}\n  " + "\n  ".join(self.steps)


# -- blocks: (draw, shape, dtype) -> (module, new shape, new dtype, differentiable) | None --------
Drawn = tuple[nn.Module, Shape, torch.dtype, bool]


def _out(x_shape: Shape, fn: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype) -> Any:
    with torch.no_grad():
        y = fn(torch.zeros(x_shape, dtype=dtype))
    return tuple(y.shape), y.dtype


def _elementwise(draw: Any, shape: Shape, dtype: torch.dtype, avoid: frozenset) -> Drawn | None:
    if not dtype.is_floating_point:
        return None
    name = draw(
        st.sampled_from(
            [
                "ReLU", "GELU", "Tanh", "Sigmoid", "SiLU", "LeakyReLU", "ELU", "Hardswish",
                "Softplus", "affine", "abs", "square", "clamp", "neg_exp",
            ]
        )
    )  # fmt: skip
    funcs = {
        "affine": lambda m, x: x * 2.0 + 0.5,
        "abs": lambda m, x: x.abs(),
        "square": lambda m, x: x.pow(2),
        "clamp": lambda m, x: x.clamp(-0.5, 0.75),
        "neg_exp": lambda m, x: torch.exp(-x.abs()),
    }
    if name in funcs:
        return Block(name, funcs[name]), shape, dtype, name != "clamp"
    act = getattr(nn, name)(0.1) if name == "LeakyReLU" else getattr(nn, name)()
    return Block(name, lambda m, x: m["act"](x), act=act), shape, dtype, True


def _linear(draw: Any, shape: Shape, dtype: torch.dtype, avoid: frozenset) -> Drawn | None:
    if not shape or not dtype.is_floating_point:
        return None
    if dtype == torch.float64 and "ort-f64-matmul" in avoid:
        return None
    f = shape[-1]
    g = draw(st.integers(1, 6))
    bias = draw(st.booleans())
    lin = nn.Linear(f, g, bias=bias).to(dtype)
    return (
        Block(f"Linear({f}, {g}, bias={bias})", lambda m, x: m["l"](x), l=lin),
        (
            *shape[:-1],
            g,
        ),
        dtype,
        True,
    )


def _norm_last(draw: Any, shape: Shape, dtype: torch.dtype, avoid: frozenset) -> Drawn | None:
    if not shape or not dtype.is_floating_point or shape[-1] == 0:
        return None
    kind = draw(st.sampled_from(["LayerNorm", "RMSNorm", "softmax", "log_softmax"]))
    f = shape[-1]
    if kind == "LayerNorm":
        mod = nn.LayerNorm(f, eps=EPS, elementwise_affine=draw(st.booleans())).to(dtype)
        return Block(f"LayerNorm({f})", lambda m, x: m["n"](x), n=mod), shape, dtype, True
    if kind == "RMSNorm":
        mod = nn.RMSNorm(f, eps=EPS).to(dtype)
        return Block(f"RMSNorm({f})", lambda m, x: m["n"](x), n=mod), shape, dtype, True
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    fn = torch.softmax if kind == "softmax" else torch.log_softmax
    return Block(f"{kind}(dim={dim})", lambda m, x: fn(x, dim)), shape, dtype, True


def _ramp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """0, 0.01, 0.02, ... along ``dim`` (broadcastable to ``x``), in ``x``'s dtype."""
    n = x.shape[dim] if x.dim() else 1
    shape = [1] * x.dim()
    if shape:
        shape[dim] = n
    return (torch.arange(n, dtype=torch.float64) * 0.01).reshape(shape).to(x.dtype)


def _reduce(draw: Any, shape: Shape, dtype: torch.dtype, avoid: frozenset) -> Drawn | None:
    rank = max(len(shape), 1)
    dim = draw(st.integers(-rank, rank - 1))
    keep = draw(st.booleans())
    ops = ["sum", "amax", "cumsum", "argmax"]
    if dtype.is_floating_point:
        ops += ["mean", "var", "logsumexp"]
    kind = draw(st.sampled_from(ops))
    if kind in ("amax", "argmax", "var", "logsumexp") and shape and shape[dim] == 0:
        return None  # eager refuses to reduce an empty dim with these
    if kind == "cumsum":
        fn = lambda m, x: torch.cumsum(x, dim)  # noqa: E731
    elif kind == "var":
        fn = lambda m, x: x.var(dim, keepdim=keep, correction=0)  # noqa: E731
    elif kind == "argmax":  # a ramp breaks near-ties that rounding would decide
        fn = lambda m, x: (x + _ramp(x, dim)).argmax(dim, keepdim=keep)  # noqa: E731
    else:
        fn = lambda m, x: getattr(x, kind)(dim, keepdim=keep)  # noqa: E731
    new, new_dtype = _out(shape, lambda x: fn(None, x), dtype)
    diff = kind not in ("argmax",) and dtype.is_floating_point
    return Block(f"{kind}(dim={dim}, keepdim={keep})", fn), new, new_dtype, diff


def _movement(draw: Any, shape: Shape, dtype: torch.dtype, avoid: frozenset) -> Drawn | None:
    rank = len(shape)
    kind = draw(st.sampled_from(["flatten", "unsqueeze", "transpose", "permute", "slice", "cat",
                                 "split", "reshape", "squeeze", "flip"]))  # fmt: skip
    if kind == "flatten" and rank >= 2:
        fn = lambda m, x: x.flatten(1)  # noqa: E731
    elif kind == "unsqueeze":
        d = draw(st.integers(-rank - 1, rank))
        fn = lambda m, x: x.unsqueeze(d)  # noqa: E731
    elif kind == "transpose" and rank >= 2:
        a, b = draw(st.permutations(range(rank)))[:2]
        fn = lambda m, x: x.transpose(a, b)  # noqa: E731
    elif kind == "permute" and rank >= 1:
        perm = tuple(draw(st.permutations(range(rank))))
        fn = lambda m, x: x.permute(perm)  # noqa: E731
    elif kind == "slice" and rank >= 1:
        d = draw(st.integers(0, rank - 1))
        start = draw(st.integers(-3, 3))
        step = draw(st.integers(1, 2))
        fn = lambda m, x: x[(slice(None),) * d + (slice(start, None, step),)]  # noqa: E731
    elif kind == "cat" and rank >= 1:
        d = draw(st.integers(-rank, rank - 1))
        fn = lambda m, x: torch.cat([x, x * 2], d)  # noqa: E731
    elif kind == "split" and rank >= 1 and shape[-1] >= 2:
        size = draw(st.integers(1, shape[-1] - 1))
        fn = lambda m, x: torch.cat(list(reversed(x.split(size, -1))), -1)  # noqa: E731
    elif kind == "reshape" and rank >= 2:
        fn = lambda m, x: x.reshape(x.shape[0], math.prod(x.shape[1:]), 1)  # noqa: E731
    elif kind == "squeeze" and "squeeze-dynamic" not in avoid:
        fn = lambda m, x: x.squeeze()  # noqa: E731
    elif kind == "flip" and rank >= 1:
        d = draw(st.integers(0, rank - 1))
        fn = lambda m, x: x.flip(d)  # noqa: E731
    else:
        return None
    new, new_dtype = _out(shape, lambda x: fn(None, x), dtype)
    return Block(kind, fn), new, new_dtype, dtype.is_floating_point


def _cast(draw: Any, shape: Shape, dtype: torch.dtype, avoid: frozenset) -> Drawn | None:
    target = draw(st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool]))
    if target == dtype:
        return None
    # through a comparison (the bool target) the output no longer depends on x differentiably
    diff = dtype.is_floating_point and target.is_floating_point
    if target == torch.bool:
        fn = lambda m, x: (x > 0).to(torch.float32)  # noqa: E731
        target = torch.float32
    else:
        fn = lambda m, x: x.to(target)  # noqa: E731
    return Block(f"cast({str(dtype)[6:]}->{str(target)[6:]})", fn), shape, target, diff


def _image(draw: Any, shape: Shape, dtype: torch.dtype, avoid: frozenset) -> Drawn | None:
    """Conv/pool/norm/upsample on (N, C, H, W) or unbatched (C, H, W)."""
    if len(shape) not in (3, 4) or dtype != torch.float32 or 0 in shape[-3:]:
        return None
    if len(shape) == 3 and "unbatched" in avoid:
        return None
    c, h, w = shape[-3:]
    kind = draw(st.sampled_from(["conv", "bn", "gn", "maxpool", "avgpool", "adaptive", "up"]))
    batched = len(shape) == 4
    if kind == "conv":
        k = draw(st.integers(1, 3))
        pad = draw(st.integers(0, k // 2))
        stride = draw(st.integers(1, 2))
        if h + 2 * pad < k or w + 2 * pad < k:
            return None
        out = draw(st.integers(1, 4))
        groups = draw(st.sampled_from([g for g in (1, 2) if c % g == 0 and out % g == 0]))
        mod = nn.Conv2d(c, out, k, stride=stride, padding=pad, groups=groups)
        desc = f"Conv2d({c}, {out}, {k}, stride={stride}, padding={pad}, groups={groups})"
    elif kind == "bn":
        if not batched:
            return None
        mod = nn.BatchNorm2d(c)
        with torch.no_grad():
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2)
        desc = f"BatchNorm2d({c})"
    elif kind == "gn":
        if not batched:
            return None
        mod = nn.GroupNorm(1, c, eps=EPS)
        desc = f"GroupNorm(1, {c})"
    elif kind in ("maxpool", "avgpool"):
        k = draw(st.integers(1, 2))
        if h < k or w < k:
            return None
        ceil = draw(st.booleans())
        mod = (nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(k, ceil_mode=ceil)
        desc = f"{type(mod).__name__}({k}, ceil_mode={ceil})"
    elif kind == "adaptive":
        size = draw(st.integers(1, 3))
        mod = nn.AdaptiveAvgPool2d(size)
        desc = f"AdaptiveAvgPool2d({size})"
    else:
        mode = draw(st.sampled_from(["nearest", "bilinear"]))
        if not batched:
            return None
        mod = nn.Upsample(scale_factor=2, mode=mode)
        desc = f"Upsample(2, {mode})"
    new, new_dtype = _out(shape, mod.eval(), dtype)
    return Block(desc, lambda m, x: m["m"](x), m=mod), new, new_dtype, True


def _sequence(draw: Any, shape: Shape, dtype: torch.dtype, avoid: frozenset) -> Drawn | None:
    """Attention and recurrent layers on (N, T, F) batch-first, or unbatched (T, F)."""
    if len(shape) not in (2, 3) or dtype != torch.float32 or 0 in shape[-2:]:
        return None
    f = shape[-1]
    kind = draw(st.sampled_from(["mha", "gru", "lstm", "rnn", "sdpa"]))
    if kind == "mha":
        heads = draw(st.sampled_from([h for h in (1, 2) if f % h == 0]))
        mod = nn.MultiheadAttention(f, heads, batch_first=True)
        fn = lambda m, x: m["m"](x, x, x, need_weights=False)[0]  # noqa: E731
        desc = f"MultiheadAttention({f}, {heads}, batch_first=True)"
    elif kind == "sdpa":
        causal = draw(st.booleans())
        mod = nn.Identity()
        fn = lambda m, x: nn.functional.scaled_dot_product_attention(x, x, x, is_causal=causal)  # noqa: E731
        desc = f"sdpa(is_causal={causal})"
    else:
        hidden = draw(st.integers(1, 5))
        cls = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[kind]
        bi = draw(st.booleans())
        mod = cls(f, hidden, batch_first=True, bidirectional=bi)
        fn = lambda m, x: m["m"](x)[0]  # noqa: E731
        desc = f"{cls.__name__}({f}, {hidden}, batch_first=True, bidirectional={bi})"
    new, new_dtype = _out(shape, lambda x: fn({"m": mod.eval()}, x), dtype)
    return Block(desc, fn, m=mod), new, new_dtype, True


BLOCKS = [_elementwise, _linear, _norm_last, _reduce, _movement, _cast, _image, _sequence]


@st.composite
def input_shapes(draw: Any, avoid: frozenset = frozenset()) -> tuple[Shape, bool]:
    """A shape and whether dim 0 is a batch: 0-d, unbatched, batched, size-1 and zero-size."""
    kinds = ["scalar", "vector", "seq", "image", "unbatched", "zero"]
    kind = draw(st.sampled_from([k for k in kinds if k not in avoid]))
    batch = draw(st.integers(1, 3))
    feat = st.integers(1, 5)
    if kind == "scalar":
        return (), False
    if kind == "vector":
        return (batch, draw(feat)), True
    if kind == "seq":
        return (batch, draw(st.integers(1, 4)), draw(feat)), True
    if kind == "image":
        return (
            batch,
            draw(st.integers(1, 3)),
            draw(st.integers(1, 6)),
            draw(st.integers(1, 6)),
        ), True
    if kind == "unbatched":
        rank = draw(st.integers(1, 3))
        return tuple(draw(feat) for _ in range(rank)), False
    rank = draw(st.integers(1, 3))  # a zero-size dim somewhere
    shape = [draw(feat) for _ in range(rank)]
    shape[draw(st.integers(0, rank - 1))] = 0
    return tuple(shape), rank > 1


def example(shape: Shape, dtype: torch.dtype, gen: torch.Generator, scale: float) -> torch.Tensor:
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    return torch.randint(-5, 6, shape, generator=gen, dtype=dtype)


GAPS = {
    "zero": "zero-size dims: the edges branch",
    "ort-f64-matmul": "onnxruntime 1.31 segfaults on Transpose -> Cast(float64) -> MatMul",
}
"""Bug classes the fuzzer found that work elsewhere is fixing (see test_regressions.py):
the default run avoids them, so that it guards everything else; the slow run does not."""
OPEN_GAPS = frozenset(GAPS)


@st.composite
def cases(draw: Any, max_blocks: int = 4, avoid: frozenset = OPEN_GAPS) -> Case:
    shape, batched = draw(input_shapes(avoid))
    dtype = draw(st.sampled_from([torch.float32] * 4 + [torch.float64, torch.int64]))
    steps: list[str] = []
    blocks: list[nn.Module] = []
    cur, cur_dtype, differentiable = shape, dtype, dtype.is_floating_point
    seen = {dtype}
    for _ in range(draw(st.integers(1, max_blocks))):
        factory = draw(st.sampled_from(BLOCKS))
        try:
            drawn = factory(draw, cur, cur_dtype, avoid)
        except (RuntimeError, ValueError):  # eager refuses this layer at this shape
            continue
        if drawn is None:
            continue
        block, new, new_dtype, diff = drawn
        if new == cur and new_dtype == cur_dtype and new_dtype.is_floating_point:
            if draw(st.integers(0, 3)) == 0:
                block = Residual(block)
                steps.append(f"residual({block.inner.desc})")
            else:
                steps.append(block.desc)
        else:
            steps.append(block.desc)
        blocks.append(block)
        cur, cur_dtype, differentiable = new, new_dtype, differentiable and diff
        seen.add(new_dtype)
    combine = draw(st.sampled_from([None, None, *COMBINE]))
    if combine is not None and not cur_dtype.is_floating_point and combine != "eq_count":
        combine = None
    if cur == () and "scalar" in avoid:  # the second input would be 0-d
        combine = None
    if combine is not None:
        steps.append(f"combine {combine} with y{cur}")
        differentiable = differentiable and combine in ("add", "maximum")
    floats = tuple(sorted((d for d in seen if d.is_floating_point), key=str))
    model = FuzzModel(blocks, combine, floats).eval()
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1.0, 1.0, 0.01, 100.0]))
    inputs = [example(shape, dtype, gen, scale)]
    if combine is not None:
        inputs.append(example(cur, cur_dtype, gen, scale))
    dynamic = draw(st.booleans())
    return Case(model, tuple(inputs), batched, dynamic, differentiable, steps)
