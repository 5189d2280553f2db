"""An onnxruntime session that takes and returns torch tensors (or numpy arrays).

Inputs are checked against the signature before onnxruntime sees them. On CUDA, torch CUDA
tensors are bound in place with I/O binding and outputs are written into torch CUDA tensors,
so no data goes through the host.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from .._dimexpr import METADATA_KEY, bind, constraints_from_json
from .._errors import InputError, RuntimeSessionError
from ._providers import CUDA, resolve
from ._races import racy_on_threads

log = logging.getLogger(__name__)

_NUMPY_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

# Distinct input signatures remembered per session; past it the cache starts over (a model fed
# ever-changing shapes pays the full check each call, as before, and memory stays bounded).
_MAX_SIGNATURES = 256


@dataclass(frozen=True)
class IOSpec:
    """A graph input or output: name, numpy dtype, dims (int, or str for a named dynamic dim)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Full graph optimisation, quiet logs, and no spin-waiting threads (on 2-core machines
    spinning threads steal the cores they wait for)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads or max(1, min(os.cpu_count() or 1, 8))
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


SLOW_CPU_FUSIONS = ["SkipLayerNormFusion"]
"""onnxruntime graph fusions left off on the CPU because the fused kernel is slower than the
ops it replaces: onnxruntime 1.31's CPU SkipLayerNormalization (residual Add + LayerNorm)
takes 1.30 ms at [16, 128, 256] where Add + LayerNormalization take 0.19 (0.087 against 0.026
at batch 1; 2 threads). torch.compile graphs of transformer encoders hit it, 8 times in the
zoo's at batch 16 (10.5 ms of 88)."""


def _specs(values: Sequence[Any]) -> tuple[IOSpec, ...]:
    out = []
    for v in values:
        dtype = _NUMPY_DTYPES.get(v.type)
        if dtype is None:
            raise RuntimeSessionError(f"value {v.name} has unsupported type {v.type}")
        out.append(IOSpec(v.name, np.dtype(dtype), tuple(v.shape)))
    return tuple(out)


