"""A loaded bundle's lean call: manifest and session checks once per input signature, the same
errors for bad inputs after good calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fxonnx


def test_a_seen_signature_skips_the_checks_and_errors_stay(bundle: Path, monkeypatch) -> None:
    served = fxonnx.load(bundle)
    calls = [0]
    real = served.validate

    def counting(arrays):
        calls[0] += 1
        return real(arrays)

    monkeypatch.setattr(served, "validate", counting)
    x = np.random.default_rng(0).standard_normal((3, 1, 16, 16)).astype(np.float32)
    first = served(x)["output"]
    again = served(x)["output"]
    assert calls[0] == 1
    np.testing.assert_array_equal(first, again)
    out = served(torch.from_numpy(x))  # the same signature once converted
    assert calls[0] == 1 and isinstance(out[0], torch.Tensor)
    np.testing.assert_array_equal(out[0].numpy(), first)
    with pytest.raises(fxonnx.InputError, match=r"has dtype float64, expected float32"):
        served(x.astype(np.float64))
    with pytest.raises(fxonnx.InputError, match=r"dim 2 is 15, expected 16"):
        served(x[:, :, :15])
    with pytest.raises(fxonnx.InputError, match=r"missing input\(s\)"):
        served()
