"""`icnseg run` / `icnseg demo`: segment many images, write JSON + overlays, never stop early."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from icnseg.errors import IcnsegError, InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class RunSummary:
    """What a run did: written stems, failures (path, message), instance count, seconds."""

    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    instances: int = 0
    seconds: float = 0.0

    def line(self, out_dir: str | os.PathLike) -> str:
        """One summary line for the terminal."""
        s = (
            f"{len(self.written)} image(s) segmented, {self.instances} instance(s), "
            f"{len(self.failed)} failed, {self.seconds:.1f}s -> {out_dir}"
        )
        return s


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files, folders (their images, sorted) and globs -> image paths; nothing found is an error."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f"{p}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
            out.extend(found)
        elif p.exists():
            out.append(p)
        elif any(ch in item for ch in "*?["):
            found = sorted(
                Path(q)
                for q in glob.glob(item, recursive=True)
                if Path(q).suffix.lower() in IMAGE_EXTENSIONS
            )
            if not found:
                raise InputError(f"{item}: pattern matches no images")
            out.extend(found)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


def _unique_stems(paths: Iterable[Path]) -> list[str]:
    """Output stems, made unique when two inputs share a name (a.jpg, a.png -> a, a-1)."""
    seen: dict[str, int] = {}
    stems = []
    for p in paths:
        n = seen.get(p.stem, 0)
        seen[p.stem] = n + 1
        stems.append(p.stem if n == 0 else f"{p.stem}-{n}")
    return stems


def run_images(
    segment_fn: Callable,
    paths: Sequence[Path],
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    config: dict,
    proposals: str = "builtin",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunSummary:
    """Segment each image with ``segment_fn(image, proposals) -> (instances, prm|None)``."""
    from tqdm import tqdm

    from icnseg.data.voc import read_image
    from icnseg.outputs import write_result
    from icnseg.proposals.loaders import load_proposals_for

    out = Path(out_dir)
    summary = RunSummary()
    t0 = time.perf_counter()
    for path, stem in tqdm(
        list(zip(paths, _unique_stems(paths), strict=True)),
        desc="segment",
        disable=None if progress else True,
        leave=False,
    ):
        try:
            image = read_image(path)
            props = (
                None
                if proposals == "builtin"
                else load_proposals_for(proposals, path.stem, image.shape[:2])
            )
            instances, prm = segment_fn(image, props)
            write_result(
                out,
                stem,
                image,
                instances,
                config,
                prm=prm,
                image_name=path.name,
                class_names=class_names,
            )
        except IcnsegError as exc:
            summary.failed.append((str(path), str(exc)))
            log(f"icnseg: error: {exc}")
            continue
        summary.written.append(stem)
        summary.instances += len(instances)
    summary.seconds = time.perf_counter() - t0
    return summary


def stages_segmenter(run_stages_fn: Callable, classes, cfg, with_prm: bool = False) -> Callable:
    """A run_images ``segment_fn`` from any backend's ``run_stages_fn(image, cfg) -> Stages``."""
    from icnseg.postprocess import check_image, prm_panel, segment_stages

    def fn(image: np.ndarray, proposals):
        image = check_image(image)
        stages = run_stages_fn(image, cfg)
        instances = segment_stages(stages, image.shape[:2], classes, cfg, proposals)
        return instances, (prm_panel(stages, image.shape[:2]) if with_prm else None)

    return fn


def torch_segmenter(model, cfg, with_prm: bool = False) -> Callable:
    """A ``segment_fn`` for run_images backed by the eager PyTorch pipeline."""
    from icnseg.pipeline import run_stages

    return stages_segmenter(lambda image, c: run_stages(model, image, c), model.classes, cfg,
                            with_prm)
