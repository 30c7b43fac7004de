"""Batch segmentation on Ray Data: an actor pool segments a dataset of images.

Each actor loads the model once through ``icnseg.load`` (its own backend and device; Ray sets
``CUDA_VISIBLE_DEVICES`` for an actor that asks for GPUs) and writes every image's
``<stem>.json`` + ``<stem>.png`` itself, atomically and in exactly the format of the
single-process ``icnseg run`` (the folder's ``run.json`` is the driver's: ``icnseg run --ray``
writes it before the workers start). What comes back to the driver is one small row per image
(its stem, instance count, error, COCO results), so the images never travel twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import BackendUnavailable, ConfigError, IcnsegError

EXTRA_HINT = "pip install 'icnseg[ray]'"
# Columns a dataset may bring: encoded file bytes (read_binary_files) or a decoded uint8 image
# (read_images), and the file path that names the outputs.
BYTES, IMAGE, PATH = "bytes", "image", "path"
# Columns of the result rows.
RESULT_COLUMNS = ("path", "stem", "instances", "error", "coco")


def import_ray() -> Any:
    """The ``ray`` module, or BackendUnavailable naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the part used)
    except ImportError as exc:
        raise BackendUnavailable(f"Ray Data is not installed ({exc}); {EXTRA_HINT}") from exc
    return ray


@dataclass(frozen=True)
class PoolConfig:
    """The actor pool: how many workers and what each one reserves."""

    workers: int = 1  # actors, each with its own model
    batch_size: int = 4  # images per map_batches call
    cpus_per_worker: float = 1.0  # Ray CPU reservation (also sets OMP_NUM_THREADS in the actor)
    gpus_per_worker: float = 0.0  # Ray GPU reservation (fractions share a GPU)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"--cpus-per-worker must be > 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")


@dataclass(frozen=True)
class ImageName:
    """How one input is named: in errors (``origin``), on disk (``stem``), in the JSON."""

    index: int  # position in the input list (the COCO image_id)
    origin: str  # the path as the user gave it
    stem: str  # output stem under --out (unique)
    name: str  # the record's "image" field


def default_name(path: str, index: int | str) -> ImageName:
    """The naming of a row that came without a mapping: its file's stem and name."""
    p = Path(path)
    return ImageName(index, path, p.stem, p.name)  # type: ignore[arg-type]


def coco_results(image_id: int | str, name: str, instances: list) -> list[dict[str, Any]]:
    """COCO results records of one image (category_id = class index + 1, COCO's 1-based ids)."""
    from icnseg.rle import mask_to_rle

    return [{"image_id": image_id, "file_name": name, "category_id": int(inst.class_index) + 1,
             "segmentation": mask_to_rle(inst.mask), "score": float(inst.score),
             "bbox": [int(v) for v in _xywh(inst.bbox)]} for inst in instances]


