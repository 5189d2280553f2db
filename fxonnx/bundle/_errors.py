"""The bundle stage's error: writing, reading or trusting a bundle directory failed."""

from __future__ import annotations

from .._errors import FxonnxError


class BundleError(FxonnxError):
    """A bundle could not be written, or a bundle on disk is malformed, tampered with, unsafe
    (paths escaping the directory) or from a format version this fxonnx does not know."""
