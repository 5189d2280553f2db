"""Shared benchmark helpers: quiet torch.onnx exports, interleaved latency medians."""

from __future__ import annotations

import os

# OpenMP reads its wait policy when torch loads it, so this runs before the first torch import
# (every benchmark imports this module before torch): set later, eager torch's idle threads spin
# against onnxruntime's on two cores (vit_tiny eager 2.5 ms with it, 13-180 ms without)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import io  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

from fxonnx import models  # noqa: E402
from fxonnx.runtime import session_options  # noqa: E402


def torch_onnx_export(name: str, model: torch.nn.Module, inputs: tuple) -> onnx.ModelProto:
    """torch.onnx.export(dynamo=True) with the zoo's batch dims dynamic, as a user would call it."""
    info = models.info(name)
    batch = torch.export.Dim("batch")
    dynamic = tuple({d: batch} for d in info.batch_dims)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                inputs,
                dynamo=True,
                dynamic_shapes=dynamic,
                verbose=False,
                input_names=list(info.input_names),
            )
    finally:
        logging.disable(logging.NOTSET)
    buf = io.BytesIO()
    onnx.save_model(program.model_proto, buf)
    return onnx.load_model_from_string(buf.getvalue())


def train_without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Training mode with dropout off (nn.Dropout and MultiheadAttention's): a training step
    measured, and compared across backends, without random masks."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0
    return model


def optimized_node_count(model: onnx.ModelProto) -> int:
    """Nodes left after onnxruntime's own optimizer (level ALL, CPU provider): what the session
    really runs. Variants that end up with the same graph run the same kernels, so a latency gap
    between them is noise."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = session_options()
        opts.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return len(onnx.load(opts.optimized_model_filepath).graph.node)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(
        model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
    )


def feeds(sess: ort.InferenceSession, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
    return {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs, strict=True)}


def interleaved_latency(
    sessions: Sequence[ort.InferenceSession],
    inputs: Sequence[torch.Tensor],
    rounds: int,
    iters: int,
) -> list[float]:
    """Median seconds per run for each session, alternating A/B/... each round (fairer on a
    2-core machine whose speed drifts)."""
    all_feeds = [feeds(s, inputs) for s in sessions]
    for s, f in zip(sessions, all_feeds, strict=True):
        s.run(None, f)  # warm-up
    samples: list[list[float]] = [[] for _ in sessions]
    for _ in range(rounds):
        for i, (s, f) in enumerate(zip(sessions, all_feeds, strict=True)):
            t0 = time.perf_counter()
            for _ in range(iters):
                s.run(None, f)
            samples[i].append((time.perf_counter() - t0) / iters)
    return [statistics.median(x) for x in samples]
