"""One spec per (torch.nn module class, documented constructor option): a factory, example
inputs at a batch size, and whether the batch is dim 0. Used by test_nn_modules.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# Classes that are not layers: containers and abstract bases (nothing of their own to lower).
EXCLUDED = {
    "Module": "abstract base of every layer",
    "Container": "deprecated container base",
    "Sequential": "container: runs its children (their own specs cover them)",
    "ModuleList": "container without forward()",
    "ModuleDict": "container without forward()",
    "ParameterList": "container of parameters without forward()",
    "ParameterDict": "container of parameters without forward()",
    "RNNBase": "abstract base of RNN/LSTM/GRU (its forward is theirs)",
    "RNNCellBase": "abstract base of RNNCell/LSTMCell/GRUCell",
}


@dataclasses.dataclass(frozen=True)
class Spec:
    cls: str
    option: str
    factory: Callable[[], nn.Module]
    inputs: Callable[[int], tuple]  # batch size -> example inputs
    compile_kw: tuple = ()  # extra fxonnx.compile arguments, as (name, value) pairs

    @property
    def id(self) -> str:
        return f"{self.cls}-{self.option}"


def _gen(b: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + b)


def rand(*shape: int) -> Callable[[int], tuple]:
    """One float input of shape (batch, *shape)."""
    return lambda b: (torch.randn(b, *shape, generator=_gen(b)),)


def ints(high: int, *shape: int) -> Callable[[int], tuple]:
    return lambda b: (torch.randint(0, high, (b, *shape), generator=_gen(b)),)


SPECS: list[Spec] = []


def spec(
    cls: str, option: str, factory: Callable[[], nn.Module], inputs: Callable, **kw: Any
) -> None:
    SPECS.append(Spec(cls, option, factory, inputs, tuple(kw.items())))


class Call(nn.Module):
    """Calls ``layer(*inputs, **kwargs)`` (kwargs baked), optionally picking outputs."""

    def __init__(self, layer: nn.Module, pick: Callable[[Any], Any] | None = None, **kwargs: Any):
        super().__init__()
        self.layer, self.pick, self.kwargs = layer, pick, kwargs

    def forward(self, *inputs: torch.Tensor) -> Any:
        out = self.layer(*inputs, **self.kwargs)
        return self.pick(out) if self.pick else out


def _bn(layer: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters."""
    if getattr(layer, "running_mean", None) is not None:
        c = layer.running_mean.numel()
        layer.running_mean.copy_(torch.randn(c))
        layer.running_var.copy_(torch.rand(c) + 0.5)
    if getattr(layer, "weight", None) is not None:
        nn.init.normal_(layer.weight)
        nn.init.normal_(layer.bias)
    return layer


def _lazy(layer: nn.Module, *shape: int) -> nn.Module:
    """Materialise a Lazy* layer with one eager call."""
    with torch.no_grad():
        layer(torch.randn(2, *shape))
    return layer


# -- convolution ---------------------------------------------------------------------------
for n in (1, 2, 3):
    sp = (7, 6, 5)[:n]
    Conv = getattr(nn, f"Conv{n}d")
    ConvT = getattr(nn, f"ConvTranspose{n}d")
    c = f"Conv{n}d"
    spec(c, "plain", lambda C=Conv: C(4, 6, 3), rand(4, *sp))
    spec(c, "stride_padding", lambda C=Conv: C(4, 6, 3, stride=2, padding=1), rand(4, *sp))
    spec(c, "dilation", lambda C=Conv: C(4, 6, 2, dilation=2), rand(4, *sp))
    spec(c, "groups", lambda C=Conv: C(4, 6, 3, groups=2), rand(4, *sp))
    spec(c, "depthwise", lambda C=Conv: C(4, 8, 3, groups=4), rand(4, *sp))
    spec(c, "bias_false", lambda C=Conv: C(4, 6, 3, bias=False), rand(4, *sp))
    spec(c, "padding_same", lambda C=Conv: C(4, 6, 4, padding="same", dilation=2), rand(4, *sp))
    spec(c, "padding_valid", lambda C=Conv: C(4, 6, 3, padding="valid"), rand(4, *sp))
    for mode in ("reflect", "replicate", "circular"):
        spec(
            c,
            f"padding_mode_{mode}",
            lambda C=Conv, m=mode: C(4, 6, 3, padding=1, padding_mode=m),
            rand(4, *sp),
        )
    spec(
        c,
        "unbatched",
        lambda C=Conv: C(4, 6, 3),
        lambda b, s=sp: (torch.randn(4, *s, generator=_gen(b)),),
    )
    spec(
        f"Lazy{c}",
        "plain",
        lambda n=n, s=sp: _lazy(getattr(nn, f"LazyConv{n}d")(6, 3), 4, *s),
        rand(4, *sp),
    )
    c = f"ConvTranspose{n}d"
    spec(c, "plain", lambda C=ConvT: C(4, 6, 3), rand(4, *sp))
    spec(
        c,
        "stride_padding_output_padding",
        lambda C=ConvT: C(4, 6, 3, stride=2, padding=1, output_padding=1),
        rand(4, *sp),
    )
    spec(c, "dilation", lambda C=ConvT: C(4, 6, 2, dilation=2), rand(4, *sp))
    spec(c, "groups", lambda C=ConvT: C(4, 6, 3, groups=2), rand(4, *sp))
    spec(c, "bias_false", lambda C=ConvT: C(4, 6, 3, bias=False), rand(4, *sp))
    spec(
        c,
        "output_size",
        lambda C=ConvT, s=sp: Call(C(4, 6, 3, stride=2), output_size=[2 * d + 2 for d in s]),
        rand(4, *sp),
    )
    spec(
        c,
        "unbatched",
        lambda C=ConvT: C(4, 6, 3),
        lambda b, s=sp: (torch.randn(4, *s, generator=_gen(b)),),
    )
    spec(
        f"Lazy{c}",
        "plain",
        lambda n=n, s=sp: _lazy(getattr(nn, f"LazyConvTranspose{n}d")(6, 3), 4, *s),
        rand(4, *sp),
    )
