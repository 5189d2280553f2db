"""The lean call path: the full input check runs once per signature, bad inputs still get the
same errors after good calls, CPU tensors go to onnxruntime without a copy, threads are safe."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

import fxonnx
from fxonnx.runtime import Session, _session


@pytest.fixture
def compiled() -> fxonnx.CompiledModel:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    return fxonnx.compile(model, (torch.randn(2, 4),), provider="cpu")


def _count_validations(session: Session, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = session.validate

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "validate", counting)
    return calls


def test_a_seen_signature_skips_the_full_check(compiled, monkeypatch) -> None:
    calls = _count_validations(compiled.session, monkeypatch)
    for _ in range(3):  # compile's verification saw batches 2 and 1: 7 is new
        compiled(torch.randn(7, 4))
    assert calls[0] == 1
    compiled(torch.randn(9, 4))  # a new batch size is a new signature
    assert calls[0] == 2
    arr = np.zeros((7, 4), np.float32)
    compiled.session.run_numpy([arr])
    compiled.session.run_numpy([arr + 1])
    assert calls[0] == 3  # numpy signatures are cached apart from torch's


def test_bad_inputs_after_good_calls_get_the_same_errors(compiled) -> None:
    compiled(torch.randn(2, 4))
    compiled.session.run_numpy([np.zeros((2, 4), np.float32)])
    with pytest.raises(fxonnx.InputError, match=r"'input' has dtype float64, expected float32"):
        compiled(torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(fxonnx.InputError, match=r"dim 1 is 5, expected 4"):
        compiled(torch.zeros(2, 5))
    with pytest.raises(fxonnx.InputError, match=r"'input' has dtype float64, expected float32"):
        compiled.session.run_numpy([np.zeros((2, 4), np.float64)])
    with pytest.raises(fxonnx.InputError, match=r"expected 1 input\(s\) \['input'\], got 2"):
        compiled.session.run_numpy([np.zeros((2, 4), np.float32)] * 2)
    # a refused signature is not remembered: it fails again
    with pytest.raises(fxonnx.InputError, match=r"dim 1 is 5, expected 4"):
        compiled(torch.zeros(2, 5))


def test_cpu_tensors_reach_onnxruntime_without_a_copy(compiled, monkeypatch) -> None:
    seen = []
    real = compiled.session._run

    def spy(names, feeds, options):
        seen.append(feeds)
        return real(names, feeds, options)

    monkeypatch.setattr(compiled.session, "_run", spy)
    x = torch.randn(3, 4)
    out = compiled(x)
    (feed,) = seen[0].values()
    assert np.shares_memory(feed, x.numpy())
    ref = nn.functional.relu(
        x @ compiled.captured.state["0.weight"].T + compiled.captured.state["0.bias"]
    )
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_grad_requiring_and_non_contiguous_inputs(compiled) -> None:
    x = torch.randn(4, 3).T  # (3, 4) with transposed strides
    assert not x.is_contiguous()
    w = torch.randn(3, 4, requires_grad=True)
    torch.testing.assert_close(compiled(x), compiled(x.contiguous()), rtol=0, atol=0)
    torch.testing.assert_close(compiled(w), compiled(w.detach()), rtol=0, atol=0)


def test_the_cache_is_bounded(compiled) -> None:
    for n in range(1, _session._MAX_SIGNATURES + 10):
        compiled.session.run_numpy([np.zeros((n, 4), np.float32)])
    assert 0 < len(compiled.session._seen_numpy) <= _session._MAX_SIGNATURES


def test_concurrent_calls_from_threads(compiled) -> None:
    xs = [torch.randn(b, 4) for b in (1, 2, 3, 4, 5, 6)]
    want = [compiled(x) for x in xs]
    compiled.session._seen_torch.clear()
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(30):
                j = (i + k) % len(xs)
                torch.testing.assert_close(compiled(xs[j]), want[j], rtol=0, atol=0)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_seen_signature_runs_without_building_the_checked_path(compiled, monkeypatch) -> None:
    """After one checked call, the same (dtype, shape) goes through ``run_seen``: no validate,
    no device strings; a new shape, or two inputs, still get the full check once."""
    x = torch.randn(6, 4)
    compiled(x)
    calls = _count_validations(compiled.session, monkeypatch)
    assert compiled.session.run_seen([torch.randn(6, 4)]) is not None
    assert compiled.session.run_seen([torch.randn(8, 4)]) is None  # not seen: caller checks
    torch.testing.assert_close(compiled(x), compiled.session.run_torch([x])[0], rtol=0, atol=0)
    assert calls[0] == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(4, 5).T,  # transposed strides
        lambda: torch.randn(5, 8)[:, ::2],  # a step
        lambda: torch.randn(1, 4).expand(5, 4),  # stride 0
        lambda: torch.randn(5, 4, requires_grad=True),
        lambda: torch.randn(10, 4)[5:],  # storage offset
    ],
    ids=["transposed", "strided", "expanded", "requires_grad", "offset"],
)
def test_unusual_layouts_on_a_seen_signature_match_a_contiguous_copy(compiled, make) -> None:
    x = make()
    compiled(torch.randn(5, 4))  # (float32, (5, 4)) is a seen signature from here on
    got = compiled(x)
    want = compiled(x.detach().contiguous().clone())
    assert not got.requires_grad
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_seen_signature_on_another_device_is_still_refused(compiled) -> None:
    compiled(torch.randn(2, 4))
    with pytest.raises(fxonnx.InputError, match=r"'input' is on meta, which onnxruntime cannot"):
        compiled(torch.empty(2, 4, device="meta"))
    with pytest.raises(fxonnx.InputError, match=r"'input' is on meta"):
        compiled.session.run_torch([torch.empty(2, 4, device="meta")])


def test_outputs_do_not_share_memory_between_calls(compiled) -> None:
    x = torch.randn(3, 4)
    first = compiled(x)
    want = first.clone()
    first.fill_(123.0)  # the caller owns the result: writing it changes no later call
    second = compiled(x)
    assert first.data_ptr() != second.data_ptr()
    torch.testing.assert_close(second, want, rtol=0, atol=0)


def test_two_inputs_take_the_seen_path_with_the_shared_dim_checked(monkeypatch) -> None:
    class Two(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a * 2 + b

    cm = fxonnx.compile(Two(), (torch.randn(2, 3), torch.randn(2, 3)), provider="cpu")
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(cm(a, b), a * 2 + b, rtol=1e-6, atol=1e-6)
    calls = _count_validations(cm.session, monkeypatch)
    torch.testing.assert_close(cm(b, a), b * 2 + a, rtol=1e-6, atol=1e-6)
    assert calls[0] == 0
    with pytest.raises(fxonnx.InputError, match="batch"):  # 4 vs 5: one size per dim name
        cm(a, torch.randn(5, 3))
    assert calls[0] == 1
