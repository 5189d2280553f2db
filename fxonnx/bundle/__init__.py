"""Deployment bundles: a directory with the ONNX model, a manifest (versions, signature,
verification report, SHA-256 of every file) and a model card, loadable without torch; or a
Triton Inference Server model repository.

``CompiledModel.save_bundle(dir)`` writes one, ``fxonnx.load(dir)`` runs one.
"""

from __future__ import annotations

from ._cli import run_bundle_cli
from ._errors import BundleError
from ._load import BundleModel, Outputs, load
from ._manifest import FORMAT_VERSION, schema, validate
from ._write import save_bundle

__all__ = [
    "FORMAT_VERSION",
    "BundleError",
    "BundleModel",
    "Outputs",
    "load",
    "run_bundle_cli",
    "save_bundle",
    "schema",
    "validate",
]