spec("Fold", "plain", lambda: nn.Fold((4, 5), 2), rand(8, 12))
spec("Unfold", "plain", lambda: nn.Unfold(2, dilation=1, padding=1, stride=2), rand(4, 5, 6))

# -- pooling -------------------------------------------------------------------------------
for n in (1, 2, 3):
    sp = (9, 8, 7)[:n]
    c = f"MaxPool{n}d"
    P = getattr(nn, c)
    spec(c, "plain", lambda P=P: P(2), rand(3, *sp))
    spec(c, "stride_padding", lambda P=P: P(3, 2, 1), rand(3, *sp))
    spec(c, "dilation", lambda P=P: P(2, 1, 0, dilation=2), rand(3, *sp))
    spec(c, "ceil_mode", lambda P=P: P(2, ceil_mode=True), rand(3, *sp))
    spec(c, "return_indices", lambda P=P: P(3, 2, 1, return_indices=True), rand(3, *sp))
    spec(c, "unbatched", lambda P=P: P(2), lambda b, s=sp: (torch.randn(3, *s, generator=_gen(b)),))
    c = f"AvgPool{n}d"
    P = getattr(nn, c)
    spec(c, "plain", lambda P=P: P(2), rand(3, *sp))
    spec(c, "stride_padding", lambda P=P: P(3, 2, 1), rand(3, *sp))
    spec(c, "ceil_mode", lambda P=P: P(2, ceil_mode=True), rand(3, *sp))
    spec(
        c, "count_include_pad_false", lambda P=P: P(3, 2, 1, count_include_pad=False), rand(3, *sp)
    )
    spec(
        c,
        "ceil_mode_exclude_pad",
        lambda P=P: P(3, 2, 1, ceil_mode=True, count_include_pad=False),
        rand(3, *sp),
    )
    if n > 1:
        spec(c, "divisor_override", lambda P=P: P(3, 2, 1, divisor_override=5), rand(3, *sp))
        spec(
            c,
            "divisor_override_ceil",
            lambda P=P: P(2, ceil_mode=True, divisor_override=3),
            rand(3, *sp),
        )
    spec(c, "unbatched", lambda P=P: P(2), lambda b, s=sp: (torch.randn(3, *s, generator=_gen(b)),))
    c = f"LPPool{n}d"
    P = getattr(nn, c)
    spec(c, "norm2", lambda P=P: P(2, 2), rand(3, *sp))
    spec(c, "norm1_stride", lambda P=P: P(1, 3, stride=2), rand(3, *sp))
    spec(c, "norm3_ceil_mode", lambda P=P: P(3, 2, ceil_mode=True), rand(3, *sp))
    for kind in ("Avg", "Max"):
        c = f"Adaptive{kind}Pool{n}d"
        P = getattr(nn, c)
        spec(
            c,
            "divisible",
            lambda P=P, n=n: P((3, 4, 1)[:n] if n > 1 else 3),
            rand(3, *(12, 8, 7)[:n]),
        )
        spec(c, "global", lambda P=P: P(1), rand(3, *sp))
        spec(c, "uneven", lambda P=P, n=n: P((4, 3, 5)[:n] if n > 1 else 4), rand(3, *sp))
        if n > 1:
            spec(
                c, "none_keeps_dim", lambda P=P, n=n: P((None, 2, 1)[:n]), rand(3, *(12, 8, 7)[:n])
            )
        if kind == "Max":
            spec(
                c, "return_indices", lambda P=P: P(2, return_indices=True), rand(3, *(12, 8, 6)[:n])
            )
for n in (2, 3):
    c = f"FractionalMaxPool{n}d"
    spec(
        c,
        "output_size",
        lambda n=n: getattr(nn, f"FractionalMaxPool{n}d")(2, output_size=3),
        rand(3, *(8, 8, 8)[:n]),
    )
    spec(
        c,
        "output_ratio",
        lambda n=n: getattr(nn, f"FractionalMaxPool{n}d")(2, output_ratio=0.5),
        rand(3, *(8, 8, 8)[:n]),
    )


