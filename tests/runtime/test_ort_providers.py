"""ONNX Runtime provider checks (icnseg.ort, the onnxruntime backend) on a CPU machine.

The real CPU ONNX Runtime does what onnxruntime-gpu does without a usable GPU: a session asked
for CUDA falls back to the CPU without an error. Stand-ins only replace the provider list
(onnxruntime-gpu lists CUDA even when it cannot start) and the installed distributions.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import types
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from icnseg import ort as iort
from icnseg.errors import BackendUnavailable
from icnseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

ort = pytest.importorskip("onnxruntime")
PRM = Path(__file__).resolve().parents[2] / "icnseg" / "assets" / "export" / "prm.onnx"


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_tiny_model_is_valid_onnx_and_runs_on_the_cpu() -> None:
    """The hand-encoded probe model parses with onnx and computes Relu on the CPU EP."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(iort.tiny_model())
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Relu"]
    session = ort.InferenceSession(iort.tiny_model(), providers=["CPUExecutionProvider"])
    x = np.array([[-2, -1, 0, 1, 2, 3, -4, 5]], np.float32)
    assert np.array_equal(session.run(None, {"x": x})[0], np.where(x > 0, x, 0))
    assert iort.probe_provider(ort, "CPUExecutionProvider") is None


def test_provider_listed_but_not_running_is_one_line_error(monkeypatch) -> None:
    """CUDA listed (as onnxruntime-gpu does) but the session runs on the CPU: refused."""
    listed = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    monkeypatch.setattr(iort, "installed_distributions", lambda: {"onnxruntime-gpu": "1.23.2"})
    with pytest.raises(BackendUnavailable) as exc:
        OnnxRuntimeBackend.load(PRM, "cuda")
    msg = _one_line(exc)
    assert "CUDAExecutionProvider did not start" in msg and "CPUExecutionProvider" in msg
    assert str(PRM) in msg
    assert OnnxRuntimeBackend.load(PRM, "cpu").session.get_providers() == [
        "CPUExecutionProvider"]


