"""Dynamic dims: how they are asked for, traced, named and refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxonnx
from fxonnx.capture import capture


class Pair(nn.Module):
    """Two inputs that share batch and seq: ``x (batch, seq, 8)``, ``mask (batch, seq)``."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * mask.unsqueeze(-1)


def _pair(b: int = 2, s: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(b, s, 8), (torch.arange(s) < s - 1).float().expand(b, s).contiguous()


BOTH = {"x": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}}


def test_named_dims_share_one_symbol_and_name_the_onnx_dims() -> None:
    captured = capture(Pair(), _pair(), dynamic_dims=BOTH)
    assert captured.shapes.names == ("batch", "seq")
    assert captured.user_inputs[0].shape == ("batch", "seq", 8)
    assert captured.user_inputs[1].shape == ("batch", "seq")
    assert captured.outputs[0].shape == ("batch", "seq", 8)
    assert captured.shapes.symbol("seq").uses == (("x", 1), ("mask", 1))


def test_inputs_by_position_and_negative_dims() -> None:
    captured = capture(Pair(), _pair(), dynamic_dims={0: {-2: "seq"}, 1: {-1: "seq"}})
    assert captured.user_inputs[0].shape == (2, "seq", 8)
    assert captured.user_inputs[1].shape == (2, "seq")


def test_all_makes_free_dims_dynamic_and_says_which_the_model_fixes() -> None:
    captured = capture(Pair(), _pair(), dynamic_dims="all")
    # the feature dim meets the Linear's weight: fixed to 8, with the line that did it
    assert captured.user_inputs[0].shape[2] == 8
    assert isinstance(captured.user_inputs[0].shape[0], str)
    fixed = [n for n in captured.notes if "fixed to 8" in n]
    assert fixed and "x_dim2" in fixed[0] and "self.lin(x)" in fixed[0]


def test_none_is_static() -> None:
    captured = capture(Pair(), _pair(), dynamic_dims=None)
    assert not captured.shapes.dynamic
    assert captured.user_inputs[0].shape == (2, 5, 8)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"y": {0: "batch"}}, r"unknown input 'y'.*inputs are \['x', 'mask'\]"),
        ({"x": {3: "seq"}}, r"names dim 3, out of range for input 'x' of shape \[2, 5, 8\]"),
        ({"x": {"1": "seq"}}, r"has the dim '1': dims are ints"),
        ({"x": {1: "seq", -2: "len"}}, r"gives dim 1 two names \('seq' and 'len'\)"),
        ({"x": {1: "my seq"}}, r"a dim's name must be an identifier"),
        ({"x": [0, 1]}, r"must be a dict \{dim: name\}"),
        ({5: {0: "batch"}}, r"input position 5, but the model takes 2 tensor input"),
        ({"x": {0: "b"}, 0: {1: "s"}}, r"names input 'x' twice"),
        ({"x": {1: "n"}, "mask": {0: "n"}}, r"dims named 'n' differ in the example inputs"),
        ("some", r"dynamic_dims='some' is not a known mode"),
        (3, r"must be 'auto', 'all', None or a dict, not int"),
    ],
)
def test_bad_dynamic_dims_are_refused_clearly(spec: object, message: str) -> None:
    with pytest.raises(fxonnx.CaptureError, match="(?s)" + message):
        capture(Pair(), _pair(), dynamic_dims=spec)


def test_batch_dims_with_several_dims_points_to_dynamic_dims() -> None:
    with pytest.raises(
        fxonnx.CaptureError, match=r"(?s)batch_dims takes one int dim.*dynamic_dims="
    ):
        fxonnx.compile(Pair(), _pair(), batch_dims={"x": (0, 1)})


def test_batch_dims_and_dynamic_dims_together_are_refused() -> None:
    with pytest.raises(fxonnx.CaptureError, match="batch_dims and dynamic_dims were both given"):
        capture(Pair(), _pair(), batch_dims={"x": 0}, dynamic_dims=BOTH)


def test_batch_dims_is_a_shorthand_for_a_batch_name() -> None:
    captured = capture(Pair(), _pair(), batch_dims=(0, 0))
    assert captured.user_inputs[1].shape == ("batch", 5)


