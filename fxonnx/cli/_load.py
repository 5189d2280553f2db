"""Turning MODEL arguments and --input specs into (module, example inputs).

MODEL is a zoo name (``mlp``), an importable ``package.module:factory`` or a
``path/to/file.py:factory_or_class``. A factory returns a module or ``(module, inputs)``.
--input specs are ``1x3x224x224:float32``, ``int64[2,16]``, or ``.npy``/``.pt`` files.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import UsageError

DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)
_DTYPE_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
}
_BRACKET = re.compile(r"^([a-z0-9]+)\[([\d,\s]*)\]$")
_TIMES = re.compile(r"^(\d+(?:x\d+)*)?(?::([a-z0-9]+))?$")


@dataclass
class LoadedModel:
    """A model ready to compile: ``batch_dims`` is "auto" unless the zoo declares it."""

    name: str
    module: Any
    args: tuple
    batch_dims: Any = "auto"
    source: str = "zoo"


def _dtype(name: str, spec: str) -> Any:
    import torch

    name = _DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise UsageError(
            f"bad --input {spec!r}: unknown dtype {name!r}", hint=f"use one of {', '.join(DTYPES)}"
        )
    return getattr(torch, name)


def _random(shape: tuple[int, ...], dtype: Any, seed: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    # small non-negative ints are valid ids for any embedding table
    return torch.randint(0, 10, shape, generator=gen).to(dtype)


def parse_input(spec: str, seed: int = 0) -> Any:
    """One --input: a random tensor of a shape and dtype, or a tensor loaded from a file."""
    import torch

    if spec.endswith((".npy", ".pt")):
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"--input file not found: {spec}")
        try:
            if spec.endswith(".npy"):
                import numpy as np

                return torch.from_numpy(np.load(path, allow_pickle=False))
            value = torch.load(path, weights_only=True)
        except Exception as e:
            raise UsageError(f"could not read --input {spec}: {e}") from e
        if not isinstance(value, torch.Tensor):
            raise UsageError(f"--input {spec} holds a {type(value).__name__}, not a tensor")
        return value
    text = spec.strip().lower()
    m = _BRACKET.match(text)
    if m:
        dtype = _dtype(m.group(1), spec)
        dims = [d.strip() for d in m.group(2).split(",") if d.strip()]
    else:
        m = _TIMES.match(text)
        if not m or not (m.group(1) or m.group(2)):
            raise UsageError(
                f"bad --input spec {spec!r}",
                hint="write a shape and dtype like 1x3x224x224:float32 or int64[2,16], "
                "or give a .npy/.pt file",
            )
        dtype = _dtype(m.group(2) or "float32", spec)
        dims = m.group(1).split("x") if m.group(1) else []
    shape = tuple(int(d) for d in dims)
    if any(d < 1 for d in shape):
        raise UsageError(
            f"bad --input spec {spec!r}: dims must be >= 1", hint="e.g. 1x3x224x224:float32"
        )
    return _random(shape, dtype, seed)


def _closest(name: str, choices: list[str]) -> str | None:
    found = difflib.get_close_matches(name, choices, n=1, cutoff=0.4)
    return found[0] if found else None


def _import_file(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"model file not found: {path}")
    mod_name = f"_fxonnx_user_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    sys.path.insert(0, str(file.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(mod_name, None)
        raise UsageError(
            f"{path}:{e.lineno}: syntax error: {e.msg}",
            hint="fix the model file (python -m py_compile shows the same error)",
        ) from e
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise UsageError(f"importing {path} failed: {type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(str(file.parent.resolve()))
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise UsageError(
            f"cannot import module {name!r}: {e}",
            hint="check the spelling, or use path/to/file.py:factory for a file",
        ) from e
    except SyntaxError as e:
        raise UsageError(f"{e.filename}:{e.lineno}: syntax error: {e.msg}") from e


def _from_factory(ref: str, module: Any, attr: str) -> tuple[Any, tuple | None]:
    from torch import nn

    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        close = _closest(attr, public)
        raise UsageError(
            f"{ref}: no attribute {attr!r}",
            hint=f"did you mean {close!r}?" if close else "name a factory function or class",
        )
    obj = getattr(module, attr)
    if isinstance(obj, nn.Module):
        return obj, None
    if not callable(obj):
        raise UsageError(f"{ref} is a {type(obj).__name__}, not a factory or nn.Module class")
    try:
        result = obj()
    except TypeError as e:
        if inspect.signature(obj).parameters:
            raise UsageError(
                f"{ref} needs arguments: {e}", hint="point at a factory that takes none"
            ) from e
        raise
    if isinstance(result, nn.Module):
        return result, None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        inputs = result[1]
        return result[0], inputs if isinstance(inputs, tuple) else (
            tuple(inputs) if isinstance(inputs, list) else (inputs,)
        )
    raise UsageError(
        f"{ref} returned a {type(result).__name__}",
        hint="a factory returns an nn.Module or (module, example_inputs)",
    )


def _resize(args: tuple, batch: int) -> tuple:
    import torch

    from ..verify import resize_inputs

    sizes = [[batch] if t.dim() > 0 else [] for t in args if isinstance(t, torch.Tensor)]
    return resize_inputs(args, {}, sizes)[0]


def load_model(ref: str, inputs: list[str] | None = None, batch: int | None = None) -> LoadedModel:
    """Resolve MODEL and its example inputs (--input specs win over the model's own)."""
    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    if inputs and batch is not None:
        raise UsageError("--batch and --input both choose the inputs", hint="give only one")
    parsed = tuple(parse_input(s, seed=i) for i, s in enumerate(inputs or ()))
    if ":" not in ref:
        return _load_zoo(ref, parsed, batch)
    target, attr = ref.rsplit(":", 1)
    if target.endswith(".py") or "/" in target or os.sep in target:
        module, source = _import_file(target), "file"
    else:
        module, source = _import_module(target), "module"
    model, example = _from_factory(ref, module, attr)
    if parsed:
        example = parsed
    elif example is None:
        raise UsageError(
            f"{ref} comes with no example inputs",
            hint="pass --input SHAPE:DTYPE (e.g. --input 1x3x224x224:float32) for each input",
        )
    elif batch is not None:
        example = _resize(example, batch)
    return LoadedModel(ref, model.eval(), tuple(example), "auto", source)


def _load_zoo(name: str, parsed: tuple, batch: int | None) -> LoadedModel:
    from .. import models

    valid = models.names()
    if name not in valid:
        if name.endswith(".py"):
            raise UsageError(
                f"{name}: name the factory too", hint=f"write {name}:make_model (function or class)"
            )
        if name.endswith(".onnx"):
            raise UsageError(f"{name} is an ONNX file; this command needs a PyTorch model")
        close = _closest(name, valid)
        raise UsageError(
            f"unknown model {name!r}",
            hint=(f"did you mean {close!r}? " if close else "")
            + "`fxonnx models` lists the zoo; a module:factory or file.py:factory also works",
        )
    module, example = models.get(name, batch if batch is not None else 2)
    info = models.info(name)
    if parsed:
        if len(parsed) != len(example):
            raise UsageError(
                f"model {name!r} takes {len(example)} input(s) {list(info.input_names)}, "
                f"got {len(parsed)} --input"
            )
        return LoadedModel(name, module, parsed, "auto", "zoo")
    return LoadedModel(name, module, example, tuple(info.batch_dims), "zoo")


def add_model_options(parser: Any, *, batch: bool = True) -> None:
    """--input and --batch, shared by the commands that take a MODEL."""
    parser.add_argument(
        "--input",
        action="append",
        metavar="SPEC",
        help="an example input, once per forward() argument: 1x3x224x224:float32, "
        "int64[2,16], or a .npy/.pt file (zoo models have defaults)",
    )
    if batch:
        parser.add_argument(
            "--batch", type=int, metavar="N", help="batch size of the default inputs (2)"
        )
