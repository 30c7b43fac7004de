"""`icnseg doctor [--json]`: the JSON report parsed and checked against independent probes,
and the backend x precision verdicts for machines this one is not (synthetic reports)."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import platform
from importlib import metadata

import numpy as np
import pytest

from icnseg import doctor
from icnseg.cli.doctor import format_report
from icnseg.cli.main import main


def _has_driver() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def report():
    """`icnseg doctor --json` of this machine, parsed."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["doctor", "--json"]) == 0
    return json.loads(out.getvalue())


def test_json_report_matches_this_machine(report) -> None:
    assert report["python"]["version"] == platform.python_version()
    assert report["packages"]["numpy"] == np.__version__
    dists = {}
    for name in ("onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            dists[name] = metadata.version(name)
    assert {k: v for k, v in report["onnxruntime"]["distributions"].items()
            if k in dists} == dists
    assert report["onnxruntime"]["providers"]["CPUExecutionProvider"] == "ok"
    combos = {(r["backend"], r["device"], r["precision"]) for r in report["matrix"]}
    assert ("onnxruntime", "cpu", "fp32") in combos and ("tensorrt", "cuda", "int8") in combos
    for row in report["matrix"]:
        assert row["ok"] == (row["missing"] is None)
        assert row["ok"] or "\n" not in row["missing"]


@pytest.mark.skipif(_has_driver(), reason="this machine has an NVIDIA driver")
def test_cpu_machine_says_only_cpu_backends(report) -> None:
    """Without libcuda every GPU row names the missing driver and the summary says so."""
    assert report["driver"]["gpus"] == []
    assert "libcuda.so.1" in report["driver"]["error"]
    for row in report["matrix"]:
        assert row["ok"] == (row["device"] == "cpu" and row["backend"] == "onnxruntime"
                             or (row["backend"] == "torch" and row["missing"] is None))
        if row["device"] != "cpu":
            assert "no NVIDIA driver" in row["missing"]
    assert report["summary"].startswith("only CPU backends are available here")
    text = format_report(report)
    assert text.splitlines()[-1] == report["summary"]
    assert "GPUs         none: no NVIDIA driver" in text


def _gpu_report(report: dict) -> dict:
    """This machine's report as if it had an H100 with onnxruntime-gpu, TensorRT and pycuda."""
    r = copy.deepcopy(report)
    r["driver"] = {"gpus": [{"index": 0, "name": "NVIDIA H100", "compute_capability": "9.0",
                             "memory_mib": 81559}], "error": None, "cuda_driver_api": "12.8",
                   "driver": "570.1"}
    r["onnxruntime"].update(clash=None, providers={p: "ok" for p in doctor.ORT_PROVIDERS})
    r["tensorrt"] = {"flavour": "tensorrt", "version": "10.8.0", "gpus": {"NVIDIA H100": "ok"}}
    r["pycuda"]["version"] = "2025.1"
    return r


def test_matrix_on_a_working_gpu_machine(report) -> None:
    rows = doctor.matrix(_gpu_report(report))
    assert all(r["ok"] for r in rows if r["backend"] != "torch")
    assert doctor.summary(rows).startswith("available here:")


def test_matrix_names_the_one_missing_thing(report) -> None:
    """Two ONNX Runtimes, TensorRT-RTX on a 9.0 GPU, no pycuda: each row says which."""
    from icnseg.artifacts.trt_support import unsupported_gpu
    from icnseg.ort import clash

    r = _gpu_report(report)
    r["onnxruntime"]["clash"] = clash({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.23.2"})
    r["onnxruntime"]["providers"]["CUDAExecutionProvider"] = "libcudnn.so.9 cannot be loaded"
    r["onnxruntime"]["providers"]["TensorrtExecutionProvider"] = "libcudnn.so.9 cannot be loaded"
    why = unsupported_gpu("tensorrt_rtx", "1.2", "9.0", "NVIDIA H100")
    r["tensorrt"] = {"flavour": "tensorrt_rtx", "version": "1.2", "gpus": {"NVIDIA H100": why}}
    rows = {(x["backend"], x["device"], x["precision"]): x for x in doctor.matrix(r)}
    assert "overwrite each other" in rows["onnxruntime", "cuda", "fp32"]["missing"]
    assert rows["tensorrt", "cuda", "fp32"]["missing"] == why
    assert "does not support NVIDIA H100" in why
    assert "fp16 needs tensorrt" in rows["tensorrt", "cuda", "fp16"]["missing"]
    r["onnxruntime"]["clash"] = None
    r["tensorrt"] = {"flavour": "tensorrt", "version": "10.8.0", "gpus": {"NVIDIA H100": "ok"}}
    r["pycuda"]["version"] = None
    rows = {(x["backend"], x["device"], x["precision"]): x for x in doctor.matrix(r)}
    assert rows["onnxruntime", "cuda", "fp32"]["missing"] == (
        "CUDAExecutionProvider: libcudnn.so.9 cannot be loaded")
    assert "pycuda" in rows["tensorrt", "cuda", "int8"]["missing"]


@pytest.mark.gpu
@pytest.mark.skipif(not _has_driver(), reason="needs an NVIDIA driver")
def test_doctor_on_a_gpu_machine(report) -> None:
    """The driver's GPUs are listed; onnxruntime-gpu's CUDA provider really starts."""
    assert report["driver"]["gpus"], report["driver"]["error"]
    if "onnxruntime-gpu" in report["onnxruntime"]["distributions"]:
        assert report["onnxruntime"]["providers"]["CUDAExecutionProvider"] == "ok"
