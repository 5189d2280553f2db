"""16-bit float outputs that miss eager's tolerance are judged against a float64 run: a deep
bfloat16 net passes when it is as close to it as eager, and a wrong one still fails."""

from __future__ import annotations

import torch

import fxonnx
from fxonnx import models
from fxonnx.verify._compare import compare
from fxonnx.verify._reference import against_reference


def test_a_deep_bfloat16_net_is_judged_against_float64() -> None:
    model, (x,) = models.get("vit_tiny", batch=2)
    model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    cm = fxonnx.compile(model, (x,))  # raises VerificationError if any check fails
    notes = [c.note for c in cm.report.checks]
    assert all(c.ok for c in cm.report.checks)
    assert any("judged against the model in float64" in n for n in notes), notes


def test_a_result_farther_from_float64_than_eager_fails() -> None:
    exact = torch.linspace(-4, 4, 64, dtype=torch.float64)
    eager = (exact + 0.01).to(torch.bfloat16)
    wrong = (exact + 0.5).to(torch.bfloat16)
    near = (exact - 0.012).to(torch.bfloat16)
    for got, ok in ((wrong, False), (near, True)):
        first = compare("out", eager, got)
        judged = against_reference(first, eager, got, exact)
        assert judged.ok is ok, judged
        assert "float64" in judged.note
