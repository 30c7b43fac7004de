"""Readers for the PASCAL VOC 2012 layout (and SBD): images, annotations, instance masks.

VOC layout under ``root``: ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml``,
``SegmentationObject/<id>.png`` (instance index 1..N), ``SegmentationClass/<id>.png``
(class index 1..C), 0 = background and 255 = void in both, split lists in
``ImageSets/Segmentation/<split>.txt`` (falling back to ``ImageSets/Main/<split>.txt``).
Images without segmentation PNGs are classification-only samples (VOC trainaug setting).
SBD layout (``img/``, ``cls/``, ``inst/``, ``<split>.txt``) is read by ``icnseg.data.sbd``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icnseg.classes import VOC_CLASSES
from icnseg.data.images import one_line, open_image, read_image  # noqa: F401 (read_image re-exported)
from icnseg.errors import DataError


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour palette as a flat [r, g, b, ...] list (768 ints)."""
    pal: list[int] = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _palette_lookup(path: Path, rgb: np.ndarray) -> np.ndarray:
    """Map colour-coded VOC label pixels [H,W,3] back to palette indices."""
    pal = np.array(voc_palette(), np.int64).reshape(256, 3)
    codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    rgb = rgb.astype(np.int64)
    px = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    order = np.argsort(codes)
    pos = np.clip(np.searchsorted(codes[order], px), 0, 255)
    idx = order[pos]
    if not np.array_equal(codes[idx], px):
        raise DataError(f"{path}: RGB label image has colours outside the VOC palette")
    return idx.astype(np.uint8)


def read_index_png(path: str | os.PathLike) -> np.ndarray:
    """Read a VOC label PNG (palette / gray / VOC-coloured RGB) as indices uint8 [H,W]."""
    path = Path(path)
    im = open_image(path, "label PNG")
    if im.mode in ("P", "L", "1"):
        return np.array(im if im.mode != "1" else im.convert("L"), dtype=np.uint8)
    if im.mode in ("RGB", "RGBA"):
        return _palette_lookup(path, np.asarray(im.convert("RGB")))
    if im.mode.startswith("I"):
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DataError(f"{path}: label values outside 0..255")
        return arr.astype(np.uint8)
    raise DataError(f"{path}: unsupported label PNG mode {im.mode!r}")


@dataclass(frozen=True)
class Annotation:
    """Image-level annotation: one (class index, difficult) per XML object, plus image size."""

    objects: tuple[tuple[int, bool], ...]
    width: int | None
    height: int | None


def _int_field(node: ET.Element | None, tag: str) -> int | None:
    """Integer text of ``node/tag`` or None when absent or not an integer."""
    if node is None:
        return None
    text = node.findtext(tag)
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def parse_annotation(path: str | os.PathLike, classes: Sequence[str]) -> Annotation:
    """Parse a VOC annotation XML; unknown class names and bad XML raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation not found")
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed annotation XML ({one_line(exc)})") from exc
    if root.tag != "annotation":
        raise DataError(f"{path}: not a VOC annotation (root element <{root.tag}>)")
    index = {c: i for i, c in enumerate(classes)}
    objects = []
    for k, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(f"{path}: object {k + 1} has no <name>")
        if name not in index:
            known = ", ".join(classes)
            raise DataError(f"{path}: unknown class {name!r} (known: {known})")
        difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "")
        objects.append((index[name], difficult))
    size = root.find("size")
    return Annotation(tuple(objects), _int_field(size, "width"), _int_field(size, "height"))


def read_classes(path: str | os.PathLike) -> tuple[str, ...]:
    """Read a class list file (one name per line, blank lines ignored)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read class list ({one_line(exc)})") from exc
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DataError(f"{path}: class list is empty")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class list has duplicate names")
    return names


@dataclass(eq=False)
class Sample:
    """One dataset image with its image labels and (optional) instance / class masks.

    ``instance_classes`` index ``classes`` (0-based); ``class_mask`` holds class index + 1,
    0 = background, 255 = ignore; masks are None for classification-only images.
    """

    id: str
    image: np.ndarray
    labels: np.ndarray
    instance_masks: np.ndarray
    instance_classes: np.ndarray
    class_mask: np.ndarray | None
    ignore_mask: np.ndarray | None


def _read_ids(path: Path) -> list[str]:
    """Image ids listed in a split file (first token per non-empty line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read split file ({one_line(exc)})") from exc
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _instances(
    obj: np.ndarray, cls: np.ndarray | None, ann: Annotation, obj_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Instance masks [N,H,W] and 0-based classes [N] from VOC object / class index maps."""
    ids = [int(v) for v in np.unique(obj) if v not in (0, 255)]
    masks = np.zeros((len(ids), *obj.shape), bool)
    classes = np.zeros(len(ids), np.int64)
    for n, k in enumerate(ids):
        masks[n] = obj == k
        votes = (np.bincount(cls[masks[n]], minlength=256)[1 : num_classes + 1]
                 if cls is not None else np.zeros(0, np.int64))
        if votes.size and votes.max() > 0:
            classes[n] = int(np.argmax(votes))  # majority class over the instance pixels
        elif k <= len(ann.objects):
            classes[n] = ann.objects[k - 1][0]  # VOC: object index k is the k-th XML object
        else:
            raise DataError(f"{obj_path}: instance {k} has no class (no class pixels, "
                            "no XML object)")
    return masks, classes


