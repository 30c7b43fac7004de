"""Synthetic generator: geometry, VOC layout round trip, determinism, atomic output."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from icnseg.classes import SYNTH_CLASSES
from icnseg.data.synth import generate, render_sample, sample_rng
from icnseg.data.voc import VocDataset, read_image
from icnseg.errors import ConfigError, OutputError

SEED, SIZE, N = 3, 96, 8


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "ds", N, seed=SEED, size=SIZE)


def _expected_void(masks: np.ndarray) -> np.ndarray:
    """VOC-style boundary band computed with scipy (independent of the cv2 implementation)."""
    st = np.ones((3, 3), bool)
    void = np.zeros(masks.shape[1:], bool)
    for m in masks:
        void |= ndimage.binary_dilation(m, st) & ~ndimage.binary_erosion(m, st, border_value=1)
    return void


def test_render_sample_properties() -> None:
    counts = []
    for i in range(40):
        img, masks, classes = render_sample(sample_rng(7, i), 128)
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        assert masks.dtype == bool and masks.shape[1:] == (128, 128)
        assert 1 <= len(masks) <= 4 and classes.shape == (len(masks),)
        assert classes.dtype == np.int64
        assert ((classes >= 0) & (classes < len(SYNTH_CLASSES))).all()
        assert masks.sum(0).max() <= 1  # visible parts are disjoint
        interior = masks & ~_expected_void(masks)[None]
        assert (interior.reshape(len(masks), -1).sum(1) >= 12).all()
        counts.append(len(masks))
        # a shape's extent is 12-45 % of the side (occlusion can only shrink it)
        for m in masks:
            ys, xs = np.nonzero(m)
            assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 0.45 * 128 + 3
    assert len(set(counts)) >= 3


def test_round_trip_matches_rendered_ground_truth(synth_root: Path) -> None:
    ds = VocDataset(synth_root, "trainval")
    assert ds.classes == SYNTH_CLASSES and len(ds) == N
    labels = ds.labels()
    for k, image_id in enumerate(ds.ids):
        img, masks, classes = render_sample(sample_rng(SEED, int(image_id)), SIZE)
        s = ds[k]
        assert s.id == image_id
        assert np.abs(s.image.astype(int) - img.astype(int)).mean() < 6.0  # JPEG of noisy pixels
        void = _expected_void(masks)
        np.testing.assert_array_equal(s.ignore_mask, void)
        np.testing.assert_array_equal(s.instance_masks, masks & ~void[None])
        np.testing.assert_array_equal(s.instance_classes, classes)
        expected_cls = np.zeros((SIZE, SIZE), np.uint8)
        for m, c in zip(masks, classes, strict=True):
            expected_cls[m] = c + 1
        expected_cls[void] = 255
        np.testing.assert_array_equal(s.class_mask, expected_cls)
        hot = np.zeros(len(SYNTH_CLASSES), np.float32)
        hot[classes] = 1
        np.testing.assert_array_equal(s.labels, hot)
        np.testing.assert_array_equal(labels[k], hot)
        # XML objects: names and 1-based inclusive boxes of the visible masks, in index order
        root = ET.parse(synth_root / "Annotations" / f"{image_id}.xml").getroot()
        assert root.findtext("filename") == f"{image_id}.jpg"
        assert root.findtext("size/width") == str(SIZE) and root.findtext("size/depth") == "3"
        objs = root.findall("object")
        assert [o.findtext("name") for o in objs] == [SYNTH_CLASSES[c] for c in classes]
        for o, m in zip(objs, masks, strict=True):
            ys, xs = np.where(m)
            box = [int(o.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
            assert box == [xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1]


def test_label_pngs_are_palette_mode(synth_root: Path) -> None:
    for sub in ("SegmentationObject", "SegmentationClass"):
        im = Image.open(synth_root / sub / "000000.png")
        assert im.mode == "P"
        pal = im.getpalette()
        assert pal[3:6] == [128, 0, 0] and pal[255 * 3 : 256 * 3] == [224, 224, 192]
        values = set(np.unique(np.array(im)).tolist())
        assert 0 in values and 255 in values and 1 in values


def test_layout_and_splits(synth_root: Path) -> None:
    assert (synth_root / "classes.txt").read_text().split() == list(SYNTH_CLASSES)
    seg = synth_root / "ImageSets" / "Segmentation"
    train = (seg / "train.txt").read_text().split()
    val = (seg / "val.txt").read_text().split()
    trainval = (seg / "trainval.txt").read_text().split()
    assert not set(train) & set(val) and sorted(train + val) == trainval
    assert len(val) == round(N * 0.2)
    assert (synth_root / "ImageSets" / "Main" / "train.txt").read_text().split() == train
    for image_id in trainval:
        assert read_image(synth_root / "JPEGImages" / f"{image_id}.jpg").shape == (SIZE, SIZE, 3)
    # per-class Main lists agree with the XML labels
    ds = VocDataset(synth_root, "trainval")
    lab = ds.labels()
    lines = (synth_root / "ImageSets" / "Main" / "star_trainval.txt").read_text().splitlines()
    flags = {ln.split()[0]: int(ln.split()[1]) for ln in lines}
    star = SYNTH_CLASSES.index("star")
    assert all((flags[i] == 1) == bool(lab[k, star]) for k, i in enumerate(ds.ids))


def _tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_deterministic_byte_identical(tmp_path: Path) -> None:
    a = _tree(generate(tmp_path / "a", 5, seed=11, size=64))
    b = _tree(generate(tmp_path / "b", 5, seed=11, size=64))
    assert a == b and len(a) > 20
    c = _tree(generate(tmp_path / "c", 5, seed=12, size=64))
    assert c["JPEGImages/000000.jpg"] != a["JPEGImages/000000.jpg"]
    # content depends on (seed, index) only: n and the split do not change an image
    d = _tree(generate(tmp_path / "d", 3, seed=11, size=64, val_fraction=0.0))
    for sub in ("JPEGImages/000002.jpg", "Annotations/000002.xml", "SegmentationObject/000002.png"):
        assert d[sub] == a[sub]
    assert d["ImageSets/Segmentation/val.txt"] == b""


def test_refuses_non_empty_dir_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        generate(out, 2, size=32)
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    assert generate(out, 2, size=32, force=True) == out
    assert not (out / "keep.txt").exists() and (out / "classes.txt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left over
    generate(tmp_path / "empty_ok", 1, size=32)  # absent dir is fine


@pytest.mark.parametrize(
    "kwargs",
    [dict(n=0), dict(n=-2), dict(size=31), dict(val_fraction=1.0), dict(val_fraction=-0.1),
     dict(n=2.5), dict(seed=-1)],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    args = dict(n=2, size=32) | kwargs
    with pytest.raises(ConfigError):
        generate(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()