def _xywh(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return x0, y0, x1 - x0, y1 - y0


class SegmentWorker:
    """The callable class of ``map_batches``: one model per actor; writes each image's files."""

    def __init__(self, model: str, out_dir: str, backend: str | None = None,
                 device: str | None = None, overrides: Mapping[str, Any] | None = None,
                 proposals: str = "builtin", with_prm: bool = False,
                 names: Mapping[str, ImageName] | None = None) -> None:
        """Load ``model`` on ``backend``/``device`` (None: the loader's auto choice).

        ``model`` and a ``proposals`` folder are best absolute paths, since an actor may run
        in another working directory."""
        from icnseg.loader import auto_backend, check_device, load

        if backend in (None, "auto"):
            backend, _ = auto_backend(model)
        device = check_device(backend, device)
        self.model = load(model, backend=backend, device=device)
        self.cfg = self.model.segment_config(**dict(overrides or {}))
        self.out, self.with_prm = Path(out_dir), with_prm
        self.proposals = proposals
        self.names = dict(names or {})

    def segment_one(self, image: np.ndarray, name: ImageName) -> list:
        """Segment one decoded image and write its JSON + overlay; returns the instances."""
        from icnseg.output.record import write_result
        from icnseg.proposals.loaders import load_proposals_for

        props = (None if self.proposals == "builtin"
                 else load_proposals_for(self.proposals, Path(name.origin).stem,
                                         image.shape[:2]))
        prepared = self.model.prepare(image, props)
        stages = self.model.infer(prepared, self.cfg)
        instances = self.model.select(prepared, stages, self.cfg)
        write_result(self.out, name.stem, image, instances,
                     prm=stages.prm if self.with_prm else None, image_name=name.name)
        return instances

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Segment a batch; a bad image becomes a row with ``error`` set, the rest go on."""
        from icnseg.data.images import decode_image
        from icnseg.preprocess import check_image

        if PATH not in batch or (BYTES not in batch and IMAGE not in batch):
            raise ConfigError(f"the dataset needs a {PATH!r} column and a {BYTES!r} (encoded "
                              f"files) or {IMAGE!r} (uint8 H x W x 3) column; it has "
                              f"{sorted(batch)}")
        rows: dict[str, list] = {c: [] for c in RESULT_COLUMNS}
        for i, path in enumerate(batch[PATH]):
            path = str(path)
            name = self.names.get(path) or default_name(path, Path(path).stem)
            n, error, coco = 0, "", "[]"
            try:
                image = (decode_image(bytes(batch[BYTES][i]), name.origin) if BYTES in batch
                         else check_image(batch[IMAGE][i], name.origin))
                instances = self.segment_one(image, name)
                n = len(instances)
                coco = json.dumps(coco_results(name.index, name.name, instances))
            except IcnsegError as exc:
                msg = str(exc)
                error = msg if msg.startswith(name.origin) else f"{name.origin}: {msg}"
            for col, value in zip(RESULT_COLUMNS, (path, name.stem, n, error, coco),
                                  strict=True):
                rows[col].append(value)
        return {c: np.asarray(v, dtype=np.int64 if c == "instances" else object)
                for c, v in rows.items()}


def segment_dataset(ds: Any, model: str | os.PathLike, out_dir: str | os.PathLike, *,
                    backend: str | None = None, device: str | None = None,
                    pool: PoolConfig | None = None, overrides: Mapping[str, Any] | None = None,
                    proposals: str = "builtin", with_prm: bool = False,
                    names: Mapping[str, ImageName] | None = None) -> Any:
    """Segment a Ray Dataset of images in an actor pool; returns the (lazy) Dataset of result
    rows (path, stem, instances, error, coco); each worker writes ``<stem>.json/.png``.

    ``ds`` needs a ``path`` column and either ``bytes`` (encoded files, as
    ``ray.data.read_binary_files(paths, include_paths=True)`` gives) or ``image`` (uint8
    H x W x 3, as ``ray.data.read_images(paths, include_paths=True)`` gives). ``out_dir`` must
    be reachable by every worker (a shared filesystem on a multi-node cluster).
    """
    ray = import_ray()
    pool = pool or PoolConfig()
    if str(model) != "default":
        model = Path(model).resolve()
    if proposals != "builtin":
        proposals = str(Path(proposals).resolve())
    return ds.map_batches(
        SegmentWorker,
        fn_constructor_kwargs={"model": str(model), "out_dir": str(Path(out_dir).resolve()),
                               "backend": backend, "device": device,
                               "overrides": dict(overrides or {}), "proposals": proposals,
                               "with_prm": with_prm, "names": dict(names or {})},
        compute=ray.data.ActorPoolStrategy(size=pool.workers),
        batch_size=pool.batch_size,
        batch_format="numpy",
        num_cpus=pool.cpus_per_worker,
        num_gpus=pool.gpus_per_worker or None,
    )


def icnseg_cause(exc: BaseException) -> IcnsegError | None:
    """The IcnsegError a Ray task error wraps (an actor that could not load the model, a bad
    dataset), so the CLI can print it on one line; None if there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, IcnsegError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__
    return None
