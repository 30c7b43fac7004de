"""Export: checkpoint -> prm.onnx (forward, peaks, explicit gradient graph), icn.onnx, manifest."""