def _racy_nodes(source: bytes | str) -> list[str]:
    """The nodes whose CPU kernel races on several threads (``_races``); the model is parsed
    only when its bytes name such an op at all."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if b"ScatterND" not in data:
        return []
    return racy_on_threads(onnx.load_from_string(data))


def _load(
    source: bytes | str, options: ort.SessionOptions, providers: list, disabled: list[str]
) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(
            source, options, providers=providers, disabled_optimizers=disabled
        )
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300]
        raise RuntimeSessionError(f"onnxruntime could not load the model: {first}") from e


class Session:
    """Runs an ONNX model (bytes or a path) on ``provider``, validating inputs by name. A
    model with an op whose CPU kernel races on several threads (``_races``) runs on one,
    unless ``options`` are given."""

    def __init__(
        self,
        model: bytes | str | os.PathLike,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        options: ort.SessionOptions | None = None,
    ) -> None:
        self.providers = resolve(provider)
        source = model if isinstance(model, bytes) else os.fspath(model)
        on_cpu = self.providers[0] != CUDA
        if options is None and threads != 1 and on_cpu:
            racy = _racy_nodes(source)
            if racy:  # wrong results beat no speed-up: see runtime/_races
                log.info("fxonnx: session on 1 onnxruntime thread: %s", racy[0])
                threads = 1
        disabled = SLOW_CPU_FUSIONS if on_cpu else []
        self._session = _load(source, options or session_options(threads), self.providers, disabled)
        if any(d == 0 for i in self._session.get_inputs() for d in i.shape):
            # an input of static zero size: onnxruntime's MatMulAddFusion reshapes it for a
            # Gemm with 0 read as "copy the dim" and fails at run time ([3, 0, 6] -> [3, 6])
            disabled = [*disabled, "MatMulAddFusion"]
            self._session = _load(
                source, options or session_options(threads), self.providers, disabled
            )
        meta = self._session.get_modelmeta().custom_metadata_map
        self.dim_constraints = constraints_from_json(meta.get(METADATA_KEY))
        self.inputs = _specs(self._session.get_inputs())
        self.outputs = _specs(self._session.get_outputs())
        self.on_cuda = self._session.get_providers()[0] == CUDA
        self.refuse_empty: tuple[str, ...] = ()
        """Ops of the model that onnxruntime cannot run on empty inputs (see ``aborting_ops``):
        an input with a zero-size dim is refused instead of aborting the process."""
        self._input_names = [s.name for s in self.inputs]
        self._output_names = [s.name for s in self.outputs]
        # signature -> True once ``validate`` accepted it; plain dict inserts of an immutable
        # value, so concurrent callers at worst validate the same signature twice
        self._seen_numpy: dict[tuple, bool] = {}
        self._seen_torch: dict[tuple, bool] = {}
        # (dtype, shape) per tensor of signatures seen with every tensor on the CPU: run_seen
        self._seen_cpu: dict[tuple, bool] = {}
        # InferenceSession.run re-checks the feed names and OrtValue devices in Python (a few
        # µs per call); the feeds built here always carry exactly the graph's inputs as host
        # arrays, so on the CPU the binding's run is called directly when onnxruntime has it
        inner = getattr(self._session, "_sess", None)
        fast = getattr(inner, "run", None) if not self.on_cuda else None
        self._run = fast if callable(fast) else self._session.run

    @property
    def provider(self) -> str:
        return "cuda" if self.on_cuda else "cpu"

    @property
    def pattern_pinned(self) -> bool:
        """Whether onnxruntime keeps one memory pattern for every input size of this model.

        onnxruntime caches a memory pattern (one planned block for all intermediate tensors) per
        input-shape key, made at the first run with that key and never replaced; the key is the
        XOR of every dim of every input. When each dynamic dim appears an even number of times
        (input_ids and attention_mask both [batch, seq]; tokens [batch, T] with a hidden state
        [L, batch, H]) the key is the same at every size, so the first run's shapes plan the
        memory of all later runs, and runs at other sizes allocate tensor by tensor (bert_tiny
        at batch 1 after a first run at batch 2: 72 µs against 62 µs, one thread)."""
        names: dict[str, int] = {}
        for spec in self.inputs:
            for d in spec.shape:
                if isinstance(d, str) or d is None:
                    names[str(d)] = names.get(str(d), 0) + 1
        return bool(names) and all(n % 2 == 0 for n in names.values())

    # -- validation ------------------------------------------------------------------------
    def validate(self, arrays: Sequence[Any], devices: Sequence[str] | None = None) -> None:
        """One clear error for the first input whose count, dtype, rank, dim or device is off;
        dims that share a name must agree across inputs and stay inside the ranges the graph
        supports (the model's ``fxonnx.dims`` metadata)."""
        if len(arrays) != len(self.inputs):
            names = [s.name for s in self.inputs]
            raise InputError(
                f"expected {len(self.inputs)} input(s) {names}, got {len(arrays)}",
                hint="pass the tensors in the order of the model's forward() arguments",
            )
        for i, (spec, arr) in enumerate(zip(self.inputs, arrays, strict=True)):
            dtype = np.dtype(arr.dtype) if not hasattr(arr, "is_cuda") else _torch_np(arr.dtype)
            if dtype != spec.dtype:
                raise InputError(
                    f"input {spec.name!r} has dtype {dtype}, expected {spec.dtype}",
                    hint=f"convert it first (e.g. tensor.to(torch.{_torch_name(spec.dtype)}))",
                )
            shape = tuple(arr.shape)
            if self.refuse_empty and 0 in shape:
                raise InputError(
                    f"input {spec.name!r} has a zero-size dim {list(shape)}; onnxruntime aborts the "
                    f"process running {'/'.join(self.refuse_empty)} on empty inputs",
                    hint="skip the call for an empty batch (the result would be empty too)",
                )
            if len(shape) != len(spec.shape):
                raise InputError(
                    f"input {spec.name!r} has {len(shape)} dims {list(shape)}, expected "
                    f"{len(spec.shape)} {_show(spec.shape)}"
                )
            if devices is not None:
                device = devices[i]
                if not device.startswith(("cpu", "cuda")):
                    raise InputError(
                        f"input {spec.name!r} is on {device}, which onnxruntime cannot read",
                        hint="give a tensor with data on the CPU (or CUDA with provider='cuda')",
                    )
                if device.startswith("cuda") and not self.on_cuda:
                    raise InputError(
                        f"input {spec.name!r} is on {device} but the session runs on the CPU",
                        hint="move it with .cpu(), or compile with provider='cuda'",
                    )
        bind(
            [s.name for s in self.inputs],
            [s.shape for s in self.inputs],
            [tuple(a.shape) for a in arrays],
            self.dim_constraints,
        )

    def check_numpy(self, arrays: Sequence[Any]) -> None:
        """``validate`` on a signature not seen before; a lookup otherwise."""
        try:
            key = tuple([(a.dtype, a.shape) for a in arrays])
        except AttributeError:  # not an array: let validate name it
            self.validate(arrays)
            return
        if key not in self._seen_numpy:
            self.validate(arrays)
            _remember(self._seen_numpy, key)

    # -- running ---------------------------------------------------------------------------
    def run_numpy(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.check_numpy(arrays)
        return self.run_checked(arrays)

    def run_checked(self, arrays: Sequence[Any]) -> list[np.ndarray]:
        """Run host arrays that ``check_numpy`` (or ``validate``) accepted. onnxruntime reads
        any strided numpy array itself (it copies a non-contiguous one), so arrays go in as
        they are; anything else is made one first."""
        feeds = {
            n: a if type(a) is np.ndarray else np.asarray(a)
            for n, a in zip(self._input_names, arrays, strict=True)
        }
        return self._run_feeds(feeds)

    def _run_feeds(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        try:
            return self._run(self._output_names, feeds, None)
        except Exception as e:
            first = str(e).strip().splitlines()[0][:300]
            raise RuntimeSessionError(f"onnxruntime failed while running: {first}") from e

    def run_seen(self, tensors: Sequence[Any]) -> list | None:
        """The outputs, as torch tensors, for CPU tensors whose dtypes and shapes passed the full
        check before on this CPU session; None for anything else (new signature, a tensor that
        requires grad or is not on the CPU, a CUDA session), which ``run_torch`` then handles.

        The signature leaves the device out: a tensor off the CPU fails ``Tensor.numpy()``,
        which only converts CPU tensors, and then takes the checked path."""
        seen = self._seen_cpu
        try:
            if len(tensors) == 1:  # most models: no comprehensions (half a µs a call)
                t = tensors[0]
                if ((t.dtype, t.shape),) not in seen:
                    return None
                feeds = {self._input_names[0]: t.numpy()}
            else:
                if tuple([(t.dtype, t.shape) for t in tensors]) not in seen:
                    return None
                feeds = {n: t.numpy() for n, t in zip(self._input_names, tensors, strict=True)}
        except (AttributeError, RuntimeError, TypeError):  # not tensors; grad; not on the CPU
            return None
        outs = self._run_feeds(feeds)
        # the outputs' arrays own onnxruntime's result buffers (fresh each run), which
        # torch.from_numpy keeps alive: no copy, and nothing the session reuses (a tensor came
        # in, so torch is loaded)
        return list(map(sys.modules["torch"].from_numpy, outs))

    def run_torch(
        self, tensors: Sequence[Any], output_shapes: Sequence[tuple] | None = None
    ) -> list:
        """torch tensors in, torch tensors out. CUDA tensors on a CUDA session go through I/O
        binding; outputs land in torch CUDA tensors when ``output_shapes`` are known."""
        if not self.on_cuda:
            outs = self.run_seen(tensors)
            if outs is not None:
                return outs
        key = tuple([(t.dtype, t.shape, t.device) for t in tensors])
        if key not in self._seen_torch:  # a new signature: the full check, once
            devices = [str(t.device) for t in tensors]
            self.validate(tensors, devices)
            _remember(self._seen_torch, key)
            if not self.on_cuda and all(d == "cpu" for d in devices):
                _remember(self._seen_cpu, tuple([(t.dtype, t.shape) for t in tensors]))
        if self.on_cuda and any(t.is_cuda for t in tensors):
            return self._run_bound(tensors, output_shapes)
        # numpy views share the tensors' memory: no copy
        try:
            arrays = [t.numpy() for t in tensors]
        except (RuntimeError, TypeError):  # requires grad, or not on the CPU
            arrays = [t.detach().cpu().numpy() for t in tensors]
        from_numpy = sys.modules["torch"].from_numpy
        return [from_numpy(o) for o in self.run_checked(arrays)]

    def _run_bound(self, tensors: Sequence[Any], output_shapes: Sequence[tuple] | None) -> list:
        import torch

        binding = self._session.io_binding()
        device = next(t.device for t in tensors if t.is_cuda)
        keep = []
        for spec, t in zip(self.inputs, tensors, strict=True):
            t = t.detach().to(device).contiguous()
            keep.append(t)
            binding.bind_input(
                spec.name, "cuda", device.index or 0, spec.dtype.type, tuple(t.shape), t.data_ptr()
            )
        outs: list[Any] = []
        for i, spec in enumerate(self.outputs):
            if output_shapes is not None:
                out = torch.empty(output_shapes[i], dtype=_np_torch(spec.dtype), device=device)
                binding.bind_output(
                    spec.name,
                    "cuda",
                    device.index or 0,
                    spec.dtype.type,
                    tuple(out.shape),
                    out.data_ptr(),
                )
                outs.append(out)
            else:
                binding.bind_output(spec.name, "cuda", device.index or 0)
                outs.append(None)
        binding.synchronize_inputs()
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        if output_shapes is None:
            return [torch.from_numpy(v).to(device) for v in binding.copy_outputs_to_cpu()]
        return outs


ABORTS_ON_EMPTY = ("LSTM", "GRU")
"""onnxruntime 1.31 calls std::terminate (the process dies) running these on a zero-size batch."""


def aborting_ops(model: Any) -> tuple[str, ...]:
    """The ops of ``model`` (an onnx.ModelProto) in ``ABORTS_ON_EMPTY``, sorted."""
    return tuple(sorted({n.op_type for n in model.graph.node if n.op_type in ABORTS_ON_EMPTY}))


def _remember(seen: dict[tuple, bool], key: tuple) -> None:
    if len(seen) >= _MAX_SIGNATURES:
        seen.clear()
    seen[key] = True


def _show(shape: tuple) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _torch_np(dtype: Any) -> np.dtype:
    import torch

    return (
        np.dtype(torch.empty(0, dtype=dtype).numpy().dtype)
        if dtype != torch.bfloat16
        else np.dtype("V2")
    )


def _np_torch(dtype: np.dtype) -> Any:
    import torch

    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


def _torch_name(dtype: np.dtype) -> str:
    return str(_np_torch(dtype)).removeprefix("torch.")
