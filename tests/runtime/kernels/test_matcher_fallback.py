"""device_matcher_available loads the kernel modules once; a failure falls back to numpy
with one notice, never an exception out of segment."""

from __future__ import annotations

import pytest

from icnseg.errors import BackendUnavailable
from icnseg.runtime import cuda_launch as cl
from icnseg.runtime import gpu_matcher
from icnseg.settings import SegmentConfig


@pytest.fixture()
def fresh(monkeypatch):
    monkeypatch.setattr(gpu_matcher, "_kernels_load", {})


@pytest.mark.parametrize("failure", [
    BackendUnavailable("CUDA kernels matcher: matcher.fatbin (CUDA 13.0) does not load under "
                       "this driver/GPU (...), and nvcc is not on PATH to compile matcher.cu"),
    OSError("error invoking 'nvcc --version': [Errno 2] No such file or directory"),
])
def test_load_failure_is_one_notice_then_numpy(fresh, monkeypatch, capsys, failure) -> None:
    calls = []

    def function(name):
        calls.append(name)
        raise failure

    monkeypatch.setattr(cl, "function", function)
    cfg = SegmentConfig()
    assert gpu_matcher.device_matcher_available(cfg) is False
    assert gpu_matcher.device_matcher_available(cfg) is False
    assert len(calls) == 1  # tried once per process
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matching with numpy instead" in err
    assert str(failure).split(":")[0] in err


def test_every_module_is_really_loaded(fresh, monkeypatch) -> None:
    """One kernel of each module is prepared, so every module's load is exercised."""
    loaded = []
    monkeypatch.setattr(cl, "function", lambda name: loaded.append(cl.KERNELS[name][0]))
    assert gpu_matcher.device_matcher_available(SegmentConfig()) is True
    assert sorted(loaded) == sorted(cl.MODULES)
    assert gpu_matcher.device_matcher_available(SegmentConfig()) is True
    assert len(loaded) == len(cl.MODULES)


def test_unsupported_rule_is_one_notice_then_numpy(fresh, monkeypatch, capsys) -> None:
    """A rule the kernels lack (scoring='paper') is announced once and never loads them."""
    import dataclasses

    from icnseg import notice

    monkeypatch.setattr(notice, "_seen", set())
    monkeypatch.setattr(cl, "function", lambda name: pytest.fail("kernels loaded"))
    base = SegmentConfig()
    cfg = dataclasses.replace(base, match=dataclasses.replace(base.match, scoring="paper"))
    assert gpu_matcher.device_matcher_available(cfg) is False
    assert gpu_matcher.device_matcher_available(cfg) is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scoring='paper'" in err and "numpy" in err
