"""`icnseg run --ray`: list image files, read them with Ray Data, segment them in an actor pool.

The driver lists the inputs (folders, globs, text files of paths) exactly as ``icnseg run``
does and gives every image the same output stem; Ray Data reads the files
(``read_binary_files``), the workers decode, segment and write. The driver then writes
``failures.jsonl`` (one ``{"image", "error"}`` line per image that failed; empty when none)
and, if asked, one COCO results file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icnseg.distributed.ray_batch import (
    ImageName,
    PoolConfig,
    icnseg_cause,
    import_ray,
    segment_dataset,
)
from icnseg.errors import InputError

FAILURES_FILE = "failures.jsonl"  # never a "<stem>.json" / "<stem>.png" of an image
LIST_SUFFIX = ".txt"  # an INPUT with this suffix is a text file of image paths, one a line


def read_path_list(path: Path) -> list[str]:
    """The image paths listed in a text file (blank lines and ``#`` comments skipped);
    relative paths are taken from the list file's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list of image paths ({exc})") from exc
    items = [line.strip() for line in text.splitlines()]
    items = [i for i in items if i and not i.startswith("#")]
    if not items:
        raise InputError(f"{path}: the list of image paths is empty")
    return [i if Path(i).is_absolute() else str(path.parent / i) for i in items]


def expand_files(inputs: Sequence[str]) -> list[Path]:
    """Image files from INPUTs (files, folders, globs, ``.txt`` lists), as ``icnseg run`` lists
    them; videos and cameras are refused (InputError)."""
    from icnseg.cli.sources import expand_images

    items: list[str] = []
    for item in inputs:
        p = Path(item)
        is_list = p.suffix.lower() == LIST_SUFFIX and p.is_file()
        items.extend(read_path_list(p) if is_list else [item])
    return expand_images(items)


def name_files(paths: Sequence[Path]) -> dict[str, ImageName]:
    """Resolved path -> its naming, with the stems ``icnseg run`` gives (duplicates: -1, -2)."""
    from icnseg.cli.sources import make_sources

    names: dict[str, ImageName] = {}
    index = 0
    for source in make_sources(list(paths)):
        for path, stem in zip(source.paths, source.stems, strict=True):
            names[str(Path(path).resolve())] = ImageName(index, str(path), stem, path.name)
            index += 1
    return names


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local cluster with
    ``num_cpus`` (default: this machine's). True if this call started or joined Ray."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=False)
    return True


@dataclass
class BatchResult:
    """What a Ray run did: result rows in input order, failures, totals."""

    written: list[str] = field(default_factory=list)  # stems
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line error)
    instances: int = 0
    seconds: float = 0.0
    coco: list[dict[str, Any]] = field(default_factory=list)


def collect(rows: Sequence[Mapping[str, Any]], names: Mapping[str, ImageName]) -> BatchResult:
    """Sort result rows into input order and total them."""
    order = {path: n.index for path, n in names.items()}
    result = BatchResult()
    for row in sorted(rows, key=lambda r: order.get(str(r["path"]), len(order))):
        if row["error"]:
            origin = names[row["path"]].origin if row["path"] in names else str(row["path"])
            result.failed.append((origin, str(row["error"])))
            continue
        result.written.append(str(row["stem"]))
        result.instances += int(row["instances"])
        result.coco.extend(json.loads(row["coco"]))
    return result


def write_reports(out_dir: Path, result: BatchResult, coco_path: str | None) -> None:
    """``failures.jsonl`` in ``out_dir`` and the COCO results file, atomically."""
    from icnseg.fileio import write_text

    write_text(out_dir / FAILURES_FILE, "".join(
        json.dumps({"image": origin, "error": msg}) + "\n" for origin, msg in result.failed))
    if coco_path:
        write_text(coco_path, json.dumps(result.coco) + "\n")


def segment_files(model: str, paths: Sequence[Path], out_dir: str | os.PathLike, *,
                  backend: str | None = None, device: str | None = None,
                  pool: PoolConfig | None = None, overrides: Mapping[str, Any] | None = None,
                  proposals: str = "builtin", with_prm: bool = False,
                  address: str | None = None, coco_path: str | None = None,
                  log: Callable[[str], None] = print) -> BatchResult:
    """Segment image files on Ray (local cluster unless ``address``/``RAY_ADDRESS``)."""
    names = name_files(paths)
    out = Path(out_dir)
    started = init_ray(address)
    ray = import_ray()
    t0 = time.perf_counter()
    try:
        # reading is I/O: reserving no CPU leaves every CPU to the actor pool (with one CPU
        # per actor on a 2-core machine a 1-CPU read task would wait for ever)
        ds = ray.data.read_binary_files(list(names), include_paths=True, num_cpus=0)
        results = segment_dataset(ds, model, out, backend=backend, device=device, pool=pool,
                                  overrides=overrides, proposals=proposals,
                                  with_prm=with_prm, names=names)
        rows = list(results.iter_rows())
    except Exception as exc:
        cause = icnseg_cause(exc)
        if cause is not None:
            raise cause from None
        raise
    finally:
        if started:
            ray.shutdown()
    result = collect(rows, names)
    result.seconds = time.perf_counter() - t0
    for _, msg in result.failed:
        log(f"icnseg: error: {msg}")
    write_reports(out, result, coco_path)
    return result
