"""The one loader: icnseg.load(MODEL) picks the backend from what MODEL is, and
icnseg.segment works on whatever it returns, with no backend argument."""

from __future__ import annotations

import numpy as np
import pytest

import icnseg
from icnseg.errors import ConfigError
from icnseg.loader import ASSETS, auto_backend, check_device


def _sample() -> np.ndarray:
    return icnseg.read_image(sorted((ASSETS / "samples").glob("*.jpg"))[0])


def test_segment_an_export_directory_without_a_backend_argument():
    pytest.importorskip("onnxruntime")
    model = icnseg.load(ASSETS / "export")
    try:
        assert (model.backend, model.device, model.precision) == ("onnxruntime", "cpu", "fp32")
        instances = icnseg.segment(model, _sample())
    finally:
        model.close()
    assert instances and all(i.mask.shape == _sample().shape[:2] for i in instances)


def test_segment_the_default_model_without_a_backend_argument():
    pytest.importorskip("torch")
    model = icnseg.load("default")
    assert model.backend == "torch" and model.classes == ("circle", "square", "triangle",
                                                          "star", "cross")
    instances = icnseg.segment(model, _sample())
    assert instances and all(0.0 < i.score <= 1.0 for i in instances)


def test_auto_backend_and_device_policy(tiny_checkpoint):
    assert auto_backend(ASSETS / "export")[0] == "onnxruntime"
    assert auto_backend(tiny_checkpoint)[0] == "torch"
    assert check_device("tensorrt", None) == "cuda" and check_device("torch", None) == "cpu"
    with pytest.raises(ConfigError, match="--device cuda: the torch backend runs on cpu"):
        check_device("torch", "cuda")
    with pytest.raises(ConfigError, match="unknown backend 'tflite'"):
        icnseg.load(ASSETS / "export", backend="tflite")
