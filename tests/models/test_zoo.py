"""The zoo's contract: every model builds in eval mode, runs at any batch size, is reproducible
from its seed, and `info()` tells the truth about what `get()` returns."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from fxonnx import models
from fxonnx.models._registry import register

EXPECTED = {
    "mlp",
    "simple_net",
    "linear_regression",
    "logistic_regression",
    "my_net",
    "simple_cnn",
    "lenet_cifar",
    "mnist_cnn",
    "speech_cnn",
    "cnn_mnist_pool",
    "gru_lm",
    "self_attention",
    "resnet18",
    "mobilenet_v2",
    "transformer_encoder",
    "vit_tiny",
    "lstm_tagger",
    "unet_small",
    "bert_tiny",
    "llama_tiny",
    "rnn_tagger",
    "lstm_seq_first",
}
NAMES = models.names()


def _flat(out: object) -> tuple[torch.Tensor, ...]:
    if isinstance(out, torch.Tensor):
        return (out,)
    assert isinstance(out, (tuple, dict)), f"unexpected output type {type(out).__name__}"
    return tuple(out.values()) if isinstance(out, dict) else out


def _concrete(shape: tuple[int | str, ...], batch: int, dims: dict | None = None) -> tuple:
    named = {**(dims or {}), "N": batch}
    return tuple(named[d] if isinstance(d, str) else d for d in shape)


def test_names_are_exactly_the_documented_zoo() -> None:
    assert set(NAMES) == EXPECTED
    assert len(NAMES) == len(EXPECTED)
    assert sorted(NAMES) == NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 3])
def test_runs_eager_in_eval_mode(name: str, batch: int) -> None:
    module, inputs = models.get(name, batch=batch)
    info = models.info(name)
    assert isinstance(module, nn.Module)
    assert not any(m.training for m in module.modules())
    want = [_concrete(s, batch, info.dims) for s in info.input_shapes]
    assert [tuple(x.shape) for x in inputs] == want
    assert [x.dtype for x in inputs] == list(info.input_dtypes)
    with torch.no_grad():
        outputs = _flat(module(*inputs))
    assert len(outputs) == len(info.output_batch_dims)
    for out, dim in zip(outputs, info.output_batch_dims, strict=True):
        assert out.shape[dim] == batch, (tuple(out.shape), dim)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_seed_determines_weights_and_inputs(name: str) -> None:
    m0, x0 = models.get(name, seed=0)
    m0b, x0b = models.get(name, seed=0)
    m1, x1 = models.get(name, seed=1)
    s0, s0b, s1 = m0.state_dict(), m0b.state_dict(), m1.state_dict()
    assert s0.keys() == s0b.keys() == s1.keys()
    assert all(torch.equal(s0[k], s0b[k]) for k in s0)
    assert all(torch.equal(a, b) for a, b in zip(x0, x0b, strict=True))
    assert any(not torch.equal(s0[k], s1[k]) for k in s0)
    assert any(not torch.equal(a, b) for a, b in zip(x0, x1, strict=True))


def test_get_leaves_global_rng_alone() -> None:
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    models.get("mlp", seed=7)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("name", NAMES)
def test_info_agrees_with_get(name: str) -> None:
    info = models.info(name)
    module, inputs = models.get(name, batch=2)
    assert info.name == name
    assert info.description.strip() and "\n" not in info.description
    assert info.input_names == tuple(inspect.signature(module.forward).parameters)
    assert len(info.input_shapes) == len(info.input_dtypes) == len(info.batch_dims) == len(inputs)
    for shape, dim, x in zip(info.input_shapes, info.batch_dims, inputs, strict=True):
        assert shape.count("N") == 1 and shape[dim] == "N"
        assert tuple(x.shape) == _concrete(shape, 2, info.dims)
    assert info.num_parameters == sum(p.numel() for p in module.parameters())
    assert len({"tutorial", "architecture"} & set(info.tags)) == 1
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
    assert ("batchnorm" in info.tags) == has_bn


@pytest.mark.parametrize("name", NAMES)
def test_integer_inputs_index_every_embedding(name: str) -> None:
    module, inputs = models.get(name, batch=3)
    embeddings = [m for m in module.modules() if isinstance(m, nn.Embedding)]
    int_inputs = [x for x in inputs if not x.is_floating_point()]
    assert bool(embeddings) == bool(int_inputs)
    for x in int_inputs:  # ids (and 0/1 masks) that some embedding table can take
        assert x.min() >= 0
        assert x.max() < max(e.num_embeddings for e in embeddings)


def test_batch_norm_statistics_are_not_the_defaults() -> None:
    module, _ = models.get("resnet18")
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    for bn in bns:
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert (bn.running_var > 0).all()
        assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))


def test_gru_hidden_is_batch_dim_one_and_matches_init_hidden() -> None:
    info = models.info("gru_lm")
    module, (tokens, hidden) = models.get("gru_lm", batch=5)
    assert info.input_names == ("tokens", "hidden")
    assert info.batch_dims == (0, 1)
    assert tokens.dtype == torch.int64
    assert module.init_hidden(5).shape == hidden.shape == (1, 5, 64)


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(KeyError) as excinfo:
        models.get("resnet19")
    message = str(excinfo.value)
    assert "did you mean 'resnet18'" in message
    assert all(n in message for n in NAMES)
    with pytest.raises(KeyError, match="mobilenet_v2"):
        models.info("mobilenet")


@pytest.mark.parametrize("batch", [0, -1])
def test_batch_below_one_is_rejected(batch: int) -> None:
    with pytest.raises(ValueError, match="batch"):
        models.get("mlp", batch=batch)


@pytest.mark.parametrize("name", ["bert_tiny", "llama_tiny", "rnn_tagger", "lstm_seq_first"])
def test_named_dims_size_the_inputs_and_name_the_dynamic_dims(name: str) -> None:
    info = models.info(name)
    assert info.dims == {"seq": info.dims["seq"]}
    _, inputs = models.get(name, 3, seq=7)
    for x, shape in zip(inputs, info.input_shapes, strict=True):
        assert tuple(x.shape) == _concrete(shape, 3, {"seq": 7})
    spec = info.dynamic_dims
    assert {n for dims in spec.values() for n in dims.values()} == {"batch", "seq"}
    with pytest.raises(ValueError, match="no dims"):
        models.get(name, 2, height=3)


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("mlp", description="dup", input_shapes=(("N", 10),))(lambda: nn.Identity())
    assert set(models.names()) == EXPECTED
