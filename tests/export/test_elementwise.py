"""Element-wise ops: math, activations, logic, casts and type promotion, at two batch sizes."""

from __future__ import annotations

from collections.abc import Callable

import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from fn_module import Fn
from torch import nn

from fxonnx.capture import capture
from fxonnx.export import lower


def _g(b: int) -> torch.Generator:
    return torch.Generator().manual_seed(b)


def _x(b: int) -> tuple:
    return (torch.randn(b, 3, 8, generator=_g(b)) * 2,)


def _xy(b: int) -> tuple:
    g = _g(b)
    return torch.randn(b, 3, 8, generator=g) * 2, torch.randn(b, 3, 8, generator=g) * 2


def _unit(b: int) -> tuple:
    return (torch.rand(b, 3, 8, generator=_g(b)) * 1.8 - 0.9,)


def _pos(b: int) -> tuple:
    return (torch.rand(b, 3, 8, generator=_g(b)) * 5 + 1e-3,)


def _ints(b: int) -> tuple:
    g = _g(b)
    return torch.randint(-20, 20, (b, 3, 8), generator=g), torch.randint(
        1, 7, (b, 3, 8), generator=g
    ) * (torch.randint(0, 2, (b, 3, 8), generator=g) * 2 - 1)


def _special(b: int) -> tuple:
    x = torch.randn(b, 3, 8, generator=_g(b))
    x[:, 0, 0], x[:, 0, 1], x[:, 0, 2], x[:, 0, 3] = float("nan"), float("inf"), -float("inf"), 0
    x[:, 1, :4] = torch.tensor([0.5, 1.5, -2.5, 1e-9])
    return (x,)


