"""Readers for precomputed proposals: MCG ``.mat``, COCO-RLE ``.json``, a folder of PNG masks."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from icnseg.errors import InputError
from icnseg.proposals.types import Proposals

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def load_proposals(path: str | os.PathLike, image_shape: tuple[int, ...],
                   max_proposals: int | None = None) -> Proposals:
    """Read proposals for an image of ``image_shape`` ((H, W) or (H, W, C)).

    ``.mat``: MCG's released format (``superpixels`` 1-based [H, W] + ``labels`` cell array of
    superpixel-id lists), kept factorised. ``.json``: a list of {"segmentation": RLE, ...} or
    {"proposals": [...]}. A directory: every ``*.png`` in name order, nonzero = mask. Proposals
    keep file order (MCG and most tools write best first); ``max_proposals`` keeps the first N.
    """
    path = Path(path)
    if len(image_shape) < 2:
        raise InputError(f"image_shape must be (H, W[, C]), got {image_shape}")
    shape = (int(image_shape[0]), int(image_shape[1]))
    if path.is_dir():
        return _load_png_dir(path, shape, max_proposals)
    if not path.is_file():
        raise InputError(f"{path}: no such proposal file or directory")
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return _load_mcg(path, shape, max_proposals)
    if suffix == ".json":
        return _load_rle_json(path, shape, max_proposals)
    raise InputError(f"{path}: unknown proposal format (want .mat, .json or a PNG folder)")


def _load_mcg(path: Path, shape: tuple[int, int], limit: int | None) -> Proposals:
    """MCG .mat (MATLAB v5/v7): superpixel map + per-proposal superpixel id lists."""
    import scipy.io

    with open(path, "rb") as f:
        head = f.read(520)
    if _HDF5_MAGIC in head[:8] or head[512:520] == _HDF5_MAGIC:
        raise InputError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save with "
                         "save(..., '-v7')")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises many types for corrupt files
        raise InputError(f"{path}: not a readable MATLAB file ({exc})") from exc
    if "superpixels" not in mat or "labels" not in mat:
        raise InputError(f"{path}: MCG file needs 'superpixels' and 'labels' variables")
    sp = np.asarray(mat["superpixels"])
    if sp.shape != shape:
        raise InputError(f"{path}: superpixel map is {sp.shape}, image is {shape}")
    if sp.size == 0 or not np.issubdtype(sp.dtype, np.number) or sp.min() < 1:
        raise InputError(f"{path}: superpixel labels must be integers starting at 1")
    n_sp = int(sp.max())
    cells = np.asarray(mat["labels"], dtype=object).ravel()
    if limit is not None:
        cells = cells[:limit]
    member = np.zeros((len(cells), n_sp), dtype=bool)
    for n, cell in enumerate(cells):
        try:
            ids = np.asarray(cell, dtype=np.int64).ravel()
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: labels{{{n + 1}}} is not a list of superpixel ids") from exc
        if ids.size and (ids.min() < 1 or ids.max() > n_sp):
            raise InputError(f"{path}: labels{{{n + 1}}} has ids outside 1..{n_sp}")
        member[n, ids - 1] = True
    return Proposals.from_membership(sp.astype(np.int64) - 1, member, check=False)


def _decode_segmentation(seg: object, shape: tuple[int, int], where: str) -> np.ndarray:
    """One COCO segmentation (RLE dict with str/list counts, or polygons) -> bool [H, W]."""
    from pycocotools import mask as mask_utils

    h, w = shape
    if isinstance(seg, dict):
        size = seg.get("size")
        if size is None or "counts" not in seg:
            raise InputError(f"{where}: RLE needs 'size' and 'counts'")
        if tuple(int(v) for v in size) != shape:
            raise InputError(f"{where}: mask size {list(size)} does not match image {list(shape)}")
        rle = dict(seg)
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, h, w)
        elif isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    elif isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if seg else None
        if rle is None:
            return np.zeros(shape, dtype=bool)
    else:
        raise InputError(f"{where}: segmentation must be an RLE dict or a polygon list")
    with warnings.catch_warnings():  # pycocotools' Cython __array__ predates numpy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        mask = mask_utils.decode(rle)
    if mask.shape[:2] != shape:
        raise InputError(f"{where}: decoded mask is {mask.shape[:2]}, image is {shape}")
    return mask.astype(bool).reshape(shape)


def _load_rle_json(path: Path, shape: tuple[int, int], limit: int | None) -> Proposals:
    """COCO-style list of {"segmentation": RLE, "score"?: float} (or {"proposals": [...]})."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from exc
    if isinstance(data, dict):
        data = data.get("proposals")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of proposals or {{'proposals': [...]}}")
    if limit is not None:
        data = data[:limit]
    masks = np.zeros((len(data), *shape), dtype=bool)
    for n, entry in enumerate(data):
        where = f"{path}: proposal {n}"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected an object")
        seg = entry.get("segmentation", entry)
        try:
            masks[n] = _decode_segmentation(seg, shape, where)
        except InputError:
            raise
        except Exception as exc:  # pycocotools raises bare exceptions on corrupt counts
            raise InputError(f"{where}: cannot decode RLE ({exc})") from exc
    return Proposals(masks)


def _load_png_dir(path: Path, shape: tuple[int, int], limit: int | None) -> Proposals:
    """Every *.png in the folder, sorted by name; any nonzero channel is foreground."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise InputError(f"{path}: no .png masks in this directory")
    if limit is not None:
        files = files[:limit]
    masks = np.zeros((len(files), *shape), dtype=bool)
    for n, file in enumerate(files):
        img = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError(f"{file}: not a readable PNG image")
        if img.shape[:2] != shape:
            raise InputError(f"{file}: mask is {img.shape[:2]}, image is {shape}")
        masks[n] = img.reshape(*shape, -1).any(axis=2)
    return Proposals(masks)


def load_proposals_for(folder: str | os.PathLike, stem: str,
                       image_shape: tuple[int, ...]) -> Proposals:
    """Proposals of image ``stem``: ``<stem>.mat``, ``<stem>.json`` or ``<stem>/`` in ``folder``."""
    root = Path(folder)
    for cand in (root / f"{stem}.mat", root / f"{stem}.json", root / stem):
        if cand.exists():
            return load_proposals(cand, image_shape)
    raise InputError(f"{root}: no proposals for image '{stem}' ({stem}.mat, .json or folder)")
