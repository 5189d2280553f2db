"""The runners of ``fxonnx bench`` and the timing loop."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ._load import LoadedModel

RUNNERS = ("fxonnx", "eager", "torch.compile", "torch.onnx")


@dataclass
class Measure:
    """One runner at one batch size; ``error`` set (and no timings) when it failed."""

    runner: str
    batch: int
    ok: bool
    error: str | None = None
    export_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    iters: int = 0
    throughput: float | None = None  # samples per second
    export_rss_mb: float | None = None  # RSS growth while exporting / compiling
    peak_rss_mb: float | None = None  # RSS growth while running (warmup and timed runs)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _RssPeak:
    """Samples the resident set size in a thread; ``growth_mb`` is peak minus start."""

    def __init__(self) -> None:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth_mb(self) -> float:
        return max(0, self.peak - self.start) / 2**20


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every value reported was measured)."""
    rank = max(1, round(q / 100 * len(sorted_ms) + 0.5 - 1e-9))
    return sorted_ms[min(rank, len(sorted_ms)) - 1]


def _setup(
    name: str,
    loaded: LoadedModel,
    state: dict[str, Any],
    provider: str,
    passes: dict[str, Any] | None = None,
) -> Callable:
    """Build the runner (timed as export time); returns a call running one batch. ``passes``:
    fxonnx's --passes/--skip/--prune (the competitors get the model as it is)."""
    import torch
    import torch.utils._pytree as pytree

    args = loaded.args
    tensors = [t for t in pytree.tree_leaves(args) if isinstance(t, torch.Tensor)]
    if name == "fxonnx":
        from .._compile import compile as fx_compile

        compiled = state.get("fxonnx")
        if compiled is not None and "batch" in compiled.captured.shapes.names:
            state["reused"] = True
        else:
            options = dict(passes or {})
            if "dynamic_dims" not in options:  # --dynamic given: the zoo's batch dims yield
                options["batch_dims"] = loaded.batch_dims
            compiled = fx_compile(loaded.module, args, provider=provider, **options)
            state["fxonnx"] = compiled
        return lambda: compiled.run_flat(args)
    if name == "eager":
        module = loaded.module

        def eager() -> Any:
            with torch.no_grad():
                return module(*args)

        return eager
    if name == "torch.compile":
        if "torch.compile" not in state:  # not `or`: bool() of a module may call len()
            state["torch.compile"] = torch.compile(loaded.module)
        compiled_fn = state["torch.compile"]

        def call() -> Any:
            with torch.no_grad():
                return compiled_fn(*args)

        call()  # compilation happens on the first call: count it as export time
        return call
    if name == "torch.onnx":
        from ..export import require_torch_onnx
        from ..runtime import Session, session_options

        require_torch_onnx()
        program = torch.onnx.export(loaded.module, args, dynamo=True, verbose=False)
        session = Session(
            program.model_proto.SerializeToString(), provider=provider, options=session_options()
        )
        return lambda: session.run_torch(tensors)
    raise ValueError(f"unknown runner {name!r}")


def _timed(fn: Callable, *, warmup: int, iters: int | None, seconds: float | None) -> list[float]:
    """Milliseconds per call: ``iters`` calls, or calls until ``seconds`` passed (at least 3)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds if seconds is not None else None
    while True:
        s = time.perf_counter()
        fn()
        times.append((time.perf_counter() - s) * 1e3)
        if deadline is not None:
            if time.perf_counter() >= deadline and len(times) >= 3:
                return times
        elif len(times) >= (iters or 1):
            return times


def measure(
    name: str,
    loaded: LoadedModel,
    batch: int,
    state: dict[str, Any],
    *,
    provider: str,
    warmup: int,
    iters: int | None,
    seconds: float | None,
    passes: dict[str, Any] | None = None,
) -> Measure:
    """Set up ``name`` and time it; failures of competitors become ``ok=False`` with the error
    (fxonnx failures too: the caller decides the exit code)."""
    try:
        state.pop("reused", None)
        with _RssPeak() as setup_rss:
            t0 = time.perf_counter()
            fn = _setup(name, loaded, state, provider, passes)
            export_ms = (time.perf_counter() - t0) * 1e3
        reused = state.pop("reused", False)
        with _RssPeak() as run_rss:
            times = _timed(fn, warmup=warmup, iters=iters, seconds=seconds)
    except Exception as e:  # noqa: BLE001 - a failing competitor is a result
        first = (str(e).strip().splitlines() or [""])[0][:300]
        return Measure(name, batch, False, error=f"{type(e).__name__}: {first}")
    times.sort()
    mean = statistics.fmean(times)
    return Measure(
        name,
        batch,
        True,
        export_ms=None if reused else round(export_ms, 3),
        p50_ms=_percentile(times, 50),
        p90_ms=_percentile(times, 90),
        p99_ms=_percentile(times, 99),
        mean_ms=mean,
        iters=len(times),
        throughput=batch / (mean / 1e3),
        export_rss_mb=None if reused else round(setup_rss.growth_mb, 2),
        peak_rss_mb=round(run_rss.growth_mb, 2),
        notes=["reuses the dynamic-batch export of the first batch size"] if reused else [],
    )
