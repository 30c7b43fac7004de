"""INT8 Q/DQ graphs with ONNX Runtime's static quantiser.

``quantize_int8`` writes a copy of an FP32 graph in which the chosen ops read
QuantizeLinear/DequantizeLinear pairs: per-tensor activation scales and per-output-channel
symmetric INT8 weights, calibrated on the runtime's own inputs (``export.calibrator``).
Why ``onnxruntime.quantization``: it is maintained with the ONNX Runtime the CPU path runs
anyway and emits standard QDQ; nvidia-modelopt's ONNX PTQ pins older onnx/onnxruntime-gpu
releases than this package supports.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from icnseg.errors import BackendUnavailable, ConfigError

CALIB_METHODS = ("minmax", "entropy", "percentile")
ACTIVATIONS = ("symmetric", "asymmetric")
# Ops given Q/DQ: convs, and the ops between them, so integer tensors flow conv to conv.
QUANT_OPS = {"Conv", "Relu", "MaxPool", "Concat", "Resize"}


def _quantization() -> Any:
    """``onnxruntime.quantization`` or say how to install it."""
    try:
        import onnxruntime.quantization as q
    except ImportError as exc:
        raise BackendUnavailable("--precision int8 needs ONNX Runtime's quantiser: "
                                 "pip install 'icnseg[train,cpu]'") from exc
    return q


def check_method(method: str) -> str:
    """ConfigError for an unknown --calib-method."""
    if method not in CALIB_METHODS:
        raise ConfigError(f"--calib-method {method!r}: choose one of {', '.join(CALIB_METHODS)}")
    return method


def quantize_int8(src: Path, dst: Path, feeds: Sequence[dict], method: str = "minmax",
                  activations: str = "symmetric",
                  nodes: Sequence[str] | None = None) -> list[str]:
    """Write the Q/DQ version of ``src`` to ``dst``; returns the names of quantised nodes.

    ``nodes`` (default: every op of ``QUANT_OPS``) limits what is quantised. ``activations``
    "symmetric": INT8 with zero point 0 (TensorRT's form; ONNX Runtime on x86 keeps every
    ReLU as a float op between Q/DQ pairs, so it gains little there); "asymmetric": UINT8
    with a zero point (ONNX Runtime's fast x86 form: ReLU folds into the zero point, convs
    and concats run as integer kernels; TensorRT does not take UINT8 Q/DQ).
    """
    import onnx

    q = _quantization()
    check_method(method)
    calib = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
             "percentile": q.CalibrationMethod.Percentile}[method]

    class Reader(q.CalibrationDataReader):
        """Hands the quantiser one calibration feed at a time."""

        def __init__(self) -> None:
            self.it: Iterator[dict] = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.it, None)

        def rewind(self) -> None:
            self.it = iter(feeds)

    if activations not in ACTIVATIONS:
        raise ConfigError(f"--int8-activations {activations!r}: choose one of "
                          f"{', '.join(ACTIVATIONS)}")
    symmetric = activations == "symmetric"
    model = onnx.load(str(src))
    if nodes is None:
        nodes = [n.name for n in model.graph.node if n.op_type in QUANT_OPS]
    nodes = list(nodes)
    with tempfile.TemporaryDirectory(prefix="icnseg-int8-") as tmp:
        # The calibrator writes augmented copies of the model; keep them out of the export.
        quantize_kwargs: dict[str, Any] = {
            "quant_format": q.QuantFormat.QDQ,
            "activation_type": q.QuantType.QInt8 if symmetric else q.QuantType.QUInt8,
            "weight_type": q.QuantType.QInt8,
            "per_channel": True,
            "calibrate_method": calib,
            "op_types_to_quantize": sorted(QUANT_OPS),
            "nodes_to_quantize": nodes,
            "extra_options": {"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        }
        staged = Path(tmp) / "model.onnx"
        onnx.save(model, str(staged))
        q.quantize_static(str(staged), str(dst), Reader(), **quantize_kwargs)
    return nodes
