"""Comparisons: explicit tolerances, and every way two outputs can differ is a failed check."""

from __future__ import annotations

import pytest
import torch

import fxonnx
from fxonnx.verify import Report, compare, compare_all


def test_within_fp32_tolerance_passes_and_just_outside_fails() -> None:
    want = torch.ones(4)
    assert compare("y", want, want + 1e-5).ok
    bad = compare("y", want, want + 1e-3)
    assert not bad.ok and bad.max_abs == pytest.approx(1e-3, rel=1e-3)


def test_shape_dtype_and_nan_mismatches_fail_with_a_note() -> None:
    assert "shape" in compare("y", torch.zeros(2, 3), torch.zeros(3, 2)).note
    assert "dtype" in compare("y", torch.zeros(2), torch.zeros(2, dtype=torch.float64)).note
    nan = torch.tensor([float("nan"), 1.0])
    assert not compare("y", nan, torch.tensor([0.0, 1.0])).ok
    assert compare("y", nan, nan.clone()).ok


def test_integers_must_be_equal() -> None:
    assert compare("i", torch.tensor([1, 2]), torch.tensor([1, 2])).ok
    assert not compare("i", torch.tensor([1, 2]), torch.tensor([1, 3])).ok


def test_missing_and_extra_outputs_are_failures_not_truncation() -> None:
    one, two = [torch.ones(1)], [torch.ones(1), torch.ones(1)]
    missing = compare_all(["a", "b"], two, one)
    assert [c.ok for c in missing] == [True, False] and missing[1].note == "missing"
    extra = compare_all(["a"], one, two)
    assert [c.ok for c in extra] == [True, False] and extra[1].note == "extra output"


def test_report_raise_names_the_output_and_the_error() -> None:
    report = Report(checks=(compare("logits", torch.ones(3), torch.ones(3) * 2),))
    assert not report.ok and report.failures()[0].name == "logits"
    with pytest.raises(fxonnx.VerificationError, match="output logits: max abs err 1") as e:
        report.raise_if_failed()
    assert e.value.report is report
    data = report.to_dict()
    assert data["ok"] is False and data["checks"][0]["name"] == "logits"