class VocDataset:
    """A split of a VOC 2012 (or SBD) layout dataset; ``[i]`` reads one Sample."""

    def __init__(
        self, root: str | os.PathLike, split: str = "train", classes: Sequence[str] | None = None
    ) -> None:
        """Open ``root`` and read the ids of ``split``; classes from classes.txt or VOC."""
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset directory not found")
        if classes is not None:
            self.classes = tuple(classes)
        elif (self.root / "classes.txt").is_file():
            self.classes = read_classes(self.root / "classes.txt")
        else:
            self.classes = VOC_CLASSES
        if not self.classes:
            raise DataError(f"{self.root}: empty class list")
        self.split = split
        is_voc = (self.root / "JPEGImages").is_dir() or (self.root / "ImageSets").is_dir()
        self.layout = "sbd" if not is_voc and (self.root / "img").is_dir() else "voc"
        self.ids = _read_ids(self._split_file(split))
        self._ann: dict[str, Annotation] = {}

    def _split_file(self, split: str) -> Path:
        """Path of the split list; DataError naming the expected file when absent."""
        if self.layout == "sbd":
            candidates = [self.root / f"{split}.txt"]
        elif "/" in split:
            candidates = [self.root / "ImageSets" / f"{split}.txt"]
        else:
            candidates = [self.root / "ImageSets" / sub / f"{split}.txt"
                          for sub in ("Segmentation", "Main")]
        for path in candidates:
            if path.is_file():
                return path
        raise DataError(f"{candidates[0]}: split file not found (split {split!r})")

    def __len__(self) -> int:
        """Number of images in the split."""
        return len(self.ids)

    def __repr__(self) -> str:
        """Short description."""
        return (f"VocDataset({str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)}, layout={self.layout!r})")

    def annotation(self, image_id: str) -> Annotation:
        """Parsed (cached) annotation of one image."""
        if image_id not in self._ann:
            if self.layout == "sbd":
                from icnseg.data.sbd import sbd_annotation

                self._ann[image_id] = sbd_annotation(self.root, image_id, len(self.classes))
            else:
                path = self.root / "Annotations" / f"{image_id}.xml"
                self._ann[image_id] = parse_annotation(path, self.classes)
        return self._ann[image_id]

    def _label_vector(self, ann: Annotation) -> np.ndarray:
        """Multi-hot [C] float32 image labels (difficult objects count as positive)."""
        vec = np.zeros(len(self.classes), np.float32)
        for c, _difficult in ann.objects:
            vec[c] = 1.0
        return vec

    def labels(self) -> np.ndarray:
        """Image-level labels of every image [len, C] float32, from annotations only."""
        out = np.zeros((len(self), len(self.classes)), np.float32)
        for i, image_id in enumerate(self.ids):
            out[i] = self._label_vector(self.annotation(image_id))
        return out

    def __getitem__(self, i: int) -> Sample:
        """Read image ``i`` with its labels and masks."""
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset index must be an integer, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        image_id = self.ids[int(i)]
        if self.layout == "sbd":
            from icnseg.data.sbd import read_sbd_sample

            return read_sbd_sample(self, image_id)
        ann = self.annotation(image_id)
        image = read_image(self.root / "JPEGImages" / f"{image_id}.jpg")
        h, w = image.shape[:2]
        obj_path = self.root / "SegmentationObject" / f"{image_id}.png"
        cls_path = self.root / "SegmentationClass" / f"{image_id}.png"
        obj = self._read_label(obj_path, (h, w)) if obj_path.is_file() else None
        cls = self._read_label(cls_path, (h, w)) if cls_path.is_file() else None
        masks = np.zeros((0, h, w), bool)
        classes = np.zeros(0, np.int64)
        if obj is not None:
            masks, classes = _instances(obj, cls, ann, obj_path, len(self.classes))
        ignore = None
        if obj is not None or cls is not None:
            ignore = np.zeros((h, w), bool)
            for m in (obj, cls):
                if m is not None:
                    ignore |= m == 255
        if cls is None and obj is not None:  # rebuild the class map from the instances
            cls = np.zeros((h, w), np.uint8)
            for m, c in zip(masks, classes, strict=True):
                cls[m] = c + 1
            cls[ignore] = 255
        if cls is not None:
            bad = (cls > len(self.classes)) & (cls != 255)
            if bad.any():
                raise DataError(f"{cls_path}: class index {int(cls[bad].max())} beyond "
                                f"{len(self.classes)} classes")
        return Sample(image_id, image, self._label_vector(ann), masks, classes, cls, ignore)

    @staticmethod
    def _read_label(path: Path, shape: tuple[int, int]) -> np.ndarray:
        """Read a label PNG and check it matches the image size."""
        arr = read_index_png(path)
        if arr.shape != shape:
            raise DataError(f"{path}: size {arr.shape[1]}x{arr.shape[0]} does not match "
                            f"the image ({shape[1]}x{shape[0]})")
        return arr
