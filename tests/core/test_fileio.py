"""Atomic writes: whole or nothing, normal permissions, never over a user's non-empty folder."""

from __future__ import annotations

import os
import stat

import pytest

from icnseg.errors import OutputError
from icnseg.fileio import atomic_dir, atomic_path, write_text


def test_write_text_is_whole_with_normal_mode(tmp_path):
    path = tmp_path / "a" / "out.json"
    write_text(path, "{}\n")
    assert path.read_text() == "{}\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_atomic_dir(tmp_path):
    out = tmp_path / "export"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a.onnx").write_text("x")
        raise RuntimeError("failed half way")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "a.onnx").write_text("x")
    assert (out / "a.onnx").read_text() == "x"
    with pytest.raises(OutputError, match="not empty"), atomic_dir(out):
        pass
    with atomic_dir(out, force=True) as tmp:
        (tmp / "b.onnx").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["b.onnx"]


def test_output_under_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match=str(blocker)):
        write_text(blocker / "x.json", "{}")
