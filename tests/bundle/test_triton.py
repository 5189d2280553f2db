"""Triton model repositories: config.pbtxt parsed back (with a tiny parser of our own) and
checked against the model's signature; the repository's model loads and runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bundle_helpers import compiled

import fxonnx
from fxonnx.bundle import BundleError

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([\[\]{}:,])|([^\s\[\]{}:,"]+))')


def parse_pbtxt(text: str) -> dict[str, Any]:
    """Protobuf text format, enough for config.pbtxt: fields map to lists of values."""
    tokens = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        assert m, f"cannot tokenise at {text[pos : pos + 20]!r}"
        tokens.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    it = iter(tokens + ["}"])

    def value(tok: str) -> Any:
        if tok == "{":
            return message()
        if tok == "[":
            items: list[Any] = []
            tok = next(it)
            while tok != "]":
                if tok != ",":
                    items.append(value(tok))
                tok = next(it)
            return items
        if tok.startswith('"'):
            return tok[1:-1]
        return int(tok) if re.fullmatch(r"-?\d+", tok) else tok

    def message() -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for key in it:
            if key == "}":
                return fields
            tok = next(it)
            if tok == ":":
                tok = next(it)
            fields.setdefault(key, []).append(value(tok))
        raise AssertionError("unbalanced braces")

    return message()


def _flat(values: list) -> list:
    return [v for item in values for v in (item if isinstance(item, list) else [item])]


@pytest.mark.parametrize("name", ["mnist_cnn", "unet_small", "mlp"])
def test_batched_config_matches_signature(tmp_path: Path, name: str) -> None:
    cm = compiled(name)
    target = cm.save_bundle(tmp_path / "repo", fmt="triton", name=name, max_batch_size=16)
    assert target == tmp_path / "repo" / name
    assert (target / "1" / "model.onnx").is_file()
    config = parse_pbtxt((target / "config.pbtxt").read_text())
    assert config["name"] == [name]
    assert config["backend"] == ["onnxruntime"]
    assert config["max_batch_size"] == [16]
    for key, specs in (("input", cm.captured.user_inputs), ("output", cm.captured.outputs)):
        entries = _flat(config[key])
        assert [e["name"] for e in entries] == [[s.name] for s in specs]
        for entry, spec in zip(entries, specs, strict=True):
            assert spec.shape[0] == "batch"
            assert entry["dims"] == [[d if isinstance(d, int) else -1 for d in spec.shape[1:]]]
            assert entry["data_type"] == [{torch.float32: "TYPE_FP32"}[spec.dtype]]
    group = _flat(config["instance_group"])
    assert group == [{"count": [1], "kind": ["KIND_CPU"]}]
    model = fxonnx.load(target)
    assert model.manifest["model"]["file"] == "1/model.onnx"


def test_static_batch_keeps_full_dims_and_gpu_kind(tmp_path: Path) -> None:
    model, inputs = fxonnx.models.get("mlp", batch=2)
    cm = fxonnx.compile(model, inputs, provider="cpu", dynamic=False)
    assert not cm.captured.shapes.dynamic
    target = cm.save_bundle(tmp_path, fmt="triton", name="mlp", provider="cuda")
    config = parse_pbtxt((target / "config.pbtxt").read_text())
    assert config["max_batch_size"] == [0]
    assert _flat(config["input"])[0]["dims"] == [[2, 10]]
    assert _flat(config["output"])[0]["dims"] == [[2, 30]]
    assert _flat(config["instance_group"])[0]["kind"] == ["KIND_GPU"]
    np.testing.assert_allclose(
        fxonnx.load(target)(inputs[0].numpy())["output"],
        cm(inputs[0]).numpy(),
        rtol=1e-6,
        atol=1e-6,
    )


def test_triton_entry_is_not_overwritten_silently(tmp_path: Path) -> None:
    cm = compiled("mlp")
    cm.save_bundle(tmp_path, fmt="triton", name="m")
    with pytest.raises(BundleError, match="already exists"):
        cm.save_bundle(tmp_path, fmt="triton", name="m")
    cm.save_bundle(tmp_path, fmt="triton", name="m", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    with pytest.raises(BundleError, match="plain directory name"):
        cm.save_bundle(tmp_path, fmt="triton", name="../m")
