"""Output folders icnseg owns: never an input folder, never one holding files it did not write.

An output folder of `icnseg run` (and `demo`) carries a marker, ``.icnseg-output``: a JSON
header line, then one relative path per line for every file icnseg wrote there, appended
*before* the file is written (so a ``kill -9`` can never leave an output the log does not
name). Opening a folder:

- refuses an ``--out`` that is, contains or lies inside an input folder, or contains an input
  file (even with ``--force``: inputs are never touched);
- refuses a non-empty folder holding files the log does not name unless ``force``;
- removes the hidden temp files of an earlier killed run;
- without ``resume``: removes the files the earlier run wrote, so two runs never mix;
  with ``resume``: keeps whole image results (``is_whole``) for the caller to skip; video
  frames and annotated videos are always redone (one video cannot be half resumed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from icnseg import __version__
from icnseg.errors import ConfigError, OutputError
from icnseg.fileio import is_temp_name, write_text

MARKER = ".icnseg-output"
_HEADER = {"format": "icnseg-output", "version": 1}
PNG_END = b"IEND\xaeB`\x82"  # the last 8 bytes of every complete PNG


def check_out_flag(value: str | os.PathLike, flag: str = "--out") -> Path:
    """ConfigError for an empty path (it would mean the current folder)."""
    if not str(value).strip():
        raise ConfigError(f"{flag}: empty path (name an output folder)")
    return Path(value)


def check_not_input(out: Path, inputs: Iterable[Path | int], flag: str = "--out") -> None:
    """OutputError if ``out`` is, contains or lies inside an input folder, or holds an input."""
    target = out.resolve()
    for item in inputs:
        if not isinstance(item, Path):
            continue  # a camera
        src = item.resolve()
        if src.is_dir():
            if target == src or src in target.parents:
                raise OutputError(f"{out}: {flag} is or lies inside the input folder {item}; "
                                  "outputs must go elsewhere")
            if target in src.parents:
                raise OutputError(f"{out}: {flag} contains the input folder {item}; "
                                  "outputs must go elsewhere")
        elif target in src.parents:
            raise OutputError(f"{out}: {flag} contains the input {item}; outputs must go "
                              "elsewhere (they could overwrite it)")


def read_log(out: Path) -> set[str] | None:
    """The relative paths the marker names, or None when ``out`` has no (valid) marker."""
    marker = out / MARKER
    try:
        lines = marker.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    try:
        head = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("format") != _HEADER["format"]:
        return None
    return {line for line in lines[1:] if line and not line.startswith("/") and ".." not in line}


def _walk(out: Path) -> list[Path]:
    """Every file, symlink and temp folder under ``out`` (relative), not following links."""
    found = []
    for root, dirs, files in os.walk(out, followlinks=False):
        base = Path(root).relative_to(out)
        found.extend(base / n for n in files)
        found.extend(base / d for d in dirs
                     if (Path(root) / d).is_symlink() or is_temp_name(d))
        dirs[:] = [d for d in dirs if not is_temp_name(d)]
    return found


def is_whole(path: Path) -> bool:
    """A complete result file: JSON that parses to a record, or a PNG with its end chunk."""
    try:
        if path.suffix == ".json":
            return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
        if path.suffix == ".png":
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - len(PNG_END)))
                return f.read() == PNG_END
    except (OSError, ValueError):
        return False
    return path.is_file()


def check_free_space(path: Path, need: int, what: str) -> None:
    """OutputError if the filesystem of ``path`` has less than ``need`` bytes free."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise OutputError(f"{path}: {free / 2**20:.0f} MiB free, {what} needs about "
                          f"{need / 2**20:.0f} MiB; free space or choose another folder")


