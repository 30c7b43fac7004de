"""The launch infrastructure (runtime/cuda_launch.py) without a GPU: argument checks, the
missing-pycuda message and the load order fatbin -> nvcc -> unavailable."""

from __future__ import annotations

import hashlib
import importlib
import json
from types import SimpleNamespace

import pytest

from icnseg.errors import BackendUnavailable, IcnsegError, InputError
from icnseg.runtime import cuda_launch as cl


def test_launch_checks_arguments_before_touching_cuda(monkeypatch) -> None:
    """Unknown kernels, wrong argument counts and int32 overflow fail before any CUDA call."""
    monkeypatch.setattr(cl, "function", lambda name: pytest.fail("reached CUDA"))
    with pytest.raises(IcnsegError, match="unknown"):
        cl.launch("no_such_kernel", 1)
    with pytest.raises(IcnsegError, match="takes 5 arguments"):
        cl.launch("pack_masks_kernel", 1, 0, 0, 1)
    with pytest.raises(InputError, match="too large"):
        cl.launch("pack_masks_kernel", 1, 0, 0, 1, 1 << 31, 1)


def test_missing_pycuda_says_how_to_install(monkeypatch) -> None:
    """Without pycuda every entry point raises BackendUnavailable naming the extra."""
    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name.startswith("pycuda"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)
    for call in (cl.driver, cl.gpuarray, lambda: cl.empty((2,), "f4")):
        with pytest.raises(BackendUnavailable, match=r"icnseg\[kernels\]"):
            call()


def _kernel_dir(tmp_path, monkeypatch) -> None:
    """cuda_launch pointed at a folder with demo.cu, common.cuh and a matching fatbin."""
    (tmp_path / "common.cuh").write_text("// common")
    (tmp_path / "demo.cu").write_text("// kernels")
    (tmp_path / "demo.fatbin").write_bytes(b"fatbin")
    monkeypatch.setattr(cl, "SRC_DIR", tmp_path)
    monkeypatch.setattr(cl, "COMMON", tmp_path / "common.cuh")
    digest = hashlib.sha256()  # the recorded hash, computed here independently
    for name in ("demo.cu", "common.cuh"):
        digest.update(name.encode() + b"\0" + (tmp_path / name).read_bytes() + b"\0")
    index = {"cuda": "13.0", "archs": [75, 90], "modules": {"demo": {
        "sources_sha256": digest.hexdigest(),
        "fatbin_sha256": hashlib.sha256(b"fatbin").hexdigest()}}}
    (tmp_path / cl.FATBIN_INDEX).write_text(json.dumps(index))


def _compiler(monkeypatch, fails: Exception | None = None) -> None:
    """A pycuda.compiler stand-in: SourceModule returns ('compiled', src, kw) or raises."""
    def source_module(src, **kw):
        if fails:
            raise fails
        return ("compiled", src, kw)

    compiler = SimpleNamespace(SourceModule=source_module)
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: compiler if name == "pycuda.compiler" else real(name))


def test_matching_fatbin_is_loaded_else_source_is_compiled(tmp_path, monkeypatch, capsys):
    """The fatbin whose recorded sha256 matches the sources loads; a stale one is announced
    once and the .cu compiled; without both, BackendUnavailable."""
    _kernel_dir(tmp_path, monkeypatch)
    _compiler(monkeypatch)
    monkeypatch.setattr(cl, "nvcc", lambda: "/usr/bin/nvcc")
    drv = SimpleNamespace(module_from_file=lambda path: ("fatbin", path))
    assert cl._load(drv, "demo") == ("fatbin", str(tmp_path / "demo.fatbin"))
    assert capsys.readouterr().err == ""
    (tmp_path / "demo.cu").write_text("// kernels, edited")
    kind, src, kw = cl._load(drv, "demo")
    assert (kind, src) == ("compiled", "// kernels, edited") and kw["no_extern_c"]
    assert kw["include_dirs"] == [str(tmp_path)]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "demo.fatbin is stale" in err and "compiling demo.cu" in err
    cl._load(drv, "demo")
    assert capsys.readouterr().err == ""  # announced once
    (tmp_path / "demo.fatbin").unlink()
    (tmp_path / "demo.cu").unlink()
    with pytest.raises(BackendUnavailable, match="demo.cu is not installed"):
        cl._load(drv, "demo")


def test_fatbin_that_does_not_load_falls_back_to_nvcc(tmp_path, monkeypatch, capsys):
    """A driver that rejects the fatbin (too old for CUDA 13, wrong arch) -> compile, with
    a one-line notice naming the fatbin's CUDA version and the driver's error."""
    _kernel_dir(tmp_path, monkeypatch)
    _compiler(monkeypatch)
    monkeypatch.setattr(cl, "nvcc", lambda: "/usr/bin/nvcc")

    def reject(path):
        raise RuntimeError("cuModuleLoad failed: device kernel image is invalid\nmore")

    assert cl._load(SimpleNamespace(module_from_file=reject), "demo")[0] == "compiled"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CUDA 13.0" in err and "kernel image is invalid" in err


def test_no_nvcc_or_failing_nvcc_is_one_line_unavailable(tmp_path, monkeypatch):
    """Fatbin rejected and nvcc absent, or nvcc failing (pycuda's ExecError is an OSError):
    one-line BackendUnavailable, never the raw exception."""
    _kernel_dir(tmp_path, monkeypatch)

    def reject(path):
        raise RuntimeError("cuModuleLoad failed: a PTX JIT compilation failed")

    drv = SimpleNamespace(module_from_file=reject)
    monkeypatch.setattr(cl, "nvcc", lambda: None)
    with pytest.raises(BackendUnavailable, match="nvcc is not on PATH") as exc:
        cl._load(drv, "demo")
    assert "\n" not in str(exc.value) and "PTX JIT" in str(exc.value)
    monkeypatch.setattr(cl, "nvcc", lambda: "/usr/bin/nvcc")
    _compiler(monkeypatch, fails=OSError("error invoking 'nvcc --version': [Errno 2]"))
    with pytest.raises(BackendUnavailable, match="nvcc cannot build demo.cu") as exc:
        cl._load(drv, "demo")
    assert "\n" not in str(exc.value)


def test_load_plan_without_a_gpu(tmp_path, monkeypatch):
    """fatbin when it matches, nvcc when only the compiler is there, else none."""
    _kernel_dir(tmp_path, monkeypatch)
    monkeypatch.setattr(cl, "MODULES", ("demo",))
    monkeypatch.setattr(cl, "nvcc", lambda: None)
    assert cl.load_plan() == {"demo": "fatbin"}
    (tmp_path / "demo.fatbin").write_bytes(b"other")
    assert cl.load_plan() == {"demo": "none"}
    monkeypatch.setattr(cl, "nvcc", lambda: "/usr/bin/nvcc")
    assert cl.load_plan() == {"demo": "nvcc"}
