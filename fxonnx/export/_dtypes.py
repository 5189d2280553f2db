"""torch dtype <-> ONNX TensorProto data type, and tensors -> TensorProto without numpy detours."""

from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto

from .._errors import ExportError

TORCH_TO_ONNX: dict[torch.dtype, int] = {
    torch.float32: TensorProto.FLOAT,
    torch.float16: TensorProto.FLOAT16,
    torch.bfloat16: TensorProto.BFLOAT16,
    torch.float64: TensorProto.DOUBLE,
    torch.int64: TensorProto.INT64,
    torch.int32: TensorProto.INT32,
    torch.int16: TensorProto.INT16,
    torch.int8: TensorProto.INT8,
    torch.uint8: TensorProto.UINT8,
    torch.bool: TensorProto.BOOL,
    torch.complex64: TensorProto.COMPLEX64,
    torch.complex128: TensorProto.COMPLEX128,
}
ONNX_TO_TORCH = {v: k for k, v in TORCH_TO_ONNX.items()}
ONNX_TO_NUMPY: dict[int, type] = {
    TensorProto.FLOAT: np.float32,
    TensorProto.FLOAT16: np.float16,
    TensorProto.DOUBLE: np.float64,
    TensorProto.INT64: np.int64,
    TensorProto.INT32: np.int32,
    TensorProto.INT16: np.int16,
    TensorProto.INT8: np.int8,
    TensorProto.UINT8: np.uint8,
    TensorProto.BOOL: np.bool_,
}


def onnx_dtype(dtype: torch.dtype) -> int:
    try:
        return TORCH_TO_ONNX[dtype]
    except KeyError:
        raise ExportError(f"dtype {dtype} has no ONNX equivalent") from None


def tensor_proto(name: str, tensor: torch.Tensor, into: TensorProto | None = None) -> TensorProto:
    """Weights as raw little-endian bytes (bfloat16 included, which numpy lacks); written into
    ``into`` when given (a slot of the model's initializer list: no copy of the weights)."""
    t = tensor.detach().cpu().contiguous()
    proto = TensorProto() if into is None else into
    proto.name = name
    proto.data_type = onnx_dtype(t.dtype)
    proto.dims.extend(t.shape)
    if t.dtype == torch.bfloat16:
        proto.raw_data = t.view(torch.int16).numpy().tobytes()
    elif t.dtype == torch.bool:
        proto.raw_data = t.to(torch.uint8).numpy().tobytes()
    else:
        proto.raw_data = t.numpy().tobytes()
    return proto
