"""The launch infrastructure (runtime/cuda_launch.py) without a GPU: argument checks, the
missing-pycuda message and the fatbin-or-compile choice."""

from __future__ import annotations

import importlib
import os
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
        with pytest.raises(BackendUnavailable, match=r"icnseg\[gpu\]"):
            call()


def test_fresh_fatbin_is_loaded_else_source_is_compiled(tmp_path, monkeypatch) -> None:
    """A fatbin newer than its .cu and common.cuh is loaded; a stale one is ignored."""
    (tmp_path / "common.cuh").write_text("")
    (tmp_path / "demo.cu").write_text("// kernels")
    fatbin = tmp_path / "demo.fatbin"
    fatbin.write_bytes(b"fatbin")
    monkeypatch.setattr(cl, "SRC_DIR", tmp_path)
    monkeypatch.setattr(cl, "COMMON", tmp_path / "common.cuh")
    drv = SimpleNamespace(module_from_file=lambda path: ("fatbin", path))
    compiler = SimpleNamespace(SourceModule=lambda src, **kw: ("compiled", src, kw))
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: compiler if name == "pycuda.compiler" else real(name))
    os.utime(fatbin, (2e9, 2e9))
    assert cl._load(drv, "demo") == ("fatbin", str(fatbin))
    os.utime(fatbin, (1e9, 1e9))  # older than the sources
    kind, src, kw = cl._load(drv, "demo")
    assert (kind, src) == ("compiled", "// kernels") and kw["no_extern_c"]
    assert kw["include_dirs"] == [str(tmp_path)]
    fatbin.unlink()
    (tmp_path / "demo.cu").unlink()
    with pytest.raises(BackendUnavailable):
        cl._load(drv, "demo")