CASES: dict[str, tuple[Callable, Callable[[int], tuple]]] = {
    # a 0-d tensor and the batch size (a SymInt) stay 0-d: KLDivLoss(reduction="batchmean")
    "sum_div_batch_size": (lambda x: x.sum() / x.shape[0], _x),
    "sum_times_batch_size": (lambda x: x.sum() * x.shape[0], _x),
    # math
    "tan": (torch.tan, _unit),
    "asin_acos_atan": (lambda x: torch.asin(x) + torch.acos(x) * torch.atan(x * 3), _unit),
    "sinh_cosh": (lambda x: torch.sinh(x) - torch.cosh(x), _x),
    "asinh_atanh": (lambda x: torch.asinh(x * 4) + torch.atanh(x), _unit),
    "acosh": (lambda x: torch.acosh(x + 1), _pos),
    "log1p": (torch.log1p, _unit),
    "log1p_tiny": (lambda x: torch.log1p(x * 1e-8) * 1e8, _unit),
    "expm1": (torch.expm1, _x),
    "exp2_log2_log10": (
        lambda x: torch.exp2(x) + torch.log2(x.abs() + 1) + torch.log10(x.abs() + 1),
        _x,
    ),
    "round": (lambda x: torch.round(x * 2), _x),
    "round_half_even": (torch.round, _special),
    "round_decimals": (lambda x: torch.round(x, decimals=1), _x),
    "trunc_frac": (lambda x: torch.trunc(x) * 10 + torch.frac(x), _x),
    "sign_sgn": (lambda x: torch.sign(x) + torch.sgn(x), _special),
    "square_rsqrt": (lambda x: torch.square(x) + torch.rsqrt(x), _pos),
    "atan2": (torch.atan2, _xy),
    "atan2_axes": (
        lambda y, x: torch.atan2(y, x * (x.abs() > 1)),
        _xy,
    ),
    "isinf_family": (
        lambda x: torch.stack(
            [
                torch.isinf(x),
                torch.isposinf(x),
                torch.isneginf(x),
                torch.isfinite(x),
                torch.isnan(x),
            ]
        ),
        _special,
    ),
    "nan_to_num_default": (torch.nan_to_num, _special),
    "nan_to_num_values": (
        lambda x: torch.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-3.0),
        _special,
    ),
    "lerp_scalar": (lambda x, y: torch.lerp(x, y, 0.3), _xy),
    "lerp_tensor": (lambda x, y: torch.lerp(x, y, torch.sigmoid(y)), _xy),
    "addcmul_addcdiv": (
        lambda x, y: torch.addcmul(x, x, y, value=0.5) + torch.addcdiv(x, x, y.abs() + 1, value=-2),
        _xy,
    ),
    "xlogy": (lambda x, y: torch.xlogy(x * (x > 0), y.abs()), _xy),
    "clamp_tensor_bounds": (lambda x, y: torch.clamp(x, min=-y.abs(), max=y.abs()), _xy),
    "clamp_tensor_min_only": (lambda x, y: torch.clamp(x, min=y), _xy),
    "clamp_scalar": (lambda x: torch.clamp(x, -1, 0.5) + x.clamp(min=0) + x.clamp(max=0), _x),
    "maximum_minimum": (lambda x, y: torch.max(x, y) - torch.min(x, y), _xy),
    "fmod_remainder": (lambda x, y: torch.fmod(x, y) + torch.remainder(x, y), _xy),
    "float_floor_divide": (
        lambda x, y: torch.floor_divide(x, y) + torch.div(x, y, rounding_mode="trunc"),
        _xy,
    ),
    # integer arithmetic with negative numbers
    "int_floor_div": (lambda a, b: torch.div(a, b, rounding_mode="floor"), _ints),
    "int_trunc_div": (lambda a, b: torch.div(a, b, rounding_mode="trunc"), _ints),
    "int_floordiv_op": (lambda a, b: a // b, _ints),
    "int_true_div": (lambda a, b: a / b, _ints),
    "int_remainder_fmod": (lambda a, b: (a % b) * 100 + torch.fmod(a, b), _ints),
    "int_scalar_ops": (lambda a, b: a * 3 - 7 + (a // -3) + (a % 4) + b.abs(), _ints),
    "int_shifts": (lambda a, b: (a << 2) + (a >> 1) + (a >> b.abs()), _ints),
    "int_bitwise": (lambda a, b: (a & b) + (a | 5) - (a ^ b) + (~a), _ints),
    "int_abs_neg_sign": (
        lambda a, b: a.abs() - (-a) * a.sign() + torch.floor(a) + torch.round(a),
        _ints,
    ),
    "int_exp": (lambda a, b: torch.exp(a.clamp(-5, 5)) + torch.sqrt(b.abs()), _ints),
    "int_pow": (lambda a, b: a.clamp(-3, 3) ** 3 + 2 ** b.abs(), _ints),
    # logic
    "logical_ops": (
        lambda x, y: torch.stack(
            [
                torch.logical_and(x > 0, y > 0),
                torch.logical_or(x, y > 1),
                torch.logical_xor(x > 0, y),
                torch.logical_not(x),
                (x > 0) & (y < 0),
                (x > 0) | (y < 0),
                (x > 0) ^ (y < 0),
                ~(x > 0),
            ]
        ),
        _xy,
    ),
    "comparisons_mixed": (
        lambda a, b: torch.stack([a > 0.5, a.float() <= b, a == b, a != 3, a >= b.float()]),
        _ints,
    ),
    "where_scalars": (lambda x: torch.where(x > 0, x, 0.5) + torch.where(x < 0, 1.0, x), _x),
    # type promotion
    "int_plus_float_scalar": (lambda a, b: a + 1.5, _ints),
    "int_times_float_tensor": (lambda a, b: a * b.float() + a.float(), _ints),
    "bool_plus_int": (lambda a, b: (a > 0) + b, _ints),
    "bool_plus_bool": (lambda a, b: (a > 0) + (b > 0), _ints),
    "bool_times_float": (lambda x, y: (x > 0) * y, _xy),
    "float16_ops": (lambda x, y: x.half() * y.half() + 1, _xy),  # fp16 tolerance
    "float16_plus_float32": (lambda x, y: x.half() + y, _xy),
    "int32_plus_int64": (lambda a, b: a.int() + b, _ints),
    "float64_plus_float32": (lambda x, y: x.double() + y, _xy),
    "int_tensor_div_scalar": (lambda a, b: a / 2, _ints),
    "int_mean_float": (lambda a, b: a.float().mean(1), _ints),
    # casts
    "casts": (
        lambda x: torch.stack(
            [
                x.to(torch.int32).float(),
                x.long().double().float(),
                x.bool().float(),
                x.to(torch.uint8).float() * (x > 0),
                x.to(torch.int8).float(),
                x.half().float(),
                x.to(torch.int16).float(),
                (x > 0).long().float(),
            ]
        ),
        _x,
    ),
    "cast_bool_to_int": (lambda a, b: (a > 0).int() + (b > 0).long(), _ints),
}


@pytest.mark.parametrize("name", list(CASES))
def test_elementwise_matches_eager(name: str, onnx_matches: Callable) -> None:
    fn, make_inputs = CASES[name]
    onnx_matches(Fn(fn), make_inputs)


ACTIVATIONS = {
    "prelu_channel": nn.PReLU(3, init=0.1),
    "prelu_single": nn.PReLU(),
    "selu": nn.SELU(),
    "celu": nn.CELU(0.7),
    "elu": nn.ELU(0.4),
    "glu": nn.GLU(),
    "glu_dim2": nn.GLU(2),
    "threshold": nn.Threshold(0.1, 20.0),
    "softsign": nn.Softsign(),
    "hardshrink": nn.Hardshrink(0.8),
    "softshrink": nn.Softshrink(0.3),
    "logsigmoid": nn.LogSigmoid(),
    "softplus": nn.Softplus(),
    "softplus_beta": nn.Softplus(beta=2.0, threshold=3.0),
    "rrelu_eval": nn.RReLU(0.1, 0.3),
    "tanhshrink": nn.Tanhshrink(),
    "gelu_none": nn.GELU(),
    "gelu_tanh": nn.GELU("tanh"),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_matches_eager(name: str, onnx_matches: Callable) -> None:
    layer = ACTIVATIONS[name]
    onnx_matches(layer, lambda b: (torch.randn(b, 3, 6, 4, generator=_g(b)) * 3,))


def test_logsigmoid_is_stable_for_large_inputs(onnx_matches: Callable) -> None:
    onnx_matches(nn.LogSigmoid(), lambda b: (torch.linspace(-200, 200, 8 * b).view(b, 8),))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_before_opset_20(approximate: str) -> None:
    x = torch.randn(4, 7)
    model = lower(capture(nn.GELU(approximate), (x,)), opset=18)
    assert "Gelu" not in {n.op_type for n in model.graph.node}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {model.graph.input[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), F.gelu(x, approximate=approximate))


def test_bool_add_with_alpha_false_is_self(onnx_matches: Callable) -> None:
    # found by the OpInfo suite (add, bool sample 10): alpha=False was ignored
    def make(b: int) -> tuple:
        g = _g(b)
        return torch.rand(b, 5, generator=g) > 0.5, torch.rand(1, 5, generator=g) > 0.5

    onnx_matches(Fn(lambda x, y: torch.add(x, y, alpha=False)), make)
    onnx_matches(Fn(lambda x, y: torch.add(x, y, alpha=True)), make)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, y: torch.subtract(x, y, alpha=2),
        lambda x, y: torch.divide(x, y),
        lambda x, y: torch.divide(x, y, rounding_mode="floor"),
        lambda x, y: torch.divide(x, y, rounding_mode="trunc"),
    ],
    ids=["subtract", "divide", "divide_floor", "divide_trunc"],
)
def test_subtract_and_divide_aliases(onnx_matches: Callable, fn: Callable) -> None:
    onnx_matches(Fn(fn), _xy)
