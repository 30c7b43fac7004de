"""Every bad input of the corpus: a non-zero exit, one line naming the file / flag / key, no
traceback, no hang, inputs unchanged (sha256 before and after), no partial or temp output."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import warnings
from pathlib import Path

import pytest
from faults_corpus import CASES

from icnseg.fileio import is_temp_name
from icnseg.outdir import MARKER

HANG_SECONDS = 120  # a case still running after this is a hang


def _snapshot(root: Path, outputs: list[str]) -> dict[str, str]:
    """sha256 (or link target / kind) of every entry under ``root`` outside ``outputs``."""
    skip = [root / o for o in outputs]
    found = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(dirpath) / name
            if any(p == s or s in p.parents for s in skip):
                continue
            if p.is_symlink():
                found[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif not p.is_dir():
                found[str(p)] = "special"
    return found


def _run_cli(argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of ``icnseg ARGV`` in this process; any exception is a failure."""
    from icnseg.cli import main

    err = io.StringIO()
    with (contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()),
          warnings.catch_warnings(record=True) as caught):
        warnings.simplefilter("always")  # a warning would be extra lines on the terminal
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse refusals
            rc = exc.code if isinstance(exc.code, int) else 1
    hidden = (ResourceWarning, DeprecationWarning, PendingDeprecationWarning, ImportWarning)
    extra = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught
                    if not issubclass(w.category, hidden))  # those Python shows by default
    return rc, err.getvalue() + extra


def _alarm(signum, frame):
    raise TimeoutError(f"hang: still running after {HANG_SECONDS}s")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, assets, tmp_path, monkeypatch):
    """One corpus case, every property checked."""
    if name.startswith(("ckpt-", "train-")) or "force-over-checkpoint" in name:
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    call = CASES[name](tmp_path, assets)
    before = _snapshot(tmp_path, call.outputs)
    fresh = [o for o in call.outputs if not (tmp_path / o).exists()]
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    try:
        rc, err = _run_cli(call.argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == call.exit_code, f"exit {rc}; stderr:\n{err}"
    assert "Traceback" not in err
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, err
    assert call.names in errors[0], errors[0]
    if rc == 2:  # argparse: usage, then the error as the last line
        assert lines[-1] == errors[0]
    else:
        assert all(line.startswith(("icnseg: ", "backend: ")) for line in lines), err
    assert _snapshot(tmp_path, call.outputs) == before, "an input was modified"
    assert not (tmp_path / "PWNED").exists()
    for o in fresh:  # nothing the command was refused for may have appeared
        p = tmp_path / o
        leftovers = [q.name for q in p.rglob("*")] if p.is_dir() else [p.name] * p.exists()
        assert set(leftovers) <= {MARKER}, f"partial output in {o}: {leftovers}"
    temps = [str(p) for p in tmp_path.rglob(".*") if is_temp_name(p.name)]
    assert not temps, f"temp files left: {temps}"


def test_corpus_size():
    """The issue asks for at least 80 bad inputs."""
    assert len(CASES) >= 80
