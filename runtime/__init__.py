"""Runtime: backends (torch, onnxruntime, tensorrt), engine chaining, device buffers, matcher."""