class PositionTable(nn.Module):
    """A learned position table of 5 rows: the model only works at seq 5."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 5, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos


def test_a_requested_dim_the_code_fixes_names_input_dim_value_and_line() -> None:
    with pytest.raises(fxonnx.CaptureError) as err:
        capture(PositionTable(), (torch.randn(2, 5, 8),), dynamic_dims={"x": {1: "seq"}})
    message = str(err.value)
    assert "input 'x' dim 1 ('seq') is fixed to 5" in message
    assert "test_dims.py" in message and "return x + self.pos" in message
    assert "dynamic_dims asks for it to vary" in message


class Capped(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > 16:
            return x[:, :16] * 2
        return x * 2


def test_an_inferred_range_is_kept_and_checked_at_run_time() -> None:
    cm = fxonnx.compile(Capped(), (torch.randn(2, 10),), dynamic_dims={"x": {0: "batch", 1: "n"}})
    n = cm.captured.shapes.symbol("n")
    assert (n.min, n.max) == (1, 16) and "if x.shape[1] > 16" in (n.why or "")
    x = torch.randn(3, 12)
    torch.testing.assert_close(cm(x), Capped()(x))
    with pytest.raises(fxonnx.InputError, match=r"(?s)dim 1 \(.n.\) is 17.*n in \[1, 16\]"):
        cm(torch.randn(2, 17))
    assert '"max": 16' in {p.key: p.value for p in cm.onnx_model.metadata_props}["fxonnx.dims"]


def test_shared_dims_must_agree_at_run_time() -> None:
    cm = fxonnx.compile(Pair(), _pair(), dynamic_dims=BOTH, provider="cpu")
    x, mask = torch.randn(2, 7, 8), torch.ones(2, 6)
    with pytest.raises(
        fxonnx.InputError,
        match=r"input 'mask' dim 1 \('seq'\) is 6 but input 'x' dim 1 \('seq'\) is 7",
    ):
        cm(x, mask)


def test_verification_runs_every_dim_at_a_second_distinct_size() -> None:
    cm = fxonnx.compile(Pair(), _pair(2, 5), dynamic_dims=BOTH, provider="cpu")
    names = [c.name for c in cm.report.checks]
    assert names[0] == "output"
    second = names[1]
    sizes = dict(item.split("=") for item in second.split("@", 1)[1].split(","))
    assert set(sizes) == {"batch", "seq"}
    assert sizes["batch"] != sizes["seq"] and sizes["batch"] != "2" and sizes["seq"] != "5"


def test_a_shifted_batch_output_gets_an_expression_dim() -> None:
    class Shift(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[1:] - x[:-1]

    cm = fxonnx.compile(Shift(), (torch.randn(2, 3),), provider="cpu")
    assert cm.captured.outputs[0].shape == ("batch-1", 3)
    out = cm.onnx_model.graph.output[0].type.tensor_type.shape.dim[0]
    assert out.dim_param == "batch-1"
    assert cm(torch.randn(6, 3)).shape == (5, 3)


def test_symint_arithmetic_lowers_to_shape_computations() -> None:
    class Arith(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, s = x.shape[0], x.shape[1]
            half = x[:, : s // 2]
            tail = x[:, s % 3 :]
            scale = torch.ones(b, 1) * torch.sym_float(s) / torch.sym_max(s, 4)
            grid = torch.arange(s - 1).float().expand(b, s - 1)
            return half.sum(1, keepdim=True) + tail.mean(1, keepdim=True) * scale + grid[:, :1]

    model = Arith()
    cm = fxonnx.compile(
        model, (torch.randn(2, 9),), dynamic_dims={"x": {0: "b", 1: "s"}}, provider="cpu"
    )
    for shape in [(3, 4), (1, 13), (4, 30)]:
        x = torch.randn(shape)
        torch.testing.assert_close(cm(x), model(x))


class Factories(nn.Module):
    """SymInt arguments of factories, views, expand, padding and interpolate sizes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        zeros = x.new_zeros(b, c, h, 1)
        full = torch.full((b, 1, h, w), 0.5)
        ones = torch.ones(1, 1, 1, w).expand(b, c, h, w)
        padded = torch.nn.functional.pad(x, (0, 1, 1, 0))[:, :, :h, 1:]
        up = torch.nn.functional.interpolate(x[:, :, ::2, ::2], size=(h, w), mode="nearest")
        flat = x.reshape(b, c * h * w).view(b, c, h * w).view(b, c, h, w)
        idx = torch.arange(h * w).reshape(1, 1, h, w).float() / (h * w)
        return flat + zeros + full + ones + padded + up + idx


def test_symint_arguments_of_factories_views_padding_and_resize() -> None:
    model = Factories()
    spec = {"x": {0: "b", 2: "h", 3: "w"}}
    cm = fxonnx.compile(model, (torch.randn(2, 3, 8, 6),), dynamic_dims=spec, provider="cpu")
    assert cm.captured.outputs[0].shape == ("b", 3, "h", "w")
    for shape in [(1, 3, 4, 10), (3, 3, 12, 2)]:
        x = torch.randn(shape)
        torch.testing.assert_close(cm(x), model(x))


def test_tensor_arithmetic_with_symbolic_scalars_keeps_the_dims() -> None:
    class Scaled(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = x.size(1)
            return x * n + x.sum() / x.numel() - x.mean(1, keepdim=True) * (n**-0.5)

    model = Scaled()
    cm = fxonnx.compile(model, (torch.randn(2, 6),), dynamic_dims={"x": {0: "b", 1: "n"}})
    for shape in [(3, 5), (1, 17)]:
        x = torch.randn(shape)
        torch.testing.assert_close(cm(x), model(x))


class SqueezeAll(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 2).squeeze()


def test_squeeze_over_a_dynamic_dim_is_refused_or_made_static() -> None:
    with pytest.raises(fxonnx.ExportError, match=r"(?s)squeeze over dim\(s\) \[0\].*dynamic"):
        fxonnx.export(SqueezeAll(), (torch.randn(3, 1, 4),), dynamic_dims={"x": {0: "b"}})
    # the default asks for the batch: the graph is exported static and says why
    with pytest.warns(UserWarning, match="dims are static: .*squeeze"):
        cm = fxonnx.compile(SqueezeAll(), (torch.randn(1, 1, 4),), provider="cpu")
    assert not cm.captured.shapes.dynamic
    assert any("squeeze over dim" in n for n in cm.report.notes)
    x = torch.randn(1, 1, 4)
    torch.testing.assert_close(cm(x), SqueezeAll()(x))
