"""The random-model fuzzer: every drawn model compiles to a match with eager at two shapes or
is refused with one clear FxonnxError. Fixed seed and a bounded example count by default;
``-m slow`` runs the long sweep."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from fuzz_models import Case, cases
from fuzzing import assert_clear_error, assert_matches, check_compile, compile_case
from hypothesis import HealthCheck, given, note, settings

import fxonnx
from fxonnx import FxonnxError

OUTCOMES: Counter[str] = Counter()

_COMMON = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _run(case: Case) -> None:
    note(case.describe())
    OUTCOMES[check_compile(case.model, case.inputs, case.dynamic)] += 1


@settings(max_examples=300, **_COMMON)
@given(cases())
def test_random_models_match_eager_or_are_refused_clearly(case: Case) -> None:
    _run(case)


@pytest.mark.slow
@settings(max_examples=2000, **_COMMON)
@given(cases(max_blocks=6))
def test_random_models_long_run(case: Case) -> None:
    _run(case)


def _differentiable(case: Case) -> bool:
    x = case.inputs[0]
    return case.differentiable and case.batched and x.numel() > 0 and x.dtype.is_floating_point


@settings(max_examples=40, **_COMMON)
@given(cases(max_blocks=3))
def test_random_models_gradients_and_passes(case: Case) -> None:
    """A subset: gradients through the optimized graph match eager autograd, and the default
    passes give the same outputs as ``passes="none"``."""
    note(case.describe())
    try:
        plain = compile_case(case.model, case.inputs, case.dynamic, passes="none")
        optimized = compile_case(case.model, case.inputs, case.dynamic)
    except FxonnxError as e:
        assert_clear_error(e)
        return
    with torch.no_grad():
        want = case.model(*case.inputs)
    assert_matches(plain(*case.inputs), want, what="passes='none'")
    assert_matches(optimized(*case.inputs), plain(*case.inputs), what="default vs none")
    if not _differentiable(case):
        return
    try:
        report = fxonnx.check_gradients(case.model, case.inputs, directions=1)
    except FxonnxError as e:
        assert_clear_error(e)
        return
    assert report.ok, "\n".join(str(c) for c in report.failures())


def test_the_fuzzer_compiles_most_models(request) -> None:
    """Guards the fuzzer itself: if nearly everything were refused it would test nothing."""
    if not OUTCOMES:
        pytest.skip("runs after the default fuzz test in the same session")
    total = sum(OUTCOMES.values())
    print(f"fuzz outcomes: {dict(OUTCOMES)}")
    assert OUTCOMES["matched at 2 shapes"] + OUTCOMES["matched"] >= total // 2, dict(OUTCOMES)
