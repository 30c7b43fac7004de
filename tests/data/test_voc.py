"""VOC / SBD reader: image decoding, hand-made layouts, and one-line errors naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from icnseg.classes import SYNTH_CLASSES, VOC_CLASSES
from icnseg.data.synth import generate
from icnseg.data.voc import VocDataset, read_image, read_index_png, voc_palette
from icnseg.errors import DataError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("voc") / "ds", 3, seed=5, size=48, val_fraction=0)


@pytest.fixture()
def ds_root(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "ds"))


def _raises_naming(path: Path, fn, match: str = "") -> str:
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    assert msg.startswith(f"{path}:"), msg
    assert "\n" not in msg and match in msg, msg
    return msg


# ---- read_image -------------------------------------------------------------------------

def test_read_image_converts_modes(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    rgba = np.dstack([rgb, np.full((9, 7), 10, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), np.dstack([gray] * 3))
    g16 = (gray.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "g16.png"), g16)
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (9, 7, 3)
    np.testing.assert_array_equal(out[..., 1], gray)
    cv2.imwrite(str(tmp_path / "c16.png"), (rgb.astype(np.uint16) * 257)[..., ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png"), rgb)
    pal = Image.fromarray(gray, mode="L").convert("P")
    pal.save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (9, 7, 3)


def test_read_image_bad_files(tmp_path: Path, pristine: Path) -> None:
    good = (pristine / "JPEGImages" / "000000.jpg").read_bytes()
    cases = {
        "missing.jpg": None,
        "empty.jpg": b"",
        "garbage.jpg": b"this is not an image at all" * 10,
        "corrupt.jpg": good[:200] + bytes(len(good) - 200),
        "truncated_half.jpg": good[: len(good) // 2],
        "truncated_end.jpg": good[:-2],
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        _raises_naming(path, lambda p=path: read_image(p))
    _raises_naming(tmp_path / "truncated_half.jpg",
                   lambda: read_image(tmp_path / "truncated_half.jpg"), "truncated")


# ---- hand-made VOC layout ---------------------------------------------------------------

def _xml(objects: list[tuple[str, int]], extra: str = "") -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult>{extra}"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>"
        for n, d in objects)
    return f"<annotation><size><width>8</width><height>6</height></size>{objs}</annotation>"


def _png(path: Path, arr: np.ndarray) -> None:
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.astype(np.uint8).tobytes())
    im.putpalette(voc_palette())
    im.save(path)


def _voc(root: Path, objects: list[tuple[str, int]], obj=None, cls=None, extra: str = "") -> Path:
    for sub in ("JPEGImages", "Annotations", "SegmentationObject", "SegmentationClass",
                "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 8, 3), 100, np.uint8)).save(root / "JPEGImages" / "a.jpg")
    (root / "Annotations" / "a.xml").write_text(_xml(objects, extra))
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\n")
    if obj is not None:
        _png(root / "SegmentationObject" / "a.png", obj)
    if cls is not None:
        _png(root / "SegmentationClass" / "a.png", cls)
    return root


def test_voc_classes_majority_and_difficult(tmp_path: Path) -> None:
    obj = np.zeros((6, 8), np.uint8)
    obj[1:3, 1:5] = 1  # 8 px: 5 of class 3 (bird), 3 of class 2 (bicycle)
    obj[4, :] = 2
    obj[0, :] = 255
    cls = np.zeros((6, 8), np.uint8)
    cls[1:3, 1:5] = 3
    cls[1, 1:4] = 2
    cls[4, :] = 15  # person
    cls[0, :] = 255
    part = "<part><name>head</name></part>"
    root = _voc(tmp_path, [("bird", 0), ("person", 1), ("dog", 1)], obj, cls, extra=part)
    ds = VocDataset(root)
    assert ds.classes == VOC_CLASSES and ds.ids == ["a"] and ds.layout == "voc"
    s = ds[0]
    assert s.image.shape == (6, 8, 3)
    np.testing.assert_array_equal(s.instance_classes, [2, 14])
    np.testing.assert_array_equal(s.instance_masks[0], obj == 1)
    np.testing.assert_array_equal(s.instance_masks[1], obj == 2)
    np.testing.assert_array_equal(s.class_mask, cls)
    np.testing.assert_array_equal(s.ignore_mask, obj == 255)
    expected = np.zeros(20, np.float32)
    expected[[2, 14, 11]] = 1  # difficult objects count as positive
    np.testing.assert_array_equal(s.labels, expected)
    np.testing.assert_array_equal(ds.labels(), expected[None])
    assert s.labels.dtype == np.float32 and s.instance_classes.dtype == np.int64


def test_object_png_without_class_png_uses_xml_order(tmp_path: Path) -> None:
    obj = np.zeros((6, 8), np.uint8)
    obj[0:2] = 1
    obj[3:5] = 2
    obj[2] = 255
    root = _voc(tmp_path, [("cat", 0), ("dog", 0)], obj, None)
    s = VocDataset(root)[0]
    np.testing.assert_array_equal(s.instance_classes, [7, 11])
    assert s.class_mask[0, 0] == 8 and s.class_mask[3, 0] == 12 and s.class_mask[2, 0] == 255


def test_rgb_coloured_label_png(tmp_path: Path) -> None:
    obj = np.zeros((6, 8), np.uint8)
    obj[2:4, 2:6] = 1
    root = _voc(tmp_path, [("cat", 0)], None, None)
    pal = np.array(voc_palette(), np.uint8).reshape(256, 3)
    Image.fromarray(pal[obj]).save(root / "SegmentationObject" / "a.png")
    np.testing.assert_array_equal(read_index_png(root / "SegmentationObject" / "a.png"), obj)
    s = VocDataset(root)[0]
    np.testing.assert_array_equal(s.instance_masks, (obj == 1)[None])


def test_classification_only_image(ds_root: Path) -> None:
    for sub in ("SegmentationObject", "SegmentationClass"):
        (ds_root / sub / "000001.png").unlink()
    ds = VocDataset(ds_root, "trainval")
    s = ds[1]
    assert s.id == "000001" and s.class_mask is None and s.ignore_mask is None
    assert s.instance_masks.shape == (0, 48, 48) and s.instance_masks.dtype == bool
    assert s.instance_classes.shape == (0,) and s.labels.sum() >= 1
    assert len(ds[0].instance_masks) >= 1 and len(ds[-1].instance_masks) >= 1
    with pytest.raises(IndexError):
        ds[3]


def test_split_fallbacks_and_classes_argument(ds_root: Path) -> None:
    shutil.rmtree(ds_root / "ImageSets" / "Segmentation")
    ds = VocDataset(ds_root, "trainval")  # falls back to ImageSets/Main
    assert len(ds) == 3
    assert len(VocDataset(ds_root, "Main/trainval")) == 3
    ds = VocDataset(ds_root, "trainval", classes=(*SYNTH_CLASSES, "extra"))
    assert ds.labels().shape == (3, 6)


# ---- errors name the offending file -----------------------------------------------------

def test_missing_split_file(ds_root: Path) -> None:
    path = ds_root / "ImageSets" / "Segmentation" / "nope.txt"
    _raises_naming(path, lambda: VocDataset(ds_root, "nope"), "split file not found")


def test_missing_dataset_dir(tmp_path: Path) -> None:
    _raises_naming(tmp_path / "nothing", lambda: VocDataset(tmp_path / "nothing"))


def test_missing_annotation(ds_root: Path) -> None:
    xml = ds_root / "Annotations" / "000002.xml"
    xml.unlink()
    ds = VocDataset(ds_root, "trainval")
    _raises_naming(xml, lambda: ds[2], "annotation not found")
    _raises_naming(xml, ds.labels)


def test_malformed_annotation(ds_root: Path) -> None:
    xml = ds_root / "Annotations" / "000000.xml"
    xml.write_text("<annotation><object><name>circle</name>")
    _raises_naming(xml, lambda: VocDataset(ds_root, "trainval")[0], "malformed")


def test_unknown_class_name(ds_root: Path) -> None:
    xml = ds_root / "Annotations" / "000001.xml"
    text = xml.read_text()
    name = text.split("<name>")[1].split("</name>")[0]
    xml.write_text(text.replace(f"<name>{name}</name>", "<name>xyz</name>", 1))
    msg = _raises_naming(xml, VocDataset(ds_root, "trainval").labels, "unknown class 'xyz'")
    assert "known: circle, square, triangle, star, cross" in msg


def test_missing_jpeg(ds_root: Path) -> None:
    jpg = ds_root / "JPEGImages" / "000000.jpg"
    jpg.unlink()
    _raises_naming(jpg, lambda: VocDataset(ds_root, "trainval")[0])


def test_corrupt_and_mismatched_png(ds_root: Path) -> None:
    png = ds_root / "SegmentationObject" / "000000.png"
    png.write_bytes(png.read_bytes()[:60])
    ds = VocDataset(ds_root, "trainval")
    _raises_naming(png, lambda: ds[0], "not a readable label PNG")
    png = ds_root / "SegmentationClass" / "000001.png"
    _png(png, np.zeros((10, 10), np.uint8))
    _raises_naming(png, lambda: ds[1], "does not match")


def test_bad_classes_txt(ds_root: Path) -> None:
    (ds_root / "classes.txt").write_text("a\na\n")
    _raises_naming(ds_root / "classes.txt", lambda: VocDataset(ds_root, "trainval"), "duplicate")


# ---- SBD layout -------------------------------------------------------------------------

def test_sbd_layout(tmp_path: Path) -> None:
    for sub in ("img", "cls", "inst"):
        (tmp_path / sub).mkdir()
    Image.fromarray(np.full((5, 6, 3), 50, np.uint8)).save(tmp_path / "img" / "x.jpg")
    inst = np.zeros((5, 6), np.uint8)
    inst[0:2, 0:3] = 1
    inst[3:5, 2:6] = 2
    cls = np.where(inst == 1, 15, np.where(inst == 2, 7, 0)).astype(np.uint8)
    savemat(tmp_path / "inst" / "x.mat",
            {"GTinst": {"Segmentation": inst, "Categories": np.array([[15], [7]], np.uint8),
                        "Boundaries": np.zeros((2, 1), object)}})
    savemat(tmp_path / "cls" / "x.mat",
            {"GTcls": {"Segmentation": cls, "CategoriesPresent": np.array([[7], [15]], np.uint8),
                       "Boundaries": np.zeros((20, 1), object)}})
    (tmp_path / "train.txt").write_text("x\n")
    ds = VocDataset(tmp_path)
    assert ds.layout == "sbd" and ds.classes == VOC_CLASSES
    s = ds[0]
    np.testing.assert_array_equal(s.instance_classes, [14, 6])
    np.testing.assert_array_equal(s.instance_masks, np.stack([inst == 1, inst == 2]))
    np.testing.assert_array_equal(s.class_mask, cls)
    assert not s.ignore_mask.any()
    expected = np.zeros(20, np.float32)
    expected[[6, 14]] = 1
    np.testing.assert_array_equal(ds.labels()[0], expected)
    (tmp_path / "inst" / "x.mat").write_bytes(b"garbage")
    _raises_naming(tmp_path / "inst" / "x.mat", lambda: VocDataset(tmp_path)[0])
