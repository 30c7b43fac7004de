"""Atomic file and directory writes: outputs appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from icnseg.errors import OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; a finished output gets the permissions a plain open() would.
_FILE_MODE = 0o666 & ~_current_umask()


def is_temp_name(name: str) -> bool:
    """True for the hidden names this module's temp files and folders get (``.x.<rand>.tmp``,
    ``.x.<rand>.mp4.tmp.mp4``, ``.x.old.<pid>``), so a rerun can clean up after a killed one."""
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp." in name
                                     or ".old." in name)


def _temp_sibling(path: Path, suffix: str = "") -> Path:
    """Create and return a temp file next to ``path`` (same filesystem, so rename is atomic)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc})") from exc
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path to write; on success it is renamed onto ``path``, on error removed.

    The temp file keeps ``path``'s suffix so writers that infer a format from it still work.
    """
    path = Path(path)
    tmp = _temp_sibling(path, suffix=path.suffix)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def check_output_dir(path: str | os.PathLike, force: bool = False) -> Path:
    """Return ``path`` as a Path after checking it is absent, empty, or ``force`` was given."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputError(f"{path}: directory is not empty (pass --force to replace its contents)")
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temp directory to fill; on success it replaces ``path``, on error it is removed.

    ``path`` must be absent or empty unless ``force``; a failed write leaves ``path`` untouched.
    """
    path = check_output_dir(path, force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc})") from exc
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
