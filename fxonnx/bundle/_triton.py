"""Triton Inference Server ``config.pbtxt`` for the onnxruntime backend, from a manifest.

With a dynamic dim named ``batch`` at dim 0 of every input and output, Triton owns that dim:
``max_batch_size`` > 0 and the dims listed leave it out. Otherwise ``max_batch_size: 0`` and
the full dims. Other dynamic dims are -1.
"""

from __future__ import annotations

import json
from typing import Any

TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
    "str": "TYPE_STRING",
}


def batched(manifest: dict[str, Any]) -> bool:
    """Whether Triton may batch: a dynamic batch at dim 0 of every input and output."""
    tensors = manifest["inputs"] + manifest["outputs"]
    return "batch" in manifest["dynamic_dims"] and all(
        t["shape"] and t["shape"][0] == "batch" for t in tensors
    )


def _tensor(t: dict[str, Any], strip_batch: bool) -> str:
    dtype = TRITON_TYPES.get(t["dtype"])
    if dtype is None:
        from ._errors import BundleError

        raise BundleError(f"tensor {t['name']!r} has dtype {t['dtype']}, which Triton lacks")
    shape = t["shape"][1:] if strip_batch else t["shape"]
    dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape)
    return (
        "  {\n"
        f"    name: {json.dumps(t['name'])}\n"
        f"    data_type: {dtype}\n"
        f"    dims: [ {dims} ]\n"
        "  }"
    )


def config_pbtxt(manifest: dict[str, Any], name: str, *, provider: str, max_batch_size: int) -> str:
    strip = batched(manifest)
    kind = "KIND_GPU" if provider == "cuda" else "KIND_CPU"

    def block(key: str, tensors: list[dict[str, Any]]) -> str:
        return f"{key} [\n" + ",\n".join(_tensor(t, strip) for t in tensors) + "\n]"

    return "\n".join(
        [
            f"name: {json.dumps(name)}",
            'backend: "onnxruntime"',
            f"max_batch_size: {max_batch_size if strip else 0}",
            block("input", manifest["inputs"]),
            block("output", manifest["outputs"]),
            "instance_group [\n  {\n    count: 1\n    kind: " + kind + "\n  }\n]",
            "",
        ]
    )
