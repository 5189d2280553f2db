"""One CompiledModel and one loaded bundle called from 8 threads at once give the same results
as serial calls (onnxruntime sessions are thread-safe for run(); fxonnx's wrappers must be)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import fxonnx
from fxonnx.models import get

THREADS = 8
CALLS = 12  # per thread


def _inputs() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    # different batch sizes, so concurrent calls also differ in shape
    return [torch.randn(1 + i % 4, 1, 16, 16, generator=gen) for i in range(THREADS * CALLS)]


def _hammer(call: Callable[[torch.Tensor], np.ndarray], xs: list[torch.Tensor]) -> list:
    """Every input once, from THREADS threads released together, in a shuffled order."""
    start = threading.Barrier(THREADS)
    results: list = [None] * len(xs)

    def worker(k: int) -> None:
        start.wait()
        for i in range(k, len(xs), THREADS):
            results[i] = call(xs[i])

    with ThreadPoolExecutor(THREADS) as pool:
        for f in [pool.submit(worker, k) for k in range(THREADS)]:
            f.result()
    return results


@pytest.fixture(scope="module")
def compiled():
    model, inputs = get("mnist_cnn")
    return model, fxonnx.compile(model, inputs, provider="cpu")


def test_a_compiled_model_from_8_threads_matches_serial_calls(compiled) -> None:
    model, cm = compiled
    xs = _inputs()
    serial = [cm(x).numpy() for x in xs]
    parallel = _hammer(lambda x: cm(x).numpy(), xs)
    for i, (a, b) in enumerate(zip(serial, parallel, strict=True)):
        assert np.array_equal(a, b), f"call {i} differs from the serial result"
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(serial[5]), model(xs[5]), rtol=1e-4, atol=1e-5)


def test_a_loaded_bundle_from_8_threads_matches_serial_calls(compiled, tmp_path: Path) -> None:
    _, cm = compiled
    served = fxonnx.load(cm.save_bundle(tmp_path / "b"))
    xs = _inputs()
    arrays = [x.numpy() for x in xs]
    serial = [served(a)[0] for a in arrays]
    parallel = _hammer(lambda x: served(x.numpy())[0], xs)
    mixed = _hammer(lambda x: served(x)[0].numpy(), xs)  # torch tensors in, concurrently
    for i in range(len(xs)):
        assert np.array_equal(serial[i], parallel[i]), f"numpy call {i} differs"
        assert np.array_equal(serial[i], mixed[i]), f"torch call {i} differs"
        assert np.array_equal(serial[i], cm(xs[i]).numpy())
