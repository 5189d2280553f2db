"""``TrainingSession``: step an exported training graph with onnxruntime and numpy alone.

Parameters, buffers and optimizer state live here as numpy arrays between steps: each step feeds
them with the batch, and takes the outputs named ``<name>.new`` as their next values. Initial
values are the ONNX model's initializer defaults of those inputs (written by export_training).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from .._errors import InputError, RuntimeSessionError
from ..runtime import resolve, session_options
from ..runtime._races import racy_on_threads

METADATA_KEY = "fxonnx.training"
log = logging.getLogger(__name__)


class TrainingSession:
    """Runs training steps of a model written by ``fxonnx.export_training``.

    ``step(inputs, targets)`` returns the loss and keeps ``grads`` (name -> array, by
    parameter name); with an optimizer in the graph it also advances ``params`` and ``state``.
    Train-mode buffers (batch-norm running statistics) advance on every step. ``lr`` (with an
    optimizer) may be changed between steps. A graph with a ScatterND reduction (the
    embedding gradient) runs on one onnxruntime thread: that kernel loses updates on more
    (``fxonnx/runtime/_races.py``)."""

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        *,
        provider: str = "cpu",
        threads: int | None = None,
    ) -> None:
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model)
        props = {p.key: p.value for p in proto.metadata_props}
        if METADATA_KEY not in props:
            raise RuntimeSessionError(
                "not a training graph (no fxonnx.training metadata)",
                hint="write it with fxonnx.export_training",
            )
        self.signature: dict[str, Any] = json.loads(props[METADATA_KEY])
        defaults = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        sig = self.signature

        def initial(names: list[str]) -> dict[str, np.ndarray]:
            missing = [n for n in names if n not in defaults]
            if missing:
                raise RuntimeSessionError(f"training graph has no initial value for {missing}")
            return {n: np.array(defaults[n]) for n in names}

        self.params = initial(sig["parameters"])
        self.buffers = initial(sig["buffers"])
        self.state = initial(sig["state"])
        self.lr = float(defaults[sig["lr"]]) if sig["lr"] else None
        self.grads: dict[str, np.ndarray] = {}
        self._updates: dict[str, str] = sig["updates"]
        racy = racy_on_threads(proto)
        if racy and threads != 1:
            log.info("fxonnx: training session on 1 onnxruntime thread: %s", racy[0])
            threads = 1
        try:
            self._session = ort.InferenceSession(
                proto.SerializeToString(),
                session_options(threads),
                providers=resolve(provider),
            )
        except Exception as e:
            first = str(e).strip().splitlines()[0][:300]
            raise RuntimeSessionError(f"onnxruntime could not load the model: {first}") from e
        self._outputs = [o.name for o in self._session.get_outputs()]
        self._dtypes = {i.name: i.type for i in self._session.get_inputs()}

    def _feeds(self, inputs: Any, targets: Any) -> dict[str, np.ndarray]:
        sig = self.signature
        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        ts = list(targets) if isinstance(targets, (list, tuple)) else [targets]
        if len(xs) != len(sig["inputs"]) or len(ts) != len(sig["targets"]):
            raise InputError(
                f"expected {len(sig['inputs'])} input(s) and {len(sig['targets'])} target(s), "
                f"got {len(xs)} and {len(ts)}"
            )
        feeds: dict[str, np.ndarray] = {**self.params, **self.buffers, **self.state}
        if sig["lr"]:
            feeds[sig["lr"]] = np.asarray(self.lr, dtype=np.float32)
        for name, value in zip(sig["inputs"] + sig["targets"], xs + ts, strict=True):
            arr = np.asarray(value)
            want = self._dtypes.get(name)
            if want is not None and want != _onnx_type(arr.dtype):
                raise InputError(f"{name!r} has dtype {arr.dtype}, the graph wants {want}")
            feeds[name] = np.asarray(arr, order="C")
        return feeds

    def run(self, inputs: Any, targets: Any) -> dict[str, np.ndarray]:
        """Every output of one step, by name, without advancing anything."""
        try:
            values = self._session.run(None, self._feeds(inputs, targets))
        except InputError:
            raise
        except Exception as e:
            first = str(e).strip().splitlines()[0][:300]
            raise RuntimeSessionError(f"onnxruntime failed while running: {first}") from e
        return dict(zip(self._outputs, values, strict=True))

    def step(self, inputs: Any, targets: Any) -> float:
        """One training step; returns the loss."""
        out = self.run(inputs, targets)
        self.grads = {n.removeprefix("grad."): out[n] for n in self.signature["grads"]}
        for name, source in self._updates.items():
            for store in (self.params, self.buffers, self.state):
                if source in store:
                    store[source] = out[name]
        return float(out[self.signature["loss"]])


def _onnx_type(dtype: np.dtype) -> str:
    names = {
        np.dtype(np.float32): "tensor(float)",
        np.dtype(np.float64): "tensor(double)",
        np.dtype(np.int64): "tensor(int64)",
        np.dtype(np.int32): "tensor(int32)",
        np.dtype(np.bool_): "tensor(bool)",
        np.dtype(np.float16): "tensor(float16)",
    }
    return names.get(np.dtype(dtype), str(dtype))