class OutputDir:
    """An output folder opened under the rules above; ``claim`` each file before writing it."""

    def __init__(self, path: str | os.PathLike, inputs: Sequence[Path | int] = (), *,
                 force: bool = False, resume: bool = False, flag: str = "--out") -> None:
        """Check, clean and claim ``path``; OutputError / ConfigError before any work."""
        self.path = check_out_flag(path, flag)
        self.resume = resume
        out = self.path
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out}: {flag} exists and is not a folder")
        check_not_input(out, inputs, flag)
        self.created = not out.exists()  # removed again if the run fails before any output
        logged = read_log(out) if out.is_dir() else None
        if resume and logged is None and out.is_dir() and any(out.iterdir()):
            raise OutputError(f"{out}: --resume needs a folder an earlier icnseg run wrote "
                              f"(no {MARKER} in it)")
        present = _walk(out) if out.is_dir() else []
        foreign = [p for p in present if str(p) != MARKER and not is_temp_name(p.name)
                   and str(p) not in (logged or set())]
        if foreign and not force:
            raise OutputError(f"{out}: holds {len(foreign)} file(s) icnseg did not write "
                              f"(e.g. {foreign[0]}); choose a new or empty folder, or pass "
                              "--force to write into it anyway")
        for p in present:  # hidden temp files of a killed run
            if is_temp_name(p.name):
                with contextlib.suppress(OSError):
                    if (out / p).is_dir() and not (out / p).is_symlink():
                        shutil.rmtree(out / p)
                    else:
                        (out / p).unlink()
        self.kept: set[str] = set()
        root = out.resolve()
        for rel in sorted(logged or ()):
            parent = (out / rel).resolve().parent
            if parent != root and root not in parent.parents:
                continue  # reached through a symlink: not inside this folder, never touched
            keep = resume and "/" not in rel and Path(rel).suffix in (".json", ".png")
            if keep and is_whole(out / rel):
                self.kept.add(rel)
            else:
                with contextlib.suppress(OSError):
                    (out / rel).unlink()
        self._prune_empty_dirs(logged or ())
        try:
            out.mkdir(parents=True, exist_ok=True)
            if not self.kept:
                head = {**_HEADER, "icnseg": __version__}
                write_text(out / MARKER, json.dumps(head) + "\n")
            self._log = open(out / MARKER, "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
            self._log.write("".join(f"{rel}\n" for rel in sorted(self.kept)))
            self._log.flush()
        except OSError as exc:
            raise OutputError(f"{out}: cannot write here ({exc.strerror or exc})") from exc
        self._claimed: set[str] = set(self.kept)

    def _prune_empty_dirs(self, rels: Iterable[str]) -> None:
        """Remove the (now empty) subfolders earlier logged files lived in."""
        for d in sorted({str(Path(r).parent) for r in rels if "/" in r}, key=len, reverse=True):
            with contextlib.suppress(OSError):
                (self.path / d).rmdir()

    def claim(self, rel: str) -> Path:
        """Log ``rel`` (relative to the folder) as icnseg's and return its full path."""
        if rel not in self._claimed:
            self._log.write(rel + "\n")
            self._log.flush()
            self._claimed.add(rel)
        return self.path / rel

    def has_whole(self, *rels: str) -> bool:
        """True when --resume kept every one of ``rels`` (whole results of an earlier run)."""
        return bool(rels) and all(r in self.kept for r in rels)

    def close(self) -> None:
        """Close the marker log."""
        self._log.close()

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close()
        if exc_type is not None and self.created and not self._claimed:
            with contextlib.suppress(OSError):
                (self.path / MARKER).unlink()
                self.path.rmdir()


def check_output_file(path: str | os.PathLike, flag: str = "--out",
                      inputs: Iterable[str | os.PathLike | None] = (),
                      replaceable: Callable[[Path], bool] | None = None) -> Path:
    """Check before the work that ``path`` can be written and replaces nothing of the user's.

    An existing file is only replaced when ``replaceable(path)`` says icnseg wrote it (e.g.
    an icnseg checkpoint or metrics file); a folder or an input is never replaced.
    """
    path = check_out_flag(path, flag)
    if path.is_dir():
        raise OutputError(f"{path}: {flag} is an existing folder; name a file")
    for item in inputs:
        if item is not None and Path(item).exists() and path.exists() \
                and path.resolve() == Path(item).resolve():
            raise OutputError(f"{path}: {flag} is also an input; name a new file")
    if path.exists() and (replaceable is None or not replaceable(path)):
        raise OutputError(f"{path}: {flag} exists and icnseg did not write it; name a new "
                          "file or move it away")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp"):
            pass
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc})") from exc
    return path


def claim_in(folder: Path, rel: str) -> None:
    """Log ``rel`` in ``folder``'s marker when ``folder`` is an icnseg output folder."""
    if read_log(folder) is None:
        return
    try:
        with open(folder / MARKER, "a", encoding="utf-8") as log:
            log.write(rel + "\n")
    except OSError as exc:
        raise OutputError(f"{folder / MARKER}: cannot write ({exc.strerror or exc})") from exc


def check_replaceable_dir(out: Path, force: bool, sign: str, what: str) -> None:
    """``--force`` replaces a non-empty folder only when it holds ``sign`` (it is ``what``)."""
    if force and out.is_dir() and any(out.iterdir()) and not (out / sign).is_file():
        raise OutputError(f"{out}: --force replaces only {what} (no {sign} here); "
                          "choose a new or empty folder")


def is_result_json(path: Path) -> bool:
    """True when ``path`` is a benchmark result icnseg wrote (``config`` + ``machine``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "config" in data and "machine" in data
