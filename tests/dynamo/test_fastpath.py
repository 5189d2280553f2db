"""torch.nn's inference fast-path kernels under backend="fxonnx" (``dynamo/_fastpath``): the
decompositions give the kernels' numbers, masks and NaN rows included, and whole eval-mode
encoders run in onnxruntime instead of torch."""

from __future__ import annotations

import pytest
import torch
from dynamo_helpers import assert_outputs_match
from torch import nn

import fxonnx.dynamo as fd
from fxonnx.dynamo._fastpath import native_multi_head_attention, transformer_encoder_layer_fwd


def _layer(norm_first: bool, activation: str) -> nn.TransformerEncoderLayer:
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(
        16, 4, 32, batch_first=True, norm_first=norm_first, activation=activation
    ).eval()


def _masks(batch: int, seq: int) -> dict[str, tuple]:
    padding = torch.zeros(batch, seq, dtype=torch.bool)
    padding[1, seq - 3 :] = True
    causal = nn.Transformer.generate_square_subsequent_mask(seq)
    return {
        "none": (None, None),
        "padding": (None, padding),
        "causal": (causal, None),
        "both": (causal.isinf(), padding),
        "row fully padded": (None, torch.ones(batch, seq, dtype=torch.bool)),
    }


def _kernel_args(layer: nn.TransformerEncoderLayer, x: torch.Tensor, mask, padding) -> tuple:
    attn = layer.self_attn
    padding = nn.functional._canonical_mask(
        mask=padding, mask_name="p", other_type=None, other_name="", target_type=x.dtype
    )
    mask = nn.functional._canonical_mask(
        mask=mask, mask_name="m", other_type=None, other_name="", target_type=x.dtype
    )
    merged, mask_type = attn.merge_masks(mask, padding, x)
    return (
        x, attn.embed_dim, attn.num_heads, attn.in_proj_weight, attn.in_proj_bias,
        attn.out_proj.weight, attn.out_proj.bias, layer.activation_relu_or_gelu == 2,
        layer.norm_first, layer.norm1.eps, layer.norm1.weight, layer.norm1.bias,
        layer.norm2.weight, layer.norm2.bias, layer.linear1.weight, layer.linear1.bias,
        layer.linear2.weight, layer.linear2.bias, merged, mask_type,
    )  # fmt: skip


@pytest.mark.parametrize("masks", list(_masks(3, 7)))
@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "gelu")])
def test_encoder_layer_decomposition_is_the_kernel(
    masks: str, norm_first: bool, activation: str
) -> None:
    layer = _layer(norm_first, activation)
    x = torch.randn(3, 7, 16)
    args = _kernel_args(layer, x, *_masks(3, 7)[masks])
    with torch.no_grad():
        want = torch._transformer_encoder_layer_fwd(*args)
        got = transformer_encoder_layer_fwd(*args)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert want.isnan().any() == (masks == "row fully padded")


@pytest.mark.parametrize("need_weights,average", [(False, True), (True, True), (True, False)])
def test_attention_decomposition_is_the_kernel(need_weights: bool, average: bool) -> None:
    layer = _layer(False, "relu")
    x = torch.randn(2, 5, 16)
    attn = layer.self_attn
    args = (
        x, x, x, 16, 4, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.weight,
        attn.out_proj.bias, None, need_weights, average, None,
    )  # fmt: skip
    with torch.no_grad():
        want = torch._native_multi_head_attention(*args)
        got = native_multi_head_attention(*args)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    if need_weights:
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)
    else:
        assert got[1] is None and want[1] is None


def test_eval_encoder_runs_in_onnxruntime() -> None:
    """Fast-path layers used to stay in torch (0 onnxruntime nodes)."""
    encoder = nn.TransformerEncoder(_layer(False, "relu"), 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 9, 16)
    padding = _masks(2, 9)["padding"][1]
    compiled = torch.compile(encoder, backend="fxonnx")
    with torch.no_grad():
        for kwargs in ({}, {"src_key_padding_mask": padding}):
            assert_outputs_match(encoder(x, **kwargs), compiled(x, **kwargs))
    records = fd.stats().graphs
    assert records and all(r.torch_nodes == 0 and r.onnx_nodes > 0 for r in records), records


def test_eval_attention_runs_in_onnxruntime() -> None:
    attn = _layer(False, "relu").self_attn
    q = torch.randn(3, 6, 16)
    compiled = torch.compile(lambda q: attn(q, q, q), backend="fxonnx")
    with torch.no_grad():
        assert_outputs_match(attn(q, q, q), compiled(q))
    assert all(r.torch_nodes == 0 for r in fd.stats().graphs), fd.stats().graphs


def _optimized_ops(model) -> list[str]:
    """The op types of ``model`` as onnxruntime's CPU optimizer leaves it (what the session
    runs), under fxonnx's session options."""
    import os
    import tempfile

    import onnx
    import onnxruntime as ort

    from fxonnx.runtime._session import SLOW_CPU_FUSIONS, session_options

    with tempfile.TemporaryDirectory() as tmp:
        opts = session_options(1)
        opts.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        ort.InferenceSession(
            model.SerializeToString(),
            opts,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=SLOW_CPU_FUSIONS,
        )
        return [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]


def test_eval_encoder_heads_fold_into_the_attention_matmuls() -> None:
    """The self-attention decomposition projects sequence-first, so each head split is a
    permute onnxruntime folds into FusedMatMul once the default passes drop aot's bmm views
    between them: 2 Transposes per layer remain (the input's and the output's); with
    passes="none" 5 do (the batch-first split left 4: q, k, v and the output)."""
    layers = 2
    encoder = nn.TransformerEncoder(_layer(False, "relu"), layers, enable_nested_tensor=False)
    encoder.eval()
    x = torch.randn(2, 9, 16)
    ops = {}
    for passes in (None, "none"):
        fd.reset_stats()
        torch._dynamo.reset()
        options = {} if passes is None else {"passes": passes}
        compiled = torch.compile(encoder, backend="fxonnx", options=options)
        with torch.no_grad():
            assert_outputs_match(encoder(x), compiled(x))
        (part,) = fd.stats().partitions()
        assert {n.domain for n in part.onnx_model.graph.node} <= {""}  # standard ONNX
        ops[passes] = _optimized_ops(part.onnx_model)
    assert ops[None].count("Transpose") == 2 * layers, ops[None]
    assert ops[None].count("FusedMatMul") == 2 * layers
    assert ops[None].count("Reshape") < ops["none"].count("Reshape")
