"""fxonnx: PyTorch -> torch.fx -> ONNX -> onnxruntime, checked against eager at every step."""
