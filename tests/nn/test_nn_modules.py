"""Every torch.nn module class with its documented constructor options (nn_specs.SPECS),
compiled by fxonnx without its own verification and compared with eager at the example batch
and, when the batch stayed dynamic, at a second one. A layer fxonnx cannot lower must be refused
with an FxonnxError (strict xfail naming the exception and the reason, in XFAIL); a wrong result
is a bug, never an accepted outcome."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.utils._pytree as pytree
from nn_specs import EXCLUDED, SPECS, Spec
from torch import nn

import fxonnx
from fxonnx._errors import CaptureError, UnsupportedOpError
from fxonnx.verify import compare


class Mismatch(AssertionError):
    """Compiled outputs differ from eager."""


def _tensors(out: object) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def check_layer(spec: Spec) -> None:
    torch.manual_seed(0)
    model = spec.factory().eval()
    kw = dict(spec.compile_kw)
    cm = fxonnx.compile(model, spec.inputs(2), verify=False, provider="cpu", **kw)
    for batch in (2, 5) if cm.captured.shapes.dynamic else (2,):
        inputs = spec.inputs(batch)
        with torch.no_grad():  # on copies: in-place layers (inplace=True) modify their input
            want = _tensors(model(*pytree.tree_map(torch.clone, inputs)))
        got = _tensors(cm(*inputs))
        if len(got) != len(want):
            raise Mismatch(f"{len(got)} outputs, eager has {len(want)}")
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            c = compare(f"output {i}", w, g)
            if not c.ok:
                raise Mismatch(
                    f"output {i} at batch {batch}: "
                    f"{c.note or f'max abs err {c.max_abs:.3g}, rel {c.max_rel:.3g}'}"
                )


# spec id -> (the exception the layer must raise, why). "[ops]"/"[edges]": another helper's
# open work on issue 11; "[unsupported]": refused on purpose; "[bug]": must be fixed.
XFAIL: dict[str, tuple[type[BaseException], str]] = {
    "Fold-plain": (UnsupportedOpError, "[unsupported] no lowering: aten.col2im.default"),
    "Unfold-plain": (UnsupportedOpError, "[unsupported] no lowering: aten.im2col.default"),
    "FractionalMaxPool2d-output_size": (
        UnsupportedOpError,
        "[unsupported] no lowering: aten.fractional_max_pool2d.default, aten.rand.default",
    ),
    "FractionalMaxPool2d-output_ratio": (
        UnsupportedOpError,
        "[unsupported] no lowering: aten.fractional_max_pool2d.default, aten.rand.default",
    ),
    "FractionalMaxPool3d-output_size": (
        UnsupportedOpError,
        "[unsupported] no lowering: aten.fractional_max_pool3d.default, aten.rand.default",
    ),
    "FractionalMaxPool3d-output_ratio": (
        UnsupportedOpError,
        "[unsupported] no lowering: aten.fractional_max_pool3d.default, aten.rand.default",
    ),
    "MaxUnpool1d-after_max_pool": (
        UnsupportedOpError,
        "[unsupported] no lowering: aten.max_unpool2d.default",
    ),
    "MaxUnpool2d-after_max_pool": (
        UnsupportedOpError,
        "[unsupported] no lowering: aten.max_unpool2d.default",
    ),
    "MaxUnpool3d-after_max_pool": (
        UnsupportedOpError,
        "[unsupported] no lowering: aten.max_unpool3d.default",
    ),
    "CrossMapLRN2d-plain": (
        CaptureError,
        "[unsupported] capture refused: CrossMapLRN2d's legacy autograd Function resizes storages",
    ),
    "CTCLoss-plain": (
        CaptureError,
        "[unsupported] capture refused: data-dependent values (CTCLoss input/target lengths)",
    ),
}


def _param(spec: Spec) -> object:
    marks = []
    if spec.id in XFAIL:
        exc, reason = XFAIL[spec.id]
        marks.append(pytest.mark.xfail(strict=True, raises=exc, reason=reason))
    return pytest.param(spec, id=spec.id, marks=marks)


@pytest.mark.parametrize("spec", [_param(s) for s in SPECS])
def test_layer_matches_eager(spec: Spec) -> None:
    check_layer(spec)


def _layer_classes() -> set[str]:
    return {
        name
        for name, obj in vars(nn.modules).items()
        if inspect.isclass(obj) and issubclass(obj, nn.Module)
    }


def test_every_nn_module_class_has_a_spec_or_a_reason() -> None:
    covered = {s.cls for s in SPECS}
    classes = _layer_classes()
    assert classes - covered - set(EXCLUDED) == set()
    assert covered & set(EXCLUDED) == set()
    assert covered | set(EXCLUDED) <= classes


def test_spec_ids_are_unique_and_xfails_name_specs() -> None:
    ids = [s.id for s in SPECS]
    assert len(ids) == len(set(ids))
    assert set(XFAIL) <= set(ids)
