"""``icnseg.ray``: segment a Ray Dataset of images in an actor pool (``pip install 'icnseg[ray]'``).

    import ray, icnseg.ray
    ds = ray.data.read_binary_files(paths, include_paths=True)
    rows = icnseg.ray.segment_dataset(ds, "default", "out/", pool=icnseg.ray.PoolConfig(workers=2))
    for row in rows.iter_rows():   # path, stem, instances, error ("" when ok), coco (JSON)
        ...

Each worker writes ``out/<stem>.json`` + ``<stem>.png`` exactly as ``icnseg run`` does.
"""

from __future__ import annotations

from icnseg.distributed.ray_batch import PoolConfig, SegmentWorker, segment_dataset

__all__ = ["PoolConfig", "SegmentWorker", "segment_dataset"]
