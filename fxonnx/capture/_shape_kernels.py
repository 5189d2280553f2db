"""Shape-only fake kernels for the ops that dominate a symbolic trace.

With symbolic sizes, fake tensors compute an op's output metadata by running torch's Python
reference or decomposition on SymInts (``_native_batch_norm_legit_no_training``: 8 ms a call,
``hardtanh_``: 13 ms, ``addmm``: 4 ms), because the C++ meta kernels take ints only. That made a
symbolic capture 3x a static one. For the ops below the output's shape, dtype and layout follow
from the inputs' in one line; ``shape_kernel_mode`` answers those directly and hands everything
else (other dtypes, layouts it cannot name, mismatched operands) to torch unchanged.
``lean_node_meta`` drops the other big cost: make_fx's best-effort ``tensor_meta`` asks every
output whether it is contiguous in three memory formats, symbolically; nothing here reads it.
``tests/capture/test_shape_kernels.py`` checks each kernel against torch's own result.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, in_kernel_invocation_manager
from torch.fx.experimental import proxy_tensor

aten = torch.ops.aten
_FLOATS = (torch.float32, torch.float64)  # compute dtype == storage dtype: no promotion rules
_Kernel = Callable[[FakeTensorMode, Sequence[Any], dict], Any]


def shape_kernel_mode(**options: Any) -> FakeTensorMode:
    """A FakeTensorMode that answers the hot ops of symbolic traces without torch's refs.

    The hook is bound on the instance, not put in a subclass: torch's higher-order ops
    (``torch.cond``) find their fake rule by the mode's exact type."""
    mode = FakeTensorMode(**options)
    torch_dispatch = mode._dispatch_impl

    def dispatch(func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        kernel = _KERNELS.get(func)
        if kernel is not None:
            out = kernel(mode, args, kwargs)
            if out is not NotImplemented:
                return out
        return torch_dispatch(func, types, args, kwargs)

    mode._dispatch_impl = dispatch  # type: ignore[method-assign]
    return mode


def _symbolic(mode: FakeTensorMode, x: Any) -> bool:
    """A fake tensor of ``mode`` with symbolic sizes: where the view kernels apply."""
    return isinstance(x, FakeTensor) and x.fake_mode is mode and x._has_symbolic_sizes_strides


def _ours(mode: FakeTensorMode, x: Any) -> bool:
    """A float32/64 fake tensor of ``mode`` with symbolic sizes: where the kernels that
    compute values apply."""
    return _symbolic(mode, x) and x.dtype in _FLOATS


def _empty(
    mode: FakeTensorMode,
    like: FakeTensor,
    shape: Sequence[Any],
    fmt: Any,
    dtype: torch.dtype | None = None,
) -> FakeTensor:
    """A new fake tensor on ``like``'s device, of ``like``'s dtype unless ``dtype`` is given."""
    meta = torch.empty(shape, dtype=dtype or like.dtype, device="meta", memory_format=fmt)
    return FakeTensor(mode, meta, device=like.device)


def _layout(x: FakeTensor) -> Any:
    """The memory format ``x`` has by construction (its strides are the products of its sizes
    in that order, compared as expressions), or None. torch's own check asks the ShapeEnv,
    whose cost grows with the guards a trace has collected (2 ms a call late in unet_small)."""
    shape, stride = x.shape, x.stride()
    if _dense_in_order(shape, stride, range(x.dim() - 1, -1, -1)):
        return torch.contiguous_format
    if x.dim() == 4 and _dense_in_order(shape, stride, (1, 3, 2, 0)):
        return torch.channels_last
    return None


def _dense_in_order(shape: Sequence[Any], stride: Sequence[Any], order: Any) -> bool:
    """Each dim's stride is the product of the sizes of the dims before it in ``order``
    (innermost first); dims of size 1 may have any stride, as torch's contiguity allows."""
    expected: Any = 1
    for d in order:
        if _is_one(shape[d]):
            continue
        if not _same_size(stride[d], expected):
            return False
        expected = expected * shape[d]
    return True


def _like(mode: FakeTensorMode, x: FakeTensor) -> Any:
    """What a pointwise op of ``x`` alone returns: its shape, dtype and layout."""
    fmt = _layout(x)
    return NotImplemented if fmt is None else _empty(mode, x, x.shape, fmt)


def _scalars(values: Sequence[Any]) -> bool:
    return all(not isinstance(v, torch.Tensor) for v in values)


def _pointwise(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    x = args[0]
    if not _ours(mode, x) or not _scalars([*args[1:], *kwargs.values()]):
        return NotImplemented
    return _like(mode, x)


def _inplace(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    x = args[0]
    if not _ours(mode, x) or not _scalars([*args[1:], *kwargs.values()]):
        return NotImplemented
    return x


def _softmax(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    x, _dim, half_to_float = args
    if half_to_float or not _ours(mode, x) or _layout(x) is not torch.contiguous_format:
        return NotImplemented
    return _empty(mode, x, x.shape, torch.contiguous_format)


def _clone(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    fmt = kwargs.get("memory_format")
    if len(args) != 1 or fmt not in (None, torch.preserve_format, torch.contiguous_format):
        return NotImplemented
    x = args[0]
    if fmt is torch.contiguous_format and _ours(mode, x):  # .contiguous()
        return _empty(mode, x, x.shape, torch.contiguous_format)
    return _pointwise(mode, args, {})


def _same_size(p: Any, q: Any) -> bool:
    """Sizes equal by construction (the same int, or the same expression): never guards."""
    if isinstance(p, torch.SymInt) and isinstance(q, torch.SymInt):
        return p.node.expr == q.node.expr  # structural sympy equality, not a guard
    return type(p) is int and type(q) is int and p == q


def _is_one(size: Any) -> bool:
    return type(size) is int and size == 1


def _dominant(a: FakeTensor, b: Any) -> bool:
    """``b`` broadcasts to ``a``'s shape without changing it: a Python number, or a tensor of
    no higher rank whose every dim equals ``a``'s (by construction) or is a static 1."""
    if type(b) in (int, float):
        return True
    if not isinstance(b, FakeTensor) or b.dim() > a.dim():
        return False
    tail = a.shape[a.dim() - b.dim() :]
    return all(_is_one(q) or _same_size(p, q) for p, q in zip(tail, b.shape, strict=True))


def _binary(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    """add/sub/mul/div of same-dtype float tensors (or a number) whose result has the shape of
    one operand: a residual ``x + y``, a bias ``x + b``, a scale ``x * 0.5``."""
    a, b = args[:2]
    if len(args) > 2 or set(kwargs) - {"alpha"} or not _scalars(kwargs.values()):
        return NotImplemented
    if isinstance(a, FakeTensor) and isinstance(b, FakeTensor) and not _same_kind(mode, a, b):
        return NotImplemented
    for big, small in ((a, b), (b, a)):
        if _ours(mode, big) and _dominant(big, small):
            return _like(mode, big)
    return NotImplemented


def _alias(
    x: FakeTensor,
    mode: FakeTensorMode,
    shape: Sequence[Any],
    stride: Sequence[Any],
    offset: Any = None,
) -> Any:
    """A view of ``x``'s storage, made as the fake mode makes its outputs (the meta kernel,
    then a FakeTensor around it) without dispatching ``as_strided`` through the mode again:
    that took 0.9 ms a view on symbolic sizes, this 0.03. The op being answered is a view
    op, so autograd's view tracking around it links the result to ``x`` as for torch's own."""
    with in_kernel_invocation_manager(mode):
        meta = x.as_strided(shape, stride, x.storage_offset() if offset is None else offset)
    return FakeTensor(mode, meta, device=x.device)


def _view(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    """``x.view(shape)`` when every size comparison it needs is decided by construction."""
    x, shape = args[0], list(args[1])
    if kwargs or not shape or not _symbolic(mode, x):
        return NotImplemented
    shape = _infer_size(shape, x.numel())
    if shape is None:
        return NotImplemented
    stride = _view_strides(list(x.shape), list(x.stride()), shape)
    return NotImplemented if stride is None else _alias(x, mode, shape, stride)


def _infer_size(shape: list[Any], numel: Any) -> list[Any] | None:
    """``shape`` with its -1 resolved, when its numel equals ``numel`` by construction."""
    holes = [i for i, s in enumerate(shape) if type(s) is int and s < 0]
    if len(holes) > 1 or any(type(s) is int and s < -1 for s in shape):
        return None
    if holes:
        known = math.prod(s for i, s in enumerate(shape) if i != holes[0])
        if type(known) is int and known == 0:
            return None
        shape[holes[0]] = numel // known
    return shape if _same_size(math.prod(shape), numel) else None


def _view_strides(old: list[Any], stride: list[Any], new: list[Any]) -> list[Any] | None:
    """torch's ``computeStride`` (a view's strides, or None when no view exists) with every
    comparison decided by construction; where one is not, None hands the view to torch."""
    if any(type(s) is int and s == 0 for s in old):
        return None
    out: list[Any] = [None] * len(new)
    view_d, base = len(new) - 1, stride[-1]
    tensor_numel, view_numel = 1, 1
    for d in range(len(old) - 1, -1, -1):
        tensor_numel = tensor_numel * old[d]
        if d == 0 or (
            not _is_one(old[d - 1]) and not _same_size(stride[d - 1], tensor_numel * base)
        ):
            while view_d >= 0 and (
                not _same_size(view_numel, tensor_numel) or _is_one(new[view_d])
            ):
                out[view_d] = view_numel * base
                view_numel = view_numel * new[view_d]
                view_d -= 1
            if not _same_size(view_numel, tensor_numel):
                return None
            if d > 0:
                base, tensor_numel, view_numel = stride[d - 1], 1, 1
    return out if view_d == -1 else None


def _unsafe_view(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    """A view's shape in a tensor of its own; contiguous inputs only (then the strides agree)."""
    if _symbolic(mode, args[0]) and _layout(args[0]) is not torch.contiguous_format:
        return NotImplemented
    out = _view(mode, args, kwargs)
    if out is NotImplemented:
        return out
    return _empty(mode, args[0], out.shape, torch.contiguous_format)


def _permuted(mode: FakeTensorMode, x: FakeTensor, order: Sequence[int]) -> Any:
    size, stride = x.shape, x.stride()
    return _alias(x, mode, [size[i] for i in order], [stride[i] for i in order])


def _transpose(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    x, d0, d1 = args
    if kwargs or not _symbolic(mode, x):
        return NotImplemented
    order = list(range(x.dim()))
    d0, d1 = d0 % x.dim(), d1 % x.dim()
    order[d0], order[d1] = order[d1], order[d0]
    return _permuted(mode, x, order)


def _t(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    """``x.t()`` of a fake tensor of ``mode``, static sizes too (a Linear's weight: the mode's
    cache is off in symbolic traces, so torch's own path costs 0.3 ms a call)."""
    x = args[0]
    if kwargs or not isinstance(x, FakeTensor) or x.fake_mode is not mode or x.dim() > 2:
        return NotImplemented
    return _permuted(mode, x, list(range(x.dim()))[::-1])


def _permute(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    x, dims = args
    if kwargs or not _symbolic(mode, x) or len(dims) != x.dim():
        return NotImplemented
    order = [d % x.dim() for d in dims]
    if sorted(order) != list(range(x.dim())):
        return NotImplemented
    return _permuted(mode, x, order)


def _unsqueeze(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    x, dim = args
    if kwargs or not _symbolic(mode, x):
        return NotImplemented
    dim = dim % (x.dim() + 1)
    size, stride = list(x.shape), list(x.stride())
    new_stride = 1 if dim >= x.dim() else size[dim] * stride[dim]
    return _alias(
        x, mode, [*size[:dim], 1, *size[dim:]], [*stride[:dim], new_stride, *stride[dim:]]
    )


def _select(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    """``x.select(dim, index)`` on a dim of static size (on a symbolic one torch's bounds
    check would be a guard)."""
    x, dim, index = args
    if kwargs or not _symbolic(mode, x) or type(index) is not int:
        return NotImplemented
    dim = dim % x.dim()
    size = x.shape[dim]
    if type(size) is not int or not -size <= index < size:
        return NotImplemented
    shape, stride = list(x.shape), list(x.stride())
    offset = x.storage_offset() + (index % size) * stride[dim]
    return _alias(x, mode, shape[:dim] + shape[dim + 1 :], stride[:dim] + stride[dim + 1 :], offset)


def _expand(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    """``x.expand(sizes)`` as torch's ``inferExpandGeometry`` computes it, each size comparison
    decided by construction: a dim is kept when its size is the target (or -1), broadcast
    (stride 0) when it is a static 1; anything else goes to torch."""
    x, sizes = args[0], list(args[1])
    if set(kwargs) - {"implicit"} or not _symbolic(mode, x) or len(sizes) < x.dim():
        return NotImplemented
    shape: list[Any] = [None] * len(sizes)
    stride: list[Any] = [None] * len(sizes)
    for i in range(len(sizes) - 1, -1, -1):
        dim = i - (len(sizes) - x.dim())
        if dim >= 0:
            size, step = x.shape[dim], x.stride()[dim]
        else:
            size, step = 1, shape[i + 1] * stride[i + 1] if i + 1 < len(sizes) else 1
        target = sizes[i]
        if type(target) is int and target == -1:
            if dim < 0:
                return NotImplemented  # eager's error
            target = size
        if not _same_size(size, target):
            if not _is_one(size) or (type(target) is int and target < 0):
                return NotImplemented
            size, step = target, 0
        shape[i], stride[i] = size, step
    return _alias(x, mode, shape, stride)


def _same_kind(mode: FakeTensorMode, x: FakeTensor, *others: Any) -> bool:
    """Each of ``others`` is None or a fake tensor of ``x``'s mode, dtype and device."""
    return all(
        t is None
        or (
            isinstance(t, FakeTensor)
            and t.fake_mode is mode
            and t.dtype == x.dtype
            and t.device == x.device
        )
        for t in others
    )


def _batch_norm_eval(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    x, weight, bias, mean, var = args[:5]
    if kwargs or not _ours(mode, x) or not _same_kind(mode, x, weight, bias, mean, var):
        return NotImplemented
    out = _like(mode, x)
    if out is NotImplemented:
        return out
    return (
        out,
        _empty(mode, x, (0,), torch.contiguous_format),
        _empty(mode, x, (0,), torch.contiguous_format),
    )


def _layer_norm(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    x, normalized, weight, bias = args[:4]
    if kwargs or not _ours(mode, x) or not _same_kind(mode, x, weight, bias):
        return NotImplemented
    if _layout(x) is not torch.contiguous_format:
        return NotImplemented
    axis = x.dim() - len(normalized)
    stats = (*x.shape[:axis], *([1] * len(normalized)))
    fmt = torch.contiguous_format
    return _empty(mode, x, x.shape, fmt), _empty(mode, x, stats, fmt), _empty(mode, x, stats, fmt)


def _addmm(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    bias, a, b = args[:3]
    if not _scalars([*args[3:], *kwargs.values()]) or not _same_kind(mode, a, bias, b):
        return NotImplemented
    if not (_ours(mode, a) and a.dim() == 2 and b.dim() == 2 and bias.dim() == 1):
        return NotImplemented
    k, n = b.shape
    # static weight shapes (a Linear's) are checked as eager would; anything else goes to torch
    if not all(isinstance(s, int) for s in (k, n, bias.shape[0], a.shape[1])):
        return NotImplemented
    if a.shape[1] != k or bias.shape[0] not in (1, n):
        return NotImplemented
    return _empty(mode, a, (a.shape[0], n), torch.contiguous_format)


def _pow(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    exponent = args[1]
    if kwargs or type(exponent) not in (int, float):  # a complex exponent promotes
        return NotImplemented
    return _pointwise(mode, args, {})


def _clamp(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    bounds = [*args[1:3], *kwargs.values()]
    if not any(b is not None for b in bounds):  # eager refuses clamp() with no bound
        return NotImplemented
    return _pointwise(mode, args, kwargs)


def _mean(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    x = args[0]
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if set(kwargs) - {"dim", "keepdim"} or not _ours(mode, x) or not dims:
        return NotImplemented
    if _layout(x) is not torch.contiguous_format:
        return NotImplemented
    reduced = {d % x.dim() for d in dims}
    if len(reduced) != len(dims):  # a repeated dim: eager's error
        return NotImplemented
    shape = [1 if i in reduced else s for i, s in enumerate(x.shape) if keepdim or i not in reduced]
    return _empty(mode, x, shape, torch.contiguous_format)


def _window_out(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    """torch's output length of a sliding window (convolution, pooling)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:  # the last window starts in the padding
        out -= 1
    return out


def _ints(values: Any, n: int) -> list[int] | None:
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) == 1:
        values = values * n
    return values if len(values) == n and all(type(v) is int for v in values) else None


def _spatial(x: FakeTensor, n: int) -> list[int] | None:
    """The ``n`` trailing (spatial) sizes when they are static ints, else None: the kernels
    below decide only batch-symbolic windows; symbolic sizes go to torch's meta kernels."""
    sizes = list(x.shape[-n:])
    return sizes if all(type(v) is int for v in sizes) else None


def _convolution(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    """Non-transposed 1-D/2-D convolution of a contiguous input with a static weight."""
    x, weight, bias, stride, padding, dilation, transposed, _out_pad, groups = args
    n = x.dim() - 2 if isinstance(x, FakeTensor) else 0
    if kwargs or transposed or n not in (1, 2) or not _ours(mode, x):
        return NotImplemented
    if not _same_kind(mode, x, weight, bias) or weight.dim() != n + 2:
        return NotImplemented
    if _layout(x) is not torch.contiguous_format or _layout(weight) is not torch.contiguous_format:
        return NotImplemented
    spatial, kernel = _spatial(x, n), list(weight.shape)
    stride, padding, dilation = _ints(stride, n), _ints(padding, n), _ints(dilation, n)
    if None in (spatial, stride, padding, dilation) or not all(type(k) is int for k in kernel):
        return NotImplemented
    if type(groups) is not int or x.shape[1] != kernel[1] * groups or kernel[0] % groups:
        return NotImplemented
    if bias is not None and tuple(bias.shape) != (kernel[0],):
        return NotImplemented
    out = [
        _window_out(size, k, s, p, d, False)
        for size, k, s, p, d in zip(spatial, kernel[2:], stride, padding, dilation, strict=True)
    ]
    if min(out) < 1:  # eager's error
        return NotImplemented
    return _empty(mode, x, [x.shape[0], kernel[0], *out], torch.contiguous_format)


def _max_pool2d_with_indices(mode: FakeTensorMode, args: Sequence[Any], kwargs: dict) -> Any:
    """2-D max pooling of a contiguous [N, C, H, W] input with static H and W."""
    x = args[0]
    if kwargs or not _ours(mode, x) or x.dim() != 4 or _layout(x) is not torch.contiguous_format:
        return NotImplemented
    kernel = _ints(args[1], 2)
    stride = _ints(args[2] if len(args) > 2 and args[2] else args[1], 2)
    padding = _ints(args[3] if len(args) > 3 else 0, 2)
    dilation = _ints(args[4] if len(args) > 4 else 1, 2)
    ceil = bool(args[5]) if len(args) > 5 else False
    spatial = _spatial(x, 2)
    if None in (kernel, stride, padding, dilation, spatial):
        return NotImplemented
    if any(2 * p > k for p, k in zip(padding, kernel, strict=True)):  # eager's error
        return NotImplemented
    out = [
        _window_out(size, k, s, p, d, ceil)
        for size, k, s, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True)
    ]
    if min(out) < 1:
        return NotImplemented
    shape = [*x.shape[:2], *out]
    fmt = torch.contiguous_format
    return _empty(mode, x, shape, fmt), _empty(mode, x, shape, fmt, dtype=torch.int64)


_POINTWISE = (
    "relu",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "hardtanh",
    "hardswish",
    "hardsigmoid",
    "elu",
    "leaky_relu",
    "mish",
    "neg",
    "rsqrt",
    "sqrt",
    "exp",
    "erf",
)
_INPLACE = ("relu_", "hardtanh_", "silu_", "hardswish_", "hardsigmoid_", "elu_", "leaky_relu_")


def _kernels() -> dict[Any, _Kernel]:
    table: dict[Any, _Kernel] = {}
    for name in _POINTWISE:
        table[getattr(aten, name).default] = _pointwise
    for name in _INPLACE:
        table[getattr(aten, name).default] = _inplace
    table[aten.pow.Tensor_Scalar] = _pow
    table[aten.clamp.default] = _clamp
    table[aten.clone.default] = _clone
    table[aten._softmax.default] = _softmax
    table[aten._log_softmax.default] = _softmax
    table[aten._native_batch_norm_legit_no_training.default] = _batch_norm_eval
    table[aten.native_layer_norm.default] = _layer_norm
    table[aten.addmm.default] = _addmm
    table[aten.mean.dim] = _mean
    for op in (aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor):
        table[op] = _binary
    table[aten.view.default] = _view
    table[aten._unsafe_view.default] = _unsafe_view
    table[aten.transpose.int] = _transpose
    table[aten.permute.default] = _permute
    table[aten.unsqueeze.default] = _unsqueeze
    table[aten.select.int] = _select
    table[aten.expand.default] = _expand
    table[aten.t.default] = _t
    table[aten.convolution.default] = _convolution
    table[aten.max_pool2d_with_indices.default] = _max_pool2d_with_indices
    return table


_KERNELS = _kernels()


_LEAN_META = contextvars.ContextVar("fxonnx_lean_node_meta", default=False)


@contextlib.contextmanager
def lean_node_meta() -> Iterator[None]:
    """Within: make_fx records ``tensor_meta`` without its memory format (``val`` is intact).
    Only this context's thread is affected; other traces in the process keep torch's default."""
    _wrap_extract_tensor_metadata()
    token = _LEAN_META.set(True)
    try:
        yield
    finally:
        _LEAN_META.reset(token)


def _wrap_extract_tensor_metadata() -> None:
    original = proxy_tensor._extract_tensor_metadata
    if getattr(original, "_fxonnx_lean", False):
        return

    def extract(result: torch.Tensor, include_contiguity: bool = True) -> Any:
        return original(result, include_contiguity and not _LEAN_META.get())

    extract._fxonnx_lean = True  # type: ignore[attr-defined]
    proxy_tensor._extract_tensor_metadata = extract
