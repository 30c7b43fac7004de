"""SBD (Semantic Boundaries Dataset) layout: ``img/<id>.jpg``, ``cls/<id>.mat`` (GTcls),
``inst/<id>.mat`` (GTinst), split lists ``<root>/<split>.txt``; classes are VOC's, 1-based.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from icnseg.data.images import one_line, read_image
from icnseg.data.voc import Annotation, Sample
from icnseg.errors import DataError

if TYPE_CHECKING:
    from icnseg.data.voc import VocDataset


def _load_struct(path: Path, key: str) -> Any:
    """Load struct ``key`` (GTcls / GTinst) from a MATLAB file."""
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"{path}: no such SBD annotation file")
    try:
        mat = loadmat(path, struct_as_record=False, squeeze_me=True)
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError on broken files
        raise DataError(f"{path}: not a readable MATLAB file ({one_line(exc)})") from exc
    if key not in mat:
        raise DataError(f"{path}: no {key} struct in the MATLAB file")
    return mat[key]


def _field(path: Path, struct: Any, name: str) -> np.ndarray:
    """A field of a loaded struct as a numpy array (at least 1-d for category lists)."""
    if not hasattr(struct, name):
        raise DataError(f"{path}: struct has no field {name!r}")
    return np.asarray(getattr(struct, name))


def _categories(path: Path, values: np.ndarray, num_classes: int) -> np.ndarray:
    """1-based category list -> 0-based int64 array, range checked."""
    cats = np.atleast_1d(values).astype(np.int64).reshape(-1)
    if cats.size and (cats.min() < 1 or cats.max() > num_classes):
        raise DataError(f"{path}: category {int(cats.max())} outside 1..{num_classes}")
    return cats - 1


def sbd_annotation(root: Path, image_id: str, num_classes: int) -> Annotation:
    """Image-level labels of an SBD image from GTcls.CategoriesPresent (or GTinst)."""
    cls_path = root / "cls" / f"{image_id}.mat"
    if cls_path.is_file():
        cats = _field(cls_path, _load_struct(cls_path, "GTcls"), "CategoriesPresent")
        path = cls_path
    else:
        path = root / "inst" / f"{image_id}.mat"
        cats = _field(path, _load_struct(path, "GTinst"), "Categories")
    objects = tuple((int(c), False) for c in _categories(path, cats, num_classes))
    return Annotation(objects, None, None)


def read_sbd_sample(ds: VocDataset, image_id: str) -> Sample:
    """Read one SBD sample (SBD has no void label: the ignore mask is all False)."""
    root, num_classes = ds.root, len(ds.classes)
    image = read_image(root / "img" / f"{image_id}.jpg")
    h, w = image.shape[:2]
    ann = ds.annotation(image_id)
    labels = np.zeros(num_classes, np.float32)
    for c, _ in ann.objects:
        labels[c] = 1.0
    inst_path = root / "inst" / f"{image_id}.mat"
    cls_path = root / "cls" / f"{image_id}.mat"
    masks = np.zeros((0, h, w), bool)
    classes = np.zeros(0, np.int64)
    cls_mask = None
    if inst_path.is_file():
        gt = _load_struct(inst_path, "GTinst")
        seg = _field(inst_path, gt, "Segmentation")
        if seg.shape != (h, w):
            raise DataError(f"{inst_path}: segmentation shape {seg.shape} != image {(h, w)}")
        cats = _categories(inst_path, _field(inst_path, gt, "Categories"), num_classes)
        ids = [int(v) for v in np.unique(seg) if v != 0]
        if ids and max(ids) > len(cats):
            raise DataError(f"{inst_path}: instance {max(ids)} has no category")
        masks = np.stack([seg == k for k in ids]) if ids else masks
        classes = cats[[k - 1 for k in ids]] if ids else classes
    if cls_path.is_file():
        seg = _field(cls_path, _load_struct(cls_path, "GTcls"), "Segmentation")
        if seg.shape != (h, w):
            raise DataError(f"{cls_path}: segmentation shape {seg.shape} != image {(h, w)}")
        if seg.size and (seg.min() < 0 or seg.max() > num_classes):
            raise DataError(f"{cls_path}: class index outside 0..{num_classes}")
        cls_mask = seg.astype(np.uint8)
    elif inst_path.is_file():
        cls_mask = np.zeros((h, w), np.uint8)
        for m, c in zip(masks, classes, strict=True):
            cls_mask[m] = c + 1
    ignore = np.zeros((h, w), bool) if (inst_path.is_file() or cls_mask is not None) else None
    return Sample(image_id, image, labels, masks, classes, cls_mask, ignore)