def test_provider_not_in_the_build_says_what_to_install() -> None:
    """The CPU wheel has no CUDA provider: the fix is the GPU line, in one line."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has a CUDA provider")
    with pytest.raises(BackendUnavailable) as exc:
        OnnxRuntimeBackend.load(PRM, "cuda")
    msg = _one_line(exc)
    assert "lacks" in msg and "pip install 'icnseg[gpu]'" in msg
    assert "not in this ONNX Runtime build" in iort.probe_provider(ort, "CUDAExecutionProvider")


def test_two_distributions_are_refused_on_a_gpu(monkeypatch) -> None:
    """onnxruntime + onnxruntime-gpu in one environment: GPU devices refuse, naming both and
    the fix; the CPU still loads."""
    both = {"onnxruntime": ("1.32.0", "/site"), "onnxruntime-gpu": ("1.23.2", "/site")}
    monkeypatch.setattr(iort, "_located", lambda: both)
    for device in ("cuda", "tensorrt"):
        with pytest.raises(BackendUnavailable) as exc:
            OnnxRuntimeBackend.load(PRM, device)
        msg = _one_line(exc)
        assert "onnxruntime 1.32.0 and onnxruntime-gpu 1.23.2" in msg
        assert "pip uninstall -y onnxruntime onnxruntime-gpu" in msg
    OnnxRuntimeBackend.load(PRM, "cpu").close()
    assert iort.clash({"onnxruntime": "1"}) is None


def test_two_distributions_in_separate_folders_are_no_clash(monkeypatch) -> None:
    """A --target install on PYTHONPATH does not overwrite the system one: not refused."""
    apart = {"onnxruntime": ("1.32.0", "/usr/lib/site"), "onnxruntime-gpu": ("1.23.2", "/tmp/s")}
    monkeypatch.setattr(iort, "_located", lambda: apart)
    assert iort.clash() is None
    assert iort.installed_distributions() == {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.23.2"}


def test_installed_distributions_reads_package_metadata() -> None:
    """What pip installed, as importlib.metadata reports it."""
    expected = {}
    for name in iort.DISTRIBUTIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            expected[name] = metadata.version(name)
    assert iort.installed_distributions() == expected
    assert "onnxruntime" in expected or "onnxruntime-gpu" in expected


def test_preload_failures_are_collected_quietly(capsys, monkeypatch) -> None:
    """preload_dlls prints failures over several lines; we keep only the library names."""
    def preload_dlls():
        print("Failed to load /x/nvidia/cudnn/lib/libcudnn.so.9: cannot open shared object")
        print("Failed to load libcublasLt.so.12: libcublasLt.so.12: cannot open shared object")
        print("Failed to load libcudnn.so.9: libcudnn.so.9: cannot open shared object")
        print("Please follow https://onnxruntime.ai/docs/install/#cuda-and-cudnn to install")

    monkeypatch.setattr(iort, "load_from_wheels", lambda name: False)
    fake = types.SimpleNamespace(preload_dlls=preload_dlls)
    assert iort.preload(fake) == ["libcudnn.so.9", "libcublasLt.so.12"]
    assert capsys.readouterr().out == ""
    assert iort.preload(types.SimpleNamespace()) == []


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a library")
def test_missed_library_is_loaded_from_nvidia_wheels_on_sys_path(tmp_path, monkeypatch) -> None:
    """A library preload_dlls missed but an nvidia/<pkg>/lib folder on sys.path has (torch's
    wheels, with onnxruntime-gpu in another folder) is loaded; one nowhere stays missing."""
    lib = tmp_path / "site" / "nvidia" / "cufft" / "lib"
    lib.mkdir(parents=True)
    (tmp_path / "stub.c").write_text("int icnseg_cufft_stub(void) { return 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib / "libicnsegfft.so.11"),
                    str(tmp_path / "stub.c")], check=True, capture_output=True)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    def preload_dlls():
        print("Failed to load libicnsegfft.so.11: libicnsegfft.so.11: cannot open shared object")
        print("Failed to load libicnsegnone.so.1: libicnsegnone.so.1: cannot open shared object")

    assert iort.preload(types.SimpleNamespace(preload_dlls=preload_dlls)) == [
        "libicnsegnone.so.1"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build a provider stand-in")
def test_missing_dependency_of_the_provider_library_is_named(tmp_path) -> None:
    """A provider library linked against libcudnn.so.9, which is absent: named in the error."""
    build = tmp_path / "build"
    capi = tmp_path / "onnxruntime" / "capi"
    build.mkdir()
    capi.mkdir(parents=True)
    (build / "stub.c").write_text("int icnseg_stub(void) { return 0; }\n")
    for lib, extra in (("libcudnn.so.9", []),
                       ("libonnxruntime_providers_cuda.so", ["-L.", "-l:libcudnn.so.9"]),
                       ("libonnxruntime_providers_shared.so", [])):
        subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", lib, "stub.c",
                        *extra], cwd=build, check=True, capture_output=True)
    for lib in ("libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so"):
        shutil.copy(build / lib, capi / lib)
    fake = types.SimpleNamespace(__file__=str(tmp_path / "onnxruntime" / "__init__.py"))
    assert iort.provider_problem(fake, "CUDAExecutionProvider") == (
        "libcudnn.so.9 cannot be loaded")


def test_fix_matches_the_problem() -> None:
    """No driver -> the driver; no libnvinfer -> TensorRT; a CUDA library -> the GPU line."""
    assert "NVIDIA driver" in iort.fix_for("libcuda.so.1 cannot be loaded")
    assert "icnseg[tensorrt]" in iort.fix_for("libnvinfer.so.10 cannot be loaded")
    assert iort.GPU_INSTALL in iort.fix_for("libcudnn.so.9 cannot be loaded")


def test_provider_fallback_noise_is_kept_off_stdout(capsys) -> None:
    """ORT's 'EP Error ... Falling back' print stays off stdout (doctor --json), and its
    default logger is at FATAL while the session is made, ERROR after."""
    levels = []

    def session(model, opts, providers):
        levels.append(("during", fake.level))
        print("*************** EP Error ***************\nFalling back to CPU")
        return "session"

    fake = types.SimpleNamespace(level=2, InferenceSession=session)
    fake.set_default_logger_severity = lambda n: setattr(fake, "level", n)
    assert iort.create_session(fake, b"model", None, ["CUDAExecutionProvider"]) == "session"
    assert capsys.readouterr().out == ""
    assert levels == [("during", 4)] and fake.level == 3
