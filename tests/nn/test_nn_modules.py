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
from fxonnx._errors import CaptureError, ExportError, RuntimeSessionError, UnsupportedOpError
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
    "ConvTranspose1d-unbatched": (
        RuntimeSessionError,
        "[edges] unbatched input: onnxruntime refuses ConvTranspose without a batch dim (raw load error)",
    ),
    "ConvTranspose2d-unbatched": (
        RuntimeSessionError,
        "[edges] unbatched input: onnxruntime refuses ConvTranspose without a batch dim (raw load error)",
    ),
    "ConvTranspose3d-unbatched": (
        RuntimeSessionError,
        "[edges] unbatched input: onnxruntime refuses ConvTranspose without a batch dim (raw load error)",
    ),
    "Fold-plain": (UnsupportedOpError, "[unsupported] no lowering: aten.col2im.default"),
    "Unfold-plain": (UnsupportedOpError, "[unsupported] no lowering: aten.im2col.default"),
    "MaxPool1d-unbatched": (
        RuntimeSessionError,
        "[edges] unbatched input: onnxruntime refuses MaxPool without a batch dim (raw load error)",
    ),
    "AvgPool1d-unbatched": (
        RuntimeSessionError,
        "[edges] unbatched input: onnxruntime refuses AveragePool without a batch dim (raw load error)",
    ),
    "AdaptiveAvgPool1d-uneven": (
        ExportError,
        "[edges] adaptive pooling to a size that does not divide the input is refused",
    ),
    "AdaptiveMaxPool1d-uneven": (
        ExportError,
        "[edges] adaptive pooling to a size that does not divide the input is refused",
    ),
    "MaxPool2d-unbatched": (
        RuntimeSessionError,
        "[edges] unbatched input: onnxruntime refuses MaxPool without a batch dim (raw load error)",
    ),
    "AvgPool2d-unbatched": (
        RuntimeSessionError,
        "[edges] unbatched input: onnxruntime refuses AveragePool without a batch dim (raw load error)",
    ),
    "AdaptiveAvgPool2d-uneven": (
        ExportError,
        "[edges] adaptive pooling to a size that does not divide the input is refused",
    ),
    "AdaptiveMaxPool2d-uneven": (
        ExportError,
        "[edges] adaptive pooling to a size that does not divide the input is refused",
    ),
    "MaxPool3d-unbatched": (
        RuntimeSessionError,
        "[edges] unbatched input: onnxruntime refuses MaxPool without a batch dim (raw load error)",
    ),
    "AvgPool3d-unbatched": (
        RuntimeSessionError,
        "[edges] unbatched input: onnxruntime refuses AveragePool without a batch dim (raw load error)",
    ),
    "AdaptiveAvgPool3d-uneven": (
        ExportError,
        "[edges] adaptive pooling to a size that does not divide the input is refused",
    ),
    "AdaptiveMaxPool3d-uneven": (
        ExportError,
        "[edges] adaptive pooling to a size that does not divide the input is refused",
    ),
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
    "BatchNorm1d-track_running_stats_false": (
        ExportError,
        "[edges] eval BatchNorm with track_running_stats=False (batch statistics) is refused",
    ),
    "BatchNorm2d-track_running_stats_false": (
        ExportError,
        "[edges] eval BatchNorm with track_running_stats=False (batch statistics) is refused",
    ),
    "BatchNorm3d-track_running_stats_false": (
        ExportError,
        "[edges] eval BatchNorm with track_running_stats=False (batch statistics) is refused",
    ),
    "RMSNorm-plain": (UnsupportedOpError, "[ops] no lowering: aten.rms_norm.default"),
    "RMSNorm-eps_shape_2d": (UnsupportedOpError, "[ops] no lowering: aten.rms_norm.default"),
    "RMSNorm-elementwise_affine_false": (
        UnsupportedOpError,
        "[ops] no lowering: aten.rms_norm.default",
    ),
    "CrossMapLRN2d-plain": (
        CaptureError,
        "[unsupported] capture refused: CrossMapLRN2d's legacy autograd Function resizes storages",
    ),
    "ReLU-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "ReLU6-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "LeakyReLU-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "RReLU-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "ELU-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "CELU-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "SELU-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "GELU-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "SiLU-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Mish-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Hardswish-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Hardsigmoid-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Hardtanh-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Hardshrink-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Softshrink-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Softplus-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Softsign-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Tanh-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Tanhshrink-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Sigmoid-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "LogSigmoid-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Threshold-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Softmin-scalar_input": (Mismatch, "[edges] a 0-d input gives a rank-1 output"),
    "Embedding-max_norm": (
        ValueError,
        "[bug] capture: a forward that renormalises its weight in place (max_norm) crashes with a raw ValueError",
    ),
    "RNNCell-plain": (UnsupportedOpError, "[ops] no lowering: aten.rnn_tanh_cell.default"),
    "RNNCell-bias_false": (UnsupportedOpError, "[ops] no lowering: aten.rnn_tanh_cell.default"),
    "LSTMCell-plain": (UnsupportedOpError, "[ops] no lowering: aten.lstm_cell.default"),
    "LSTMCell-bias_false": (UnsupportedOpError, "[ops] no lowering: aten.lstm_cell.default"),
    "GRUCell-plain": (UnsupportedOpError, "[ops] no lowering: aten.gru_cell.default"),
    "GRUCell-bias_false": (UnsupportedOpError, "[ops] no lowering: aten.gru_cell.default"),
    "RNNCell-relu": (UnsupportedOpError, "[ops] no lowering: aten.rnn_relu_cell.default"),
    "CrossEntropyLoss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cross_entropy_loss.default",
    ),
    "NLLLoss-mean": (UnsupportedOpError, "[ops] no lowering: aten.nll_loss_nd.default"),
    "MSELoss-mean": (UnsupportedOpError, "[ops] no lowering: aten.broadcast_tensors.default"),
    "L1Loss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.broadcast_tensors.default, aten.l1_loss.default",
    ),
    "SmoothL1Loss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.broadcast_tensors.default, aten.smooth_l1_loss.default",
    ),
    "HuberLoss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.broadcast_tensors.default, aten.huber_loss.default",
    ),
    "BCELoss-mean": (UnsupportedOpError, "[ops] no lowering: aten.binary_cross_entropy.default"),
    "BCEWithLogitsLoss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.binary_cross_entropy_with_logits.default",
    ),
    "KLDivLoss-mean": (UnsupportedOpError, "[ops] no lowering: aten.kl_div.default"),
    "SoftMarginLoss-mean": (UnsupportedOpError, "[ops] no lowering: aten.soft_margin_loss.default"),
    "MultiMarginLoss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.multi_margin_loss.default",
    ),
    "MultiLabelMarginLoss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.multilabel_margin_loss.default",
    ),
    "PoissonNLLLoss-mean": (UnsupportedOpError, "[ops] no lowering: aten.poisson_nll_loss.default"),
    "HingeEmbeddingLoss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.hinge_embedding_loss.default",
    ),
    "GaussianNLLLoss-mean": (
        CaptureError,
        "[unsupported] capture refused: data-dependent values (GaussianNLLLoss checks var, CTCLoss lengths)",
    ),
    "CrossEntropyLoss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cross_entropy_loss.default",
    ),
    "NLLLoss-sum": (UnsupportedOpError, "[ops] no lowering: aten.nll_loss_nd.default"),
    "MSELoss-sum": (UnsupportedOpError, "[ops] no lowering: aten.broadcast_tensors.default"),
    "L1Loss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.broadcast_tensors.default, aten.l1_loss.default",
    ),
    "SmoothL1Loss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.broadcast_tensors.default, aten.smooth_l1_loss.default",
    ),
    "HuberLoss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.broadcast_tensors.default, aten.huber_loss.default",
    ),
    "BCELoss-sum": (UnsupportedOpError, "[ops] no lowering: aten.binary_cross_entropy.default"),
    "BCEWithLogitsLoss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.binary_cross_entropy_with_logits.default",
    ),
    "KLDivLoss-sum": (UnsupportedOpError, "[ops] no lowering: aten.kl_div.default"),
    "SoftMarginLoss-sum": (UnsupportedOpError, "[ops] no lowering: aten.soft_margin_loss.default"),
    "MultiMarginLoss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.multi_margin_loss.default",
    ),
    "MultiLabelMarginLoss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.multilabel_margin_loss.default",
    ),
    "PoissonNLLLoss-sum": (UnsupportedOpError, "[ops] no lowering: aten.poisson_nll_loss.default"),
    "HingeEmbeddingLoss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.hinge_embedding_loss.default",
    ),
    "GaussianNLLLoss-sum": (
        CaptureError,
        "[unsupported] capture refused: data-dependent values (GaussianNLLLoss checks var, CTCLoss lengths)",
    ),
    "CrossEntropyLoss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cross_entropy_loss.default",
    ),
    "NLLLoss-none": (UnsupportedOpError, "[ops] no lowering: aten.nll_loss_nd.default"),
    "MSELoss-none": (UnsupportedOpError, "[ops] no lowering: aten.broadcast_tensors.default"),
    "L1Loss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.broadcast_tensors.default, aten.l1_loss.default",
    ),
    "SmoothL1Loss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.broadcast_tensors.default, aten.smooth_l1_loss.default",
    ),
    "HuberLoss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.broadcast_tensors.default, aten.huber_loss.default",
    ),
    "BCELoss-none": (UnsupportedOpError, "[ops] no lowering: aten.binary_cross_entropy.default"),
    "BCEWithLogitsLoss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.binary_cross_entropy_with_logits.default",
    ),
    "KLDivLoss-none": (UnsupportedOpError, "[ops] no lowering: aten.kl_div.default"),
    "SoftMarginLoss-none": (UnsupportedOpError, "[ops] no lowering: aten.soft_margin_loss.default"),
    "MultiMarginLoss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.multi_margin_loss.default",
    ),
    "MultiLabelMarginLoss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.multilabel_margin_loss.default",
    ),
    "PoissonNLLLoss-none": (UnsupportedOpError, "[ops] no lowering: aten.poisson_nll_loss.default"),
    "HingeEmbeddingLoss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.hinge_embedding_loss.default",
    ),
    "GaussianNLLLoss-none": (
        CaptureError,
        "[unsupported] capture refused: data-dependent values (GaussianNLLLoss checks var, CTCLoss lengths)",
    ),
    "CrossEntropyLoss-label_smoothing": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cross_entropy_loss.default",
    ),
    "CrossEntropyLoss-weight_ignore_index": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cross_entropy_loss.default",
    ),
    "CrossEntropyLoss-probability_targets": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cross_entropy_loss.default",
    ),
    "NLLLoss-weight_ignore_index": (
        UnsupportedOpError,
        "[ops] no lowering: aten.nll_loss_nd.default",
    ),
    "NLLLoss2d-plain": (UnsupportedOpError, "[ops] no lowering: aten.nll_loss_nd.default"),
    "BCEWithLogitsLoss-pos_weight": (
        UnsupportedOpError,
        "[ops] no lowering: aten.binary_cross_entropy_with_logits.default",
    ),
    "KLDivLoss-log_target": (UnsupportedOpError, "[ops] no lowering: aten.kl_div.default"),
    "PoissonNLLLoss-log_input_false_full": (
        UnsupportedOpError,
        "[ops] no lowering: aten.poisson_nll_loss.default",
    ),
    "TripletMarginLoss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.triplet_margin_loss.default",
    ),
    "CosineEmbeddingLoss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cosine_embedding_loss.default",
    ),
    "MarginRankingLoss-mean": (
        UnsupportedOpError,
        "[ops] no lowering: aten.margin_ranking_loss.default",
    ),
    "TripletMarginLoss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.triplet_margin_loss.default",
    ),
    "CosineEmbeddingLoss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cosine_embedding_loss.default",
    ),
    "MarginRankingLoss-sum": (
        UnsupportedOpError,
        "[ops] no lowering: aten.margin_ranking_loss.default",
    ),
    "TripletMarginLoss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.triplet_margin_loss.default",
    ),
    "CosineEmbeddingLoss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cosine_embedding_loss.default",
    ),
    "MarginRankingLoss-none": (
        UnsupportedOpError,
        "[ops] no lowering: aten.margin_ranking_loss.default",
    ),
    "TripletMarginLoss-p1_swap": (
        UnsupportedOpError,
        "[ops] no lowering: aten.triplet_margin_loss.default",
    ),
    "CTCLoss-plain": (
        CaptureError,
        "[unsupported] capture refused: data-dependent values (GaussianNLLLoss checks var, CTCLoss lengths)",
    ),
    "LinearCrossEntropyLoss-plain": (
        UnsupportedOpError,
        "[ops] no lowering: aten.cross_entropy_loss.default",
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
