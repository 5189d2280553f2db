"""Up-sampling in the training trace at symbolic sizes.

``F.interpolate`` (``nn.Upsample``) calls the ``upsample_*.vec`` overloads, which are
CompositeImplicit C++ kernels: they compute the output size from ``input.sizes()``, reading every
dim as an int, so a symbolic batch would be fixed to its example value. During the training trace
``symbolic_upsampling`` intercepts ``F.interpolate`` (and direct ``vec``-form calls of the
``torch._C._nn`` functions) for the nearest, nearest-exact, linear, bilinear, bicubic and
trilinear modes, computes the output size as torch does (``in * s`` for a whole-number factor,
``floor(in * s)`` otherwise, or the given size) with the SymInts themselves, and calls the
``.default`` overload (``SymInt[] output_size`` and the per-dim scales the ``vec`` kernel passes
on). Other modes and antialiasing run unchanged.

The ``.default`` ops' own derivative calls ``upsample_*_backward``, whose C++ meta kernel takes
``int[]`` and fails on a symbolic input size. So the gradient is taken by an
``autograd.Function`` whose backward is ``fxonnx::upsample_grad`` (its fake kernel returns a
tensor of the input size); ``restore_backward_ops`` rewrites those nodes back to
``aten.<op>_backward.default`` with the same arguments after tracing, so the joint graph has the
ops a static trace has and the lowering table's rules apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx
from torch.overrides import TorchFunctionMode

aten = torch.ops.aten

# (F.interpolate mode, input rank) -> op name; the interpolating ones take align_corners
_NEAREST = {
    **{("nearest", 2 + n): f"upsample_nearest{n}d" for n in (1, 2, 3)},
    **{("nearest-exact", 2 + n): f"_upsample_nearest_exact{n}d" for n in (1, 2, 3)},
}
_INTERP = {
    ("linear", 3): "upsample_linear1d",
    ("bilinear", 4): "upsample_bilinear2d",
    ("bicubic", 4): "upsample_bicubic2d",
    ("trilinear", 5): "upsample_trilinear3d",
}
_OPS = {**_NEAREST, **_INTERP}
_INTERP_NAMES = frozenset(_INTERP.values())
# the torch._C._nn functions F.interpolate calls: (input, output_size, [align_corners,] factors)
_NN = {getattr(torch._C._nn, name): name for name in _OPS.values()}


@torch.library.custom_op("fxonnx::upsample_grad", mutates_args=())
def upsample_grad(
    grad_output: Tensor,
    op: str,
    output_size: Sequence[int],
    input_size: Sequence[int],
    align_corners: bool,
    scales: Sequence[float] | None,
) -> Tensor:
    """``aten.<op>_backward.default``: the gradient of ``aten.<op>.default`` w.r.t. its input."""
    return _backward(op)(
        grad_output, *_backward_args(op, output_size, input_size, align_corners, scales)
    )


@upsample_grad.register_fake
def _(grad_output, op, output_size, input_size, align_corners, scales):  # type: ignore[no-untyped-def]
    return grad_output.new_empty(list(input_size))


def _backward(op: str) -> Any:
    return getattr(aten, f"{op}_backward").default


def _backward_args(
    op: str,
    output_size: Sequence[Any],
    input_size: Sequence[Any],
    align_corners: bool,
    scales: Sequence[float] | None,
) -> list[Any]:
    """The backward op's arguments after grad_output: sizes, [align_corners,] per-dim scales."""
    per_dim = list(scales) if scales is not None else [None] * len(output_size)
    align = [align_corners] if op in _INTERP_NAMES else []
    return [list(output_size), list(input_size), *align, *per_dim]


class _Upsample(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        op: str,
        output_size: list[Any],
        align_corners: bool,
        scales: list[float] | None,
    ) -> Tensor:
        ctx.args = (op, output_size, list(x.shape), align_corners, scales)
        per_dim = list(scales) if scales is not None else [None] * len(output_size)
        align = [align_corners] if op in _INTERP_NAMES else []
        return getattr(aten, op).default(x, output_size, *align, *per_dim)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None, None]:  # type: ignore[override]
        return upsample_grad(grad, *ctx.args), None, None, None, None