class PoolUnpool(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.pool = getattr(nn, f"MaxPool{n}d")(2, return_indices=True)
        self.unpool = getattr(nn, f"MaxUnpool{n}d")(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unpool(*self.pool(x))


for n in (1, 2, 3):
    spec(f"MaxUnpool{n}d", "after_max_pool", lambda n=n: PoolUnpool(n), rand(3, *(8, 6, 4)[:n]))

# -- normalisation -------------------------------------------------------------------------
for n, sp in ((1, (7,)), (2, (5, 6)), (3, (3, 4, 5))):
    c = f"BatchNorm{n}d"
    B = getattr(nn, c)
    spec(c, "plain", lambda B=B: _bn(B(4)), rand(4, *sp))
    spec(c, "affine_false", lambda B=B: _bn(B(4, affine=False)), rand(4, *sp))
    spec(c, "eps_momentum", lambda B=B: _bn(B(4, eps=1e-2, momentum=None)), rand(4, *sp))
    spec(
        c,
        "track_running_stats_false",
        lambda B=B: _bn(B(4, track_running_stats=False)),
        rand(4, *sp),
    )
    spec(
        f"LazyBatchNorm{n}d",
        "plain",
        lambda n=n, s=sp: _bn(_lazy(getattr(nn, f"LazyBatchNorm{n}d")(), 4, *s)).eval(),
        rand(4, *sp),
    )
    c = f"InstanceNorm{n}d"
    I_ = getattr(nn, c)
    spec(c, "plain", lambda I_=I_: I_(4), rand(4, *sp))
    spec(c, "affine", lambda I_=I_: _bn(I_(4, affine=True)), rand(4, *sp))
    spec(c, "track_running_stats", lambda I_=I_: _bn(I_(4, track_running_stats=True)), rand(4, *sp))
    spec(
        c,
        "unbatched_affine",
        lambda I_=I_: _bn(I_(4, affine=True)),
        lambda b, s=sp: (torch.randn(4, *s, generator=_gen(b)),),
    )
    spec(
        f"LazyInstanceNorm{n}d",
        "affine",
        lambda n=n, s=sp: _bn(_lazy(getattr(nn, f"LazyInstanceNorm{n}d")(affine=True), 4, *s)),
        rand(4, *sp),
    )
spec("SyncBatchNorm", "eval", lambda: _bn(nn.SyncBatchNorm(4)), rand(4, 5, 6))
spec("LayerNorm", "plain", lambda: nn.LayerNorm(6), rand(4, 6))
spec("LayerNorm", "shape_2d", lambda: nn.LayerNorm((4, 6)), rand(4, 6))
spec(
    "LayerNorm",
    "elementwise_affine_false",
    lambda: nn.LayerNorm(6, elementwise_affine=False),
    rand(4, 6),
)
spec("LayerNorm", "bias_false", lambda: nn.LayerNorm(6, bias=False), rand(4, 6))
spec("LayerNorm", "eps", lambda: nn.LayerNorm(6, eps=1e-1), rand(4, 6))
spec("GroupNorm", "plain", lambda: _bn(nn.GroupNorm(2, 4)), rand(4, 5, 6))
spec("GroupNorm", "affine_false", lambda: nn.GroupNorm(4, 4, affine=False), rand(4, 5))
spec("GroupNorm", "one_group_eps", lambda: nn.GroupNorm(1, 4, eps=1e-2), rand(4, 3, 2, 2))
spec("RMSNorm", "plain", lambda: nn.RMSNorm(6), rand(4, 6))
spec("RMSNorm", "eps_shape_2d", lambda: nn.RMSNorm((4, 6), eps=1e-3), rand(4, 6))
spec(
    "RMSNorm",
    "elementwise_affine_false",
    lambda: nn.RMSNorm(6, elementwise_affine=False),
    rand(4, 6),
)
spec("LocalResponseNorm", "plain", lambda: nn.LocalResponseNorm(3), rand(5, 4, 6))
spec(
    "LocalResponseNorm",
    "alpha_beta_k",
    lambda: nn.LocalResponseNorm(2, alpha=1e-2, beta=0.5, k=2.0),
    rand(5, 6),
)
spec(
    "CrossMapLRN2d",
    "plain",
    lambda: nn.CrossMapLRN2d(3, alpha=1e-2, beta=0.75, k=1.0),
    rand(5, 4, 6),
)

# -- activations ---------------------------------------------------------------------------
ACTIVATIONS: dict[str, dict[str, Callable[[], nn.Module]]] = {
    "ReLU": {"plain": nn.ReLU, "inplace": lambda: nn.ReLU(inplace=True)},
    "ReLU6": {"plain": nn.ReLU6, "inplace": lambda: nn.ReLU6(True)},
    "LeakyReLU": {
        "slope": lambda: nn.LeakyReLU(0.2),
        "inplace": lambda: nn.LeakyReLU(inplace=True),
    },
    "PReLU": {"shared": lambda: nn.PReLU(1, 0.3), "per_channel": lambda: nn.PReLU(4, 0.1)},
    "RReLU": {"eval": lambda: nn.RReLU(0.1, 0.4)},
    "ELU": {"alpha": lambda: nn.ELU(0.7), "inplace": lambda: nn.ELU(inplace=True)},
    "CELU": {"alpha": lambda: nn.CELU(1.5)},
    "SELU": {"plain": nn.SELU},
    "GELU": {"none": nn.GELU, "tanh": lambda: nn.GELU("tanh")},
    "SiLU": {"plain": nn.SiLU},
    "Mish": {"plain": nn.Mish},
    "Hardswish": {"plain": nn.Hardswish},
    "Hardsigmoid": {"plain": nn.Hardsigmoid},
    "Hardtanh": {"bounds": lambda: nn.Hardtanh(-0.5, 2.0)},
    "Hardshrink": {"lambd": lambda: nn.Hardshrink(0.3)},
    "Softshrink": {"lambd": lambda: nn.Softshrink(0.2)},
    "Softplus": {"beta_threshold": lambda: nn.Softplus(2.0, 1.0), "plain": nn.Softplus},
    "Softsign": {"plain": nn.Softsign},
    "Tanh": {"plain": nn.Tanh},
    "Tanhshrink": {"plain": nn.Tanhshrink},
    "Sigmoid": {"plain": nn.Sigmoid},
    "LogSigmoid": {"plain": nn.LogSigmoid},
    "Threshold": {"plain": lambda: nn.Threshold(0.3, -2.0)},
    "GLU": {"last": nn.GLU, "dim1": lambda: nn.GLU(1)},
    "Softmax": {"dim1": lambda: nn.Softmax(1), "last": lambda: nn.Softmax(-1)},
    "Softmin": {"last": lambda: nn.Softmin(-1)},
    "LogSoftmax": {"dim1": lambda: nn.LogSoftmax(1)},
    "Softmax2d": {"plain": nn.Softmax2d},
}
for c, options in ACTIVATIONS.items():
    for option, factory in options.items():
        spec(c, option, factory, rand(4, 3, 6))
    if c not in ("GLU", "Softmax2d", "PReLU", "Softmax", "LogSoftmax"):  # those need a dim
        spec(c, "scalar_input", next(iter(options.values())), lambda b: (torch.tensor(0.5 + b),))

# -- dropout, structure --------------------------------------------------------------------
for c in ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"):
    D = getattr(nn, c)
    sp = (4, 3) if c == "Dropout1d" else (4, 3, 5, 2)
    spec(c, "eval", lambda D=D: D(0.3), rand(*sp))
    spec(c, "inplace_eval", lambda D=D: D(0.5, inplace=True), rand(*sp))
spec("Identity", "plain", nn.Identity, rand(4, 6))
spec("Flatten", "plain", nn.Flatten, rand(4, 5, 6))
spec("Flatten", "start_end", lambda: nn.Flatten(0, 1), rand(4, 5, 6))
spec("Unflatten", "plain", lambda: nn.Unflatten(1, (2, 3)), rand(6, 5))
spec("Unflatten", "minus_one", lambda: nn.Unflatten(-1, (-1, 2)), rand(3, 6))
spec("PixelShuffle", "plain", lambda: nn.PixelShuffle(2), rand(8, 3, 4))
spec("PixelUnshuffle", "plain", lambda: nn.PixelUnshuffle(2), rand(2, 4, 6))
spec("ChannelShuffle", "plain", lambda: nn.ChannelShuffle(2), rand(4, 3, 2))
spec("Linear", "plain", lambda: nn.Linear(6, 3), rand(6))
spec("Linear", "bias_false_3d", lambda: nn.Linear(6, 3, bias=False), rand(4, 6))
spec("Linear", "unbatched", lambda: nn.Linear(6, 3), lambda b: (torch.randn(6, generator=_gen(b)),))
spec("LazyLinear", "plain", lambda: _lazy(nn.LazyLinear(3), 6), rand(6))


class Two(nn.Module):
    """Splits the input in two along ``dim`` for two-input layers."""

    def __init__(self, layer: nn.Module, dim: int = 1) -> None:
        super().__init__()
        self.layer, self.dim = layer, dim

    def forward(self, x: torch.Tensor) -> Any:
        return self.layer(*x.chunk(2, self.dim))


spec("Bilinear", "plain", lambda: Two(nn.Bilinear(3, 3, 5)), rand(6))
spec("Bilinear", "bias_false_3d", lambda: Two(nn.Bilinear(2, 2, 4, bias=False), 2), rand(3, 4))
spec("CosineSimilarity", "dim1", lambda: Two(nn.CosineSimilarity(1)), rand(8, 5))
spec("CosineSimilarity", "last_eps", lambda: Two(nn.CosineSimilarity(-1, 1e-3), 2), rand(3, 8))
spec("PairwiseDistance", "plain", lambda: Two(nn.PairwiseDistance()), rand(8))
spec(
    "PairwiseDistance",
    "p1_keepdim",
    lambda: Two(nn.PairwiseDistance(1.0, keepdim=True), 2),
    rand(3, 8),
)
spec(
    "PairwiseDistance",
    "p_inf_eps",
    lambda: Two(nn.PairwiseDistance(float("inf"), eps=1e-3)),
    rand(8),
)

# -- padding, upsampling -------------------------------------------------------------------
for n in (1, 2, 3):
    sp = (6, 5, 4)[:n]
    asym = (2, 1, 0, 1, 1, 0)[: 2 * n]
    for kind in ("Zero", "Constant", "Reflection", "Replication", "Circular"):
        c = f"{kind}Pad{n}d"
        P = getattr(nn, c)
        extra = (0.5,) if kind == "Constant" else ()
        spec(c, "int", lambda P=P, e=extra: P(1, *e), rand(3, *sp))
        spec(c, "asymmetric", lambda P=P, e=extra, a=asym: P(a, *e), rand(3, *sp))
        if kind in ("Zero", "Constant", "Replication", "Circular"):
            neg = tuple(-1 if i == 0 else p for i, p in enumerate(asym))
            spec(c, "negative", lambda P=P, e=extra, a=neg: P(a, *e), rand(3, *sp))
        spec(
            c,
            "unbatched",
            lambda P=P, e=extra: P(1, *e),
            lambda b, s=sp: (torch.randn(3, *s, generator=_gen(b)),),
        )
spec("Upsample", "nearest_scale", lambda: nn.Upsample(scale_factor=2), rand(3, 4, 5))
spec("Upsample", "nearest_size", lambda: nn.Upsample(size=(7, 3)), rand(3, 4, 5))
spec(
    "Upsample",
    "nearest_exact",
    lambda: nn.Upsample(scale_factor=1.5, mode="nearest-exact"),
    rand(3, 4, 6),
)
spec(
    "Upsample",
    "linear_align",
    lambda: nn.Upsample(scale_factor=2, mode="linear", align_corners=True),
    rand(3, 5),
)
spec("Upsample", "linear", lambda: nn.Upsample(size=7, mode="linear"), rand(3, 5))
spec(
    "Upsample",
    "bilinear",
    lambda: nn.Upsample(scale_factor=(2, 1.5), mode="bilinear"),
    rand(3, 4, 6),
)
spec(
    "Upsample",
    "bilinear_align",
    lambda: nn.Upsample(size=(5, 9), mode="bilinear", align_corners=True),
    rand(3, 4, 6),
)
spec("Upsample", "bicubic", lambda: nn.Upsample(scale_factor=2, mode="bicubic"), rand(3, 4, 6))
spec(
    "Upsample",
    "bicubic_align",
    lambda: nn.Upsample(size=(5, 9), mode="bicubic", align_corners=True),
    rand(3, 4, 6),
)
spec(
    "Upsample", "trilinear", lambda: nn.Upsample(scale_factor=2, mode="trilinear"), rand(2, 3, 4, 2)
)
spec(
    "Upsample",
    "recompute_scale_factor",
    lambda: nn.Upsample(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True),
    rand(3, 4, 6),
)
spec("UpsamplingNearest2d", "scale", lambda: nn.UpsamplingNearest2d(scale_factor=3), rand(3, 4, 5))
spec("UpsamplingBilinear2d", "size", lambda: nn.UpsamplingBilinear2d(size=(7, 3)), rand(3, 4, 5))

# -- embeddings ----------------------------------------------------------------------------
spec("Embedding", "plain", lambda: nn.Embedding(10, 4), ints(10, 5))
spec("Embedding", "padding_idx", lambda: nn.Embedding(10, 4, padding_idx=0), ints(10, 5))
spec("Embedding", "max_norm", lambda: nn.Embedding(10, 4, max_norm=1.0), ints(10, 5))
spec(
    "Embedding",
    "scale_grad_sparse",
    lambda: nn.Embedding(10, 4, scale_grad_by_freq=True, sparse=True),
    ints(10, 5),
)
spec("EmbeddingBag", "mean_2d", lambda: nn.EmbeddingBag(10, 4), ints(10, 5))
spec("EmbeddingBag", "sum_2d", lambda: nn.EmbeddingBag(10, 4, mode="sum"), ints(10, 5))
spec("EmbeddingBag", "max_2d", lambda: nn.EmbeddingBag(10, 4, mode="max"), ints(10, 5))
spec("EmbeddingBag", "padding_idx", lambda: nn.EmbeddingBag(10, 4, padding_idx=2), ints(10, 5))
spec(
    "EmbeddingBag",
    "per_sample_weights",
    lambda: _Weighted(),
    lambda b: (
        torch.randint(0, 10, (b, 5), generator=_gen(b)),
        torch.rand(b, 5, generator=_gen(b)),
    ),
)


class _Weighted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, mode="sum")

    def forward(self, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.bag(idx, per_sample_weights=w)


class Offsets(nn.Module):
    """EmbeddingBag over 8 flat indices with fixed offsets (with include_last_offset the last
    one is the number of indices, as documented)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, **kw)
        last = kw.get("include_last_offset", False)
        self.register_buffer("offsets", torch.tensor([0, 2, 3, 8] if last else [0, 2, 3, 6]))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.bag(idx.flatten(), self.offsets)


spec(
    "EmbeddingBag",
    "offsets",
    lambda: Offsets(),
    lambda b: (torch.randint(0, 10, (8,), generator=_gen(b)),),
)
spec(
    "EmbeddingBag",
    "offsets_include_last_max",
    lambda: Offsets(include_last_offset=True, mode="max"),
    lambda b: (torch.randint(0, 10, (8,), generator=_gen(b)),),
)

# -- recurrent -----------------------------------------------------------------------------
SEQ7 = lambda b: (torch.randn(7, b, 6, generator=_gen(b)),)  # noqa: E731 - (seq, batch, feature)
for c in ("RNN", "LSTM", "GRU"):
    R = getattr(nn, c)
    # seq-first layers name their batch dim: "auto" would take dim 0, the sequence
    spec(c, "plain", lambda R=R: Call(R(6, 5), lambda o: o[0]), SEQ7, batch_dims=(1,))
    spec(
        c,
        "num_layers_dropout",
        lambda R=R: Call(R(6, 5, num_layers=2, dropout=0.3), lambda o: o[0]),
        SEQ7,
        batch_dims=(1,),
    )
    spec(
        c,
        "bidirectional_batch_first",
        lambda R=R: Call(R(6, 5, batch_first=True, bidirectional=True)),
        rand(7, 6),
    )
    spec(
        c,
        "bias_false",
        lambda R=R: Call(R(6, 5, bias=False), lambda o: o[0]),
        SEQ7,
        batch_dims=(1,),
    )
    spec(
        c,
        "initial_state",
        lambda R=R: Call(R(6, 5, num_layers=2, batch_first=True)),
        lambda b, c=c: (
            torch.randn(b, 7, 6, generator=_gen(b)),
            (torch.randn(2, b, 5, generator=_gen(b)), torch.rand(2, b, 5, generator=_gen(b)))
            if c == "LSTM"
            else torch.randn(2, b, 5, generator=_gen(b)),
        ),
    )
    # unbatched: dim 0 is the sequence; static, since tracing unrolls it (FIELD-NOTES)
    spec(
        c,
        "unbatched",
        lambda R=R: Call(R(6, 5), lambda o: o[0]),
        lambda b: (torch.randn(7, 6, generator=_gen(b)),),
        dynamic=False,
    )
spec(
    "RNN",
    "relu",
    lambda: Call(nn.RNN(6, 5, nonlinearity="relu", batch_first=True), lambda o: o[0]),
    rand(7, 6),
)
spec("LSTM", "proj_size", lambda: Call(nn.LSTM(6, 5, proj_size=3, batch_first=True)), rand(7, 6))
for c in ("RNNCell", "LSTMCell", "GRUCell"):
    R = getattr(nn, c)
    spec(c, "plain", lambda R=R: R(6, 5), rand(6))
    spec(c, "bias_false", lambda R=R: R(6, 5, bias=False), rand(6))
spec("RNNCell", "relu", lambda: nn.RNNCell(6, 5, nonlinearity="relu"), rand(6))

# -- attention, transformers ---------------------------------------------------------------


class SelfAttn(nn.Module):
    """``mha(x, x, x, ...)`` (or with separately projected key/value for kdim/vdim)."""

    def __init__(self, kdim: int | None = None, mask: str = "", **kw: Any) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(
            8,
            2,
            kdim=kdim,
            vdim=kdim,
            **{k: v for k, v in kw.items() if k not in ("need_weights", "average_attn_weights")},
        )
        self.call_kw = {
            k: v for k, v in kw.items() if k in ("need_weights", "average_attn_weights")
        }
        self.kv = nn.Linear(8, kdim) if kdim else None
        self.mask = mask

    def forward(self, x: torch.Tensor) -> Any:
        kv = self.kv(x) if self.kv is not None else x
        seq = x.shape[0 if not self.mha.batch_first else 1] if x.dim() == 3 else x.shape[0]
        kw = dict(self.call_kw)
        if self.mask == "causal":
            kw["attn_mask"] = torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1)
        if self.mask == "float":
            kw["attn_mask"] = torch.triu(torch.full((seq, seq), -1e4), 1)
        if self.mask == "key_padding":
            kw["key_padding_mask"] = (
                x[..., 0] > 1.0 if self.mha.batch_first else (x[..., 0] > 1.0).T
            )
        return self.mha(x, kv, kv, **kw)


SEQ_FIRST = lambda b: (torch.randn(5, b, 8, generator=_gen(b)),)  # noqa: E731
spec("MultiheadAttention", "plain", lambda: SelfAttn(), SEQ_FIRST, batch_dims=(1,))
spec("MultiheadAttention", "batch_first", lambda: SelfAttn(batch_first=True), rand(5, 8))
spec(
    "MultiheadAttention",
    "need_weights_false",
    lambda: SelfAttn(batch_first=True, need_weights=False),
    rand(5, 8),
)
spec(
    "MultiheadAttention",
    "per_head_weights",
    lambda: SelfAttn(batch_first=True, average_attn_weights=False),
    rand(5, 8),
)
spec("MultiheadAttention", "bias_false", lambda: SelfAttn(bias=False), SEQ_FIRST, batch_dims=(1,))
spec(
    "MultiheadAttention",
    "add_bias_kv",
    lambda: SelfAttn(add_bias_kv=True),
    SEQ_FIRST,
    batch_dims=(1,),
)
spec(
    "MultiheadAttention",
    "add_zero_attn",
    lambda: SelfAttn(add_zero_attn=True),
    SEQ_FIRST,
    batch_dims=(1,),
)
spec("MultiheadAttention", "kdim_vdim", lambda: SelfAttn(kdim=6), SEQ_FIRST, batch_dims=(1,))
spec(
    "MultiheadAttention",
    "bool_attn_mask",
    lambda: SelfAttn(mask="causal", batch_first=True),
    rand(5, 8),
)
spec(
    "MultiheadAttention",
    "float_attn_mask",
    lambda: SelfAttn(mask="float"),
    SEQ_FIRST,
    batch_dims=(1,),
)
spec(
    "MultiheadAttention",
    "key_padding_mask",
    lambda: SelfAttn(mask="key_padding", batch_first=True),
    rand(5, 8),
)
spec(
    "MultiheadAttention",
    "unbatched",
    lambda: SelfAttn(),
    lambda b: (torch.randn(4 + b, 8, generator=_gen(b)),),
)


def _enc_layer(**kw: Any) -> nn.Module:
    return nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, **kw)


def _dec_layer(**kw: Any) -> nn.Module:
    return nn.TransformerDecoderLayer(8, 2, 16, dropout=0.1, **kw)


class Causal(nn.Module):
    """An encoder (layer) with a causal float mask and/or a key padding mask."""

    def __init__(self, layer: nn.Module, causal: bool = True, padding: bool = False) -> None:
        super().__init__()
        self.layer, self.causal, self.padding = layer, causal, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kw: dict[str, Any] = {}
        if self.causal:
            kw["mask"] = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            kw["is_causal"] = True
        if self.padding:
            kw["src_key_padding_mask"] = x[..., 0] > 1.0
        return (
            self.layer(x, **kw)
            if isinstance(self.layer, nn.TransformerEncoder)
            else self.layer(
                x,
                src_mask=kw.get("mask"),
                is_causal=kw.get("is_causal", False),
                src_key_padding_mask=kw.get("src_key_padding_mask"),
            )
        )


class Seq2Seq(nn.Module):
    """Decoder (layer) or full Transformer fed two halves of the sequence dim."""

    def __init__(self, layer: nn.Module, causal: bool = False) -> None:
        super().__init__()
        self.layer, self.causal = layer, causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        src, tgt = x[:, :4], x[:, 4:]
        kw: dict[str, Any] = {}
        if self.causal:
            kw["tgt_mask"] = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
            kw["tgt_is_causal"] = True
        return (
            self.layer(tgt, src, **kw)
            if not isinstance(self.layer, nn.Transformer)
            else self.layer(src, tgt, **kw)
        )


BT = rand(6, 8)
spec("TransformerEncoderLayer", "plain", lambda: _enc_layer(batch_first=True), BT)
spec(
    "TransformerEncoderLayer",
    "norm_first_gelu",
    lambda: _enc_layer(batch_first=True, norm_first=True, activation="gelu"),
    BT,
)
spec("TransformerEncoderLayer", "bias_false", lambda: _enc_layer(batch_first=True, bias=False), BT)
spec(
    "TransformerEncoderLayer",
    "seq_first",
    lambda: _enc_layer(),
    lambda b: (torch.randn(6, b, 8, generator=_gen(b)),),
    batch_dims=(1,),
)
spec("TransformerEncoderLayer", "causal_mask", lambda: Causal(_enc_layer(batch_first=True)), BT)
spec(
    "TransformerEncoderLayer",
    "key_padding_mask",
    lambda: Causal(_enc_layer(batch_first=True), False, True),
    BT,
)
spec(
    "TransformerEncoder",
    "plain",
    lambda: nn.TransformerEncoder(_enc_layer(batch_first=True), 2, enable_nested_tensor=False),
    BT,
)
spec(
    "TransformerEncoder",
    "final_norm",
    lambda: nn.TransformerEncoder(
        _enc_layer(batch_first=True, norm_first=True),
        2,
        norm=nn.LayerNorm(8),
        enable_nested_tensor=False,
    ),
    BT,
)
spec(
    "TransformerEncoder",
    "causal_mask",
    lambda: Causal(
        nn.TransformerEncoder(_enc_layer(batch_first=True), 2, enable_nested_tensor=False)
    ),
    BT,
)
spec(
    "TransformerEncoder",
    "key_padding_mask_nested",
    lambda: Causal(nn.TransformerEncoder(_enc_layer(batch_first=True), 2), False, True),
    BT,
)
spec("TransformerDecoderLayer", "plain", lambda: Seq2Seq(_dec_layer(batch_first=True)), BT)
spec(
    "TransformerDecoderLayer",
    "norm_first_causal",
    lambda: Seq2Seq(_dec_layer(batch_first=True, norm_first=True), True),
    BT,
)
spec(
    "TransformerDecoder",
    "plain",
    lambda: Seq2Seq(nn.TransformerDecoder(_dec_layer(batch_first=True), 2)),
    BT,
)
spec(
    "TransformerDecoder",
    "causal_final_norm",
    lambda: Seq2Seq(
        nn.TransformerDecoder(_dec_layer(batch_first=True), 2, norm=nn.LayerNorm(8)), True
    ),
    BT,
)
spec("Transformer", "plain", lambda: Seq2Seq(nn.Transformer(8, 2, 1, 1, 16, batch_first=True)), BT)
spec(
    "Transformer",
    "causal_norm_first",
    lambda: Seq2Seq(nn.Transformer(8, 2, 2, 1, 16, batch_first=True, norm_first=True), True),
    BT,
)

# -- losses (inputs, targets) --------------------------------------------------------------


def pair(make_target: Callable[[int], torch.Tensor], *shape: int) -> Callable[[int], tuple]:
    return lambda b: (torch.randn(b, *shape, generator=_gen(b)), make_target(b))


def cls_target(c: int) -> Callable[[int], torch.Tensor]:
    return lambda b: torch.randint(0, c, (b,), generator=_gen(b))


def prob(*shape: int) -> Callable[[int], torch.Tensor]:
    return lambda b: torch.rand(b, *shape, generator=_gen(b))


class Sigmoided(nn.Module):
    """BCELoss wants probabilities: sigmoid the input first."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(torch.sigmoid(x), y)


class LogSoftmaxed(nn.Module):
    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(torch.log_softmax(x, -1), y)


REDUCTIONS = ("mean", "sum", "none")
for r in REDUCTIONS:
    spec(
        "CrossEntropyLoss", r, lambda r=r: nn.CrossEntropyLoss(reduction=r), pair(cls_target(5), 5)
    )
    spec("NLLLoss", r, lambda r=r: LogSoftmaxed(nn.NLLLoss(reduction=r)), pair(cls_target(5), 5))
    spec("MSELoss", r, lambda r=r: nn.MSELoss(reduction=r), pair(prob(4), 4))
    spec("L1Loss", r, lambda r=r: nn.L1Loss(reduction=r), pair(prob(4), 4))
    spec("SmoothL1Loss", r, lambda r=r: nn.SmoothL1Loss(reduction=r, beta=0.5), pair(prob(4), 4))
    spec("HuberLoss", r, lambda r=r: nn.HuberLoss(reduction=r, delta=0.7), pair(prob(4), 4))
    spec("BCELoss", r, lambda r=r: Sigmoided(nn.BCELoss(reduction=r)), pair(prob(4), 4))
    spec("BCEWithLogitsLoss", r, lambda r=r: nn.BCEWithLogitsLoss(reduction=r), pair(prob(4), 4))
    spec(
        "KLDivLoss",
        r,
        lambda r=r: LogSoftmaxed(nn.KLDivLoss(reduction=r if r != "mean" else "batchmean")),
        pair(prob(4), 4),
    )
    spec(
        "SoftMarginLoss",
        r,
        lambda r=r: nn.SoftMarginLoss(reduction=r),
        pair(lambda b: torch.randint(0, 2, (b, 4), generator=_gen(b)) * 2.0 - 1, 4),
    )
    spec(
        "MultiLabelSoftMarginLoss",
        r,
        lambda r=r: nn.MultiLabelSoftMarginLoss(reduction=r),
        pair(lambda b: torch.randint(0, 2, (b, 4), generator=_gen(b)).float(), 4),
    )
    spec("MultiMarginLoss", r, lambda r=r: nn.MultiMarginLoss(reduction=r), pair(cls_target(5), 5))
    spec(
        "MultiLabelMarginLoss",
        r,
        lambda r=r: nn.MultiLabelMarginLoss(reduction=r),
        pair(lambda b: torch.randint(-1, 4, (b, 4), generator=_gen(b)), 4),
    )
    spec("PoissonNLLLoss", r, lambda r=r: nn.PoissonNLLLoss(reduction=r), pair(prob(4), 4))
    spec(
        "HingeEmbeddingLoss",
        r,
        lambda r=r: nn.HingeEmbeddingLoss(reduction=r),
        pair(lambda b: torch.randint(0, 2, (b, 4), generator=_gen(b)) * 2.0 - 1, 4),
    )
    spec("GaussianNLLLoss", r, lambda r=r: _Gauss(r), rand(8))
spec(
    "CrossEntropyLoss",
    "label_smoothing",
    lambda: nn.CrossEntropyLoss(label_smoothing=0.2),
    pair(cls_target(5), 5),
)
spec(
    "CrossEntropyLoss",
    "weight_ignore_index",
    lambda: nn.CrossEntropyLoss(weight=torch.rand(5) + 0.5, ignore_index=1),
    pair(cls_target(5), 5),
)
spec(
    "CrossEntropyLoss",
    "probability_targets",
    lambda: nn.CrossEntropyLoss(),
    pair(lambda b: torch.softmax(torch.randn(b, 5, generator=_gen(b)), -1), 5),
)
spec(
    "NLLLoss",
    "weight_ignore_index",
    lambda: LogSoftmaxed(nn.NLLLoss(weight=torch.rand(5) + 0.5, ignore_index=2)),
    pair(cls_target(5), 5),
)
spec(
    "NLLLoss2d",
    "plain",
    lambda: nn.NLLLoss2d(),
    lambda b: (
        torch.log_softmax(torch.randn(b, 3, 4, 5, generator=_gen(b)), 1),
        torch.randint(0, 3, (b, 4, 5), generator=_gen(b)),
    ),
)
spec(
    "BCEWithLogitsLoss",
    "pos_weight",
    lambda: nn.BCEWithLogitsLoss(pos_weight=torch.rand(4) + 0.5),
    pair(prob(4), 4),
)
spec(
    "KLDivLoss",
    "log_target",
    lambda: LogSoftmaxed(nn.KLDivLoss(reduction="batchmean", log_target=True)),
    pair(lambda b: torch.log(torch.rand(b, 4, generator=_gen(b))), 4),
)
spec(
    "PoissonNLLLoss",
    "log_input_false_full",
    lambda: nn.PoissonNLLLoss(log_input=False, full=True),
    lambda b: (torch.rand(b, 4, generator=_gen(b)) + 0.1, torch.rand(b, 4, generator=_gen(b)) * 3),
)


class _Gauss(nn.Module):
    def __init__(self, reduction: str) -> None:
        super().__init__()
        self.loss = nn.GaussianNLLLoss(reduction=reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, target = x.chunk(2, 1)
        return self.loss(mean, target, torch.ones_like(mean) * 0.5)


class Triplet(nn.Module):
    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.loss(*x.chunk(3, 1))


class Ranked(nn.Module):
    """Losses taking (x1, x2, y) with y in {-1, 1}."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, 1)
        if isinstance(self.loss, nn.MarginRankingLoss):
            a, b = a.sum(1), b.sum(1)
        return self.loss(a, b, y)


SIGNS = lambda b: torch.randint(0, 2, (b,), generator=_gen(b)) * 2.0 - 1  # noqa: E731
for r in REDUCTIONS:
    spec("TripletMarginLoss", r, lambda r=r: Triplet(nn.TripletMarginLoss(reduction=r)), rand(12))
    spec(
        "TripletMarginWithDistanceLoss",
        r,
        lambda r=r: Triplet(nn.TripletMarginWithDistanceLoss(reduction=r)),
        rand(12),
    )
    spec(
        "CosineEmbeddingLoss",
        r,
        lambda r=r: Ranked(nn.CosineEmbeddingLoss(margin=0.1, reduction=r)),
        pair(SIGNS, 8),
    )
    spec(
        "MarginRankingLoss",
        r,
        lambda r=r: Ranked(nn.MarginRankingLoss(margin=0.2, reduction=r)),
        pair(SIGNS, 8),
    )
spec(
    "TripletMarginLoss",
    "p1_swap",
    lambda: Triplet(nn.TripletMarginLoss(p=1.0, swap=True)),
    rand(12),
)


class CTC(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.loss = nn.CTCLoss()

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        lp = torch.log_softmax(x, -1)
        return self.loss(lp, target, torch.full((n,), 6), torch.full((n,), 3))


spec(
    "CTCLoss",
    "plain",
    CTC,
    lambda b: (
        torch.randn(6, b, 5, generator=_gen(b)),
        torch.randint(1, 5, (b, 3), generator=_gen(b)),
    ),
)
spec("AdaptiveLogSoftmaxWithLoss", "log_prob", lambda: _ALS(), rand(8))


class _ALS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.als = nn.AdaptiveLogSoftmaxWithLoss(8, 10, [4, 8], div_value=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.als.log_prob(x)


class _LCE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.loss = nn.LinearCrossEntropyLoss(8, 5)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(x, y)


spec("LinearCrossEntropyLoss", "plain", _LCE, pair(cls_target(5), 8))
