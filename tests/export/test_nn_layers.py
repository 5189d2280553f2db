"""One sweep over the torch.nn layers fxonnx promises: each against eager at batches 2 and 5
with a dynamic batch. Layers that cannot be exported are asserted to fail with a clear error."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from fxonnx._errors import ExportError, UnsupportedOpError
from fxonnx.capture import capture
from fxonnx.export import lower


def _bn(layer: nn.Module) -> nn.Module:
    """Batch norm with non-trivial running statistics."""
    c = layer.num_features
    layer.running_mean.copy_(torch.randn(c))
    layer.running_var.copy_(torch.rand(c) + 0.5)
    if layer.affine:
        nn.init.normal_(layer.weight)
        nn.init.normal_(layer.bias)
    return layer


class Pair(nn.Module):
    """Feeds the two halves of the channel dim to a two-input layer."""

    def __init__(self, layer: nn.Module, split: int = 1) -> None:
        super().__init__()
        self.layer, self.split = layer, split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, self.split)
        return self.layer(a, b)


Shape = tuple[int, ...]  # the input shape without the batch
LAYERS: dict[str, tuple[Callable[[], nn.Module], Shape]] = {
    # convolutions
    "conv1d": (lambda: nn.Conv1d(4, 6, 3), (4, 10)),
    "conv1d_strided_dilated": (
        lambda: nn.Conv1d(4, 6, 3, stride=2, dilation=2, padding=2),
        (4, 11),
    ),
    "conv1d_same": (lambda: nn.Conv1d(4, 6, 4, padding="same", dilation=3), (4, 10)),
    "conv2d": (lambda: nn.Conv2d(4, 6, 3, padding=1), (4, 7, 8)),
    "conv2d_grouped": (lambda: nn.Conv2d(4, 6, 3, groups=2, bias=False), (4, 7, 8)),
    "conv2d_depthwise": (lambda: nn.Conv2d(4, 8, 3, groups=4, stride=(2, 1)), (4, 7, 8)),
    "conv2d_dilated_strided": (
        lambda: nn.Conv2d(4, 6, (3, 2), stride=2, dilation=(2, 1), padding=(1, 2)),
        (4, 9, 8),
    ),
    "conv2d_same": (lambda: nn.Conv2d(4, 6, (4, 3), padding="same"), (4, 7, 8)),
    "conv2d_valid": (lambda: nn.Conv2d(4, 6, 3, padding="valid"), (4, 7, 8)),
    "conv2d_reflect": (lambda: nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"), (4, 7, 8)),
    "conv2d_circular": (lambda: nn.Conv2d(4, 6, 3, padding=2, padding_mode="circular"), (4, 7, 8)),
    "conv3d": (lambda: nn.Conv3d(2, 4, 3, padding=1, stride=(1, 2, 1)), (2, 5, 6, 4)),
    "conv_transpose1d": (lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, output_padding=1), (4, 7)),
    "conv_transpose2d": (
        lambda: nn.ConvTranspose2d(
            4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=2
        ),
        (4, 5, 6),
    ),
    "conv_transpose2d_plain": (
        lambda: nn.ConvTranspose2d(4, 3, 2, stride=2, bias=False),
        (4, 5, 6),
    ),
    "conv_transpose3d": (
        lambda: nn.ConvTranspose3d(2, 4, 3, stride=(2, 1, 2), padding=1, output_padding=(1, 0, 1)),
        (2, 3, 4, 3),
    ),
    # pooling
    "max_pool1d": (lambda: nn.MaxPool1d(3, 2, 1, ceil_mode=True), (4, 10)),
    "max_pool2d": (lambda: nn.MaxPool2d(2), (4, 7, 8)),
    "max_pool2d_dilated_ceil": (
        lambda: nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True),
        (4, 9, 8),
    ),
    "max_pool2d_wide_ceil": (lambda: nn.MaxPool2d(3, 3, 1, dilation=2, ceil_mode=True), (4, 7, 8)),
    "max_pool2d_indices": (lambda: nn.MaxPool2d(3, 2, 1, return_indices=True), (4, 7, 8)),
    "max_pool3d": (lambda: nn.MaxPool3d(2, ceil_mode=True), (2, 5, 6, 3)),
    "max_pool1d_indices": (lambda: nn.MaxPool1d(2, return_indices=True), (4, 9)),
    "avg_pool1d": (lambda: nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False), (4, 10)),
    "avg_pool2d": (lambda: nn.AvgPool2d(3, 2, 1), (4, 7, 8)),
    "avg_pool2d_exclude_pad_ceil": (
        lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
        (4, 8, 9),
    ),
    "avg_pool2d_include_pad_ceil": (lambda: nn.AvgPool2d(4, 3, 2, ceil_mode=True), (4, 7, 9)),
    "avg_pool2d_divisor": (
        lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=4),
        (4, 7, 8),
    ),
    "avg_pool2d_divisor_plain": (lambda: nn.AvgPool2d(2, divisor_override=3), (4, 6, 8)),
    "avg_pool3d": (
        lambda: nn.AvgPool3d(2, 1, 1, count_include_pad=False, divisor_override=5),
        (2, 4, 5, 3),
    ),
    "adaptive_avg_pool1d": (lambda: nn.AdaptiveAvgPool1d(5), (4, 10)),
    "adaptive_avg_pool2d": (lambda: nn.AdaptiveAvgPool2d((1, 4)), (4, 6, 8)),
    "adaptive_avg_pool2d_global": (lambda: nn.AdaptiveAvgPool2d(1), (4, 6, 8)),
    "adaptive_avg_pool3d": (lambda: nn.AdaptiveAvgPool3d((2, 1, 3)), (2, 4, 5, 6)),
    "adaptive_max_pool1d": (lambda: nn.AdaptiveMaxPool1d(2), (4, 10)),
    "adaptive_max_pool2d": (lambda: nn.AdaptiveMaxPool2d((3, 1)), (4, 6, 8)),
    "adaptive_max_pool2d_indices": (
        lambda: nn.AdaptiveMaxPool2d(2, return_indices=True),
        (4, 6, 8),
    ),
    "adaptive_max_pool3d": (lambda: nn.AdaptiveMaxPool3d(1), (2, 4, 5, 6)),
    "lp_pool2d": (lambda: nn.LPPool2d(2, 2), (4, 6, 8)),
    # normalisation
    "batch_norm1d": (lambda: _bn(nn.BatchNorm1d(4)), (4,)),
    "batch_norm1d_seq": (lambda: _bn(nn.BatchNorm1d(4)), (4, 7)),
    "batch_norm2d": (lambda: _bn(nn.BatchNorm2d(4)), (4, 5, 6)),
    "batch_norm2d_no_affine": (lambda: _bn(nn.BatchNorm2d(4, affine=False)), (4, 5, 6)),
    "batch_norm3d": (lambda: _bn(nn.BatchNorm3d(2)), (2, 3, 4, 5)),
    "layer_norm": (lambda: nn.LayerNorm(6), (4, 6)),
    "layer_norm_2d": (lambda: nn.LayerNorm((5, 6), elementwise_affine=False), (4, 5, 6)),
    "layer_norm_no_bias": (lambda: nn.LayerNorm(6, bias=False), (3, 6)),
    "group_norm": (lambda: nn.GroupNorm(2, 4), (4, 5, 6)),
    "group_norm_1d_no_affine": (lambda: nn.GroupNorm(3, 6, affine=False), (6, 7)),
    "instance_norm1d": (lambda: nn.InstanceNorm1d(4), (4, 7)),
    "instance_norm2d": (lambda: nn.InstanceNorm2d(4), (4, 5, 6)),
    "instance_norm2d_affine": (lambda: nn.InstanceNorm2d(4, affine=True), (4, 5, 6)),
    "instance_norm2d_running": (
        lambda: _bn(nn.InstanceNorm2d(4, track_running_stats=True)),
        (4, 5, 6),
    ),
    "instance_norm3d": (lambda: nn.InstanceNorm3d(2, affine=True), (2, 3, 4, 5)),
    "local_response_norm": (lambda: nn.LocalResponseNorm(3), (4, 5, 6)),
    # activations
    "relu": (nn.ReLU, (4, 6)),
    "relu6": (nn.ReLU6, (4, 6)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (4, 6)),
    "prelu": (lambda: nn.PReLU(4, 0.3), (4, 5, 6)),
    "elu": (lambda: nn.ELU(0.7), (4, 6)),
    "selu": (nn.SELU, (4, 6)),
    "celu": (lambda: nn.CELU(1.5), (4, 6)),
    "gelu": (nn.GELU, (4, 6)),
    "gelu_tanh": (lambda: nn.GELU("tanh"), (4, 6)),
    "silu": (nn.SiLU, (4, 6)),
    "mish": (nn.Mish, (4, 6)),
    "hardswish": (nn.Hardswish, (4, 6)),
    "hardsigmoid": (nn.Hardsigmoid, (4, 6)),
    "hardtanh": (lambda: nn.Hardtanh(-0.5, 2.0), (4, 6)),
    "softplus": (lambda: nn.Softplus(2.0, 1.0), (4, 6)),
    "softsign": (nn.Softsign, (4, 6)),
    "tanh": (nn.Tanh, (4, 6)),
    "sigmoid": (nn.Sigmoid, (4, 6)),
    "log_sigmoid": (nn.LogSigmoid, (4, 6)),
    "softmax": (lambda: nn.Softmax(1), (4, 6)),
    "log_softmax": (lambda: nn.LogSoftmax(-1), (4, 6)),
    "softmin": (lambda: nn.Softmin(-1), (4, 6)),
    "softmax2d": (nn.Softmax2d, (4, 5, 6)),
    "tanhshrink": (nn.Tanhshrink, (4, 6)),
    "threshold": (lambda: nn.Threshold(0.3, -2.0), (4, 6)),
    "hardshrink": (nn.Hardshrink, (4, 6)),
    "softshrink": (lambda: nn.Softshrink(0.2), (4, 6)),
    "glu": (nn.GLU, (4, 6)),
    "rrelu_eval": (nn.RReLU, (4, 6)),
    # structure
    "flatten": (nn.Flatten, (4, 5, 6)),
    "flatten_partial": (lambda: nn.Flatten(2), (4, 5, 6)),
    "unflatten": (lambda: nn.Unflatten(1, (2, 2)), (4, 5)),
    "identity": (nn.Identity, (4, 6)),
    "dropout": (nn.Dropout, (4, 6)),
    "dropout2d": (nn.Dropout2d, (4, 5, 6)),
    "alpha_dropout": (nn.AlphaDropout, (4, 6)),
    "feature_alpha_dropout": (nn.FeatureAlphaDropout, (4, 5, 6)),
    "linear": (lambda: nn.Linear(6, 3), (6,)),
    "linear_3d": (lambda: nn.Linear(6, 3, bias=False), (4, 6)),
    "bilinear": (lambda: Pair(nn.Bilinear(3, 3, 5), 1), (6,)),
    "bilinear_3d": (lambda: Pair(nn.Bilinear(2, 2, 4, bias=False), 2), (3, 4)),
    "upsample_nearest": (lambda: nn.Upsample(scale_factor=2), (4, 5, 6)),
    "upsample_bilinear": (lambda: nn.UpsamplingBilinear2d(size=(7, 3)), (4, 5, 6)),
    "zero_pad": (lambda: nn.ZeroPad2d((1, 0, 2, 1)), (4, 5, 6)),
    "reflection_pad": (lambda: nn.ReflectionPad2d(2), (4, 5, 6)),
    "replication_pad": (lambda: nn.ReplicationPad1d((3, 1)), (4, 6)),
    "circular_pad": (lambda: nn.CircularPad2d(1), (4, 5, 6)),
    "constant_pad": (lambda: nn.ConstantPad2d(1, 0.5), (4, 5, 6)),
    "pixel_shuffle": (lambda: nn.PixelShuffle(2), (8, 3, 4)),
    "pixel_unshuffle": (lambda: nn.PixelUnshuffle(2), (2, 4, 6)),
    "channel_shuffle": (lambda: nn.ChannelShuffle(2), (4, 3, 2)),
    "cosine_similarity": (lambda: Pair(nn.CosineSimilarity(1)), (8, 5)),
    "cosine_similarity_last": (lambda: Pair(nn.CosineSimilarity(-1, 1e-3), 2), (3, 8)),
    "pairwise_distance": (lambda: Pair(nn.PairwiseDistance()), (8,)),
    "pairwise_distance_p1_keepdim": (
        lambda: Pair(nn.PairwiseDistance(1.0, keepdim=True), 2),
        (3, 8),
    ),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_eager(name: str, onnx_matches: Callable) -> None:
    factory, shape = LAYERS[name]
    torch.manual_seed(0)
    layer = factory()

    def make_inputs(b: int) -> tuple:
        return (torch.randn(b, *shape, generator=torch.Generator().manual_seed(b)),)

    onnx_matches(layer, make_inputs)


REFUSED: dict[str, tuple[Callable[[], nn.Module], Shape, type, str]] = {
    "unfold": (lambda: nn.Unfold(2), (4, 5, 6), UnsupportedOpError, "im2col"),
    "fold": (lambda: nn.Fold((4, 5), 2), (8, 12), UnsupportedOpError, "col2im"),
    "fractional_max_pool": (
        lambda: nn.FractionalMaxPool2d(2, output_size=3),
        (4, 6, 6),
        UnsupportedOpError,
        "fractional_max_pool2d",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_unsupported_layer_raises_clear_error(name: str) -> None:
    factory, shape, error, match = REFUSED[name]
    torch.manual_seed(0)
    captured = capture(factory().eval(), (torch.randn(2, *shape),))
    with pytest.raises(error, match=match):
        lower(captured)


def test_batch_norm_in_training_mode_is_refused() -> None:
    captured = capture(nn.BatchNorm1d(4).train(), (torch.randn(2, 4),))
    with pytest.raises(ExportError, match="batch_norm"):
        lower(captured)


class BroadcastCosine(nn.Module):
    """x1 (N, 1, 3) against x2 (N, 2, 3) along dim 1, where x1's dim has size 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.cosine_similarity(x[:, :1], x[:, 1:], dim=1)


def test_cosine_similarity_broadcasts_before_the_norm(onnx_matches: Callable) -> None:
    # found by the OpInfo suite (nn.functional.cosine_similarity sample 7): the norm of the
    # size-1 operand was taken before broadcasting
    onnx_matches(
        BroadcastCosine(),
        lambda b: (torch.randn(b, 3, 3, generator=torch.Generator().manual_seed(b)),),
    )