def _scaled(size: Any, factor: float) -> Any:
    """torch's compute_output_size: ``in * s`` for a whole-number factor, else floor(in * s)."""
    if float(factor) == int(factor):
        return size * int(factor)
    return torch.sym_int(size * float(factor))


def _per_dim(value: Any, n: int) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def _is_size(v: Any) -> bool:
    return isinstance(v, (int, torch.SymInt)) and not isinstance(v, bool)


def _from_interpolate(
    input: Tensor,
    size: Any = None,
    scale_factor: Any = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> tuple[str, list[Any], bool, list[float] | None] | None:
    """F.interpolate's own argument handling (torch/nn/functional.py) for the modes routed here:
    (op, output size, align_corners, scale factors or None); None where F.interpolate should run
    as it is (another mode, antialias, or arguments it refuses with its own error)."""
    if not isinstance(input, Tensor) or antialias:
        return None
    op = _OPS.get((mode, input.dim()))
    if op is None or (size is None) == (scale_factor is None):
        return None
    if op not in _INTERP_NAMES and align_corners is not None:
        return None
    n = input.dim() - 2
    if size is not None:
        if recompute_scale_factor:
            return None
        out, factors = _per_dim(size, n), None
    else:
        factors = [float(f) for f in _per_dim(scale_factor, n)]
        if len(factors) != n:
            return None
        out = [_scaled(input.shape[2 + i], f) for i, f in enumerate(factors)]
        if recompute_scale_factor:
            factors = None  # torch resamples by out / in then
    if len(out) != n or not all(_is_size(s) for s in out):
        return None
    return op, out, bool(align_corners), factors


def _from_vec(op: str, args: tuple, kwargs: dict) -> tuple[str, list[Any], bool, Any] | None:
    """A direct ``torch._C._nn.<op>(input, output_size, [align_corners,] scale_factors)`` call
    (the ``vec`` overload: factors a list or None); None for the ``.default`` form."""
    names = ["input", "output_size", *(["align_corners"] if op in _INTERP_NAMES else [])]
    names.append("scale_factors")
    if len(args) > len(names) or set(kwargs) - set(names[len(args) :]):
        return None
    bound = dict(zip(names, args, strict=False)) | kwargs
    x, size, factors = bound.get("input"), bound.get("output_size"), bound.get("scale_factors")
    if not isinstance(x, Tensor) or (size is None) == (factors is None):
        return None
    n = x.dim() - 2
    if size is not None:
        out = list(size)
    elif isinstance(factors, (list, tuple)) and len(factors) == n:
        factors = [float(f) for f in factors]
        out = [_scaled(x.shape[2 + i], f) for i, f in enumerate(factors)]
    else:
        return None
    if len(out) != n or not all(_is_size(s) for s in out):
        return None
    return op, out, bool(bound.get("align_corners", False)), factors


class symbolic_upsampling(TorchFunctionMode):  # noqa: N801 (used like a function)
    """Within: F.interpolate's nearest/linear/cubic up-sampling keeps symbolic sizes and
    differentiates through ``fxonnx::upsample_grad`` (see the module docstring)."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.interpolate:
            routed = _from_interpolate(*args, **kwargs)
        elif func in _NN:
            routed = _from_vec(_NN[func], args, kwargs)
        else:
            routed = None
        if routed is None:
            return func(*args, **kwargs)
        op, out, align, factors = routed
        return _Upsample.apply(args[0] if args else kwargs["input"], op, out, align, factors)


def restore_backward_ops(gm: fx.GraphModule) -> int:
    """``fxonnx::upsample_grad`` nodes -> the ``aten.<op>_backward.default`` they stand for;
    returns how many were rewritten."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.fxonnx.upsample_grad.default:
            continue
        grad, op, out, size, align, scales = node.args
        with gm.graph.inserting_before(node):
            new = gm.graph.call_function(
                _backward(op), (grad, *_backward_args(op, out, size, align, scales))
            )
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        count += 1
    return count
