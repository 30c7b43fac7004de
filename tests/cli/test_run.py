"""`icnseg run`: odd and broken inputs give clear errors or correct results, never a traceback."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")


def _write(path, image):
    ok, buf = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "in"
    d.mkdir()
    return {
        "good": _write(d / "good.jpg", rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)),
        "gray": _write(d / "gray.png", rng.integers(0, 255, (70, 60), dtype=np.uint8)),
        "rgba": _write(d / "rgba.png", rng.integers(0, 255, (50, 90, 4), dtype=np.uint8)),
        "tiny": _write(d / "one.png", np.full((1, 1, 3), 127, np.uint8)),
    }


def _record(out, stem):
    return json.loads((out / f"{stem}.json").read_text())


def test_odd_but_valid_images_are_segmented(tiny_checkpoint, images, tmp_path, run_cli):
    out = tmp_path / "out"
    rc, stdout, errors = run_cli(["run", str(tiny_checkpoint), str(images["good"].parent),
                                  "--out", str(out)])
    assert rc == 0, errors
    for stem, path in (("good", "good"), ("gray", "gray"), ("rgba", "rgba"), ("one", "tiny")):
        rec = _record(out, stem)
        src = cv2.imread(str(images[path]), cv2.IMREAD_UNCHANGED)
        assert (rec["height"], rec["width"]) == src.shape[:2]
        assert (out / f"{stem}.png").is_file()
        for inst in rec["instances"]:
            assert inst["mask"]["size"] == [rec["height"], rec["width"]]
    assert "4 image(s) segmented" in stdout


def test_large_image(tiny_checkpoint, tmp_path, run_cli):
    big = _write(tmp_path / "big.jpg", np.full((3000, 4000, 3), 90, np.uint8))
    rc, _, errors = run_cli(["run", str(tiny_checkpoint), str(big), "--out", str(tmp_path / "o")])
    assert rc == 0, errors
    rec = _record(tmp_path / "o", "big")
    assert (rec["height"], rec["width"]) == (3000, 4000)


def test_unreadable_image_fails_alone(tiny_checkpoint, images, tmp_path, run_cli):
    bad = images["good"].parent / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    out = tmp_path / "out"
    rc, stdout, errors = run_cli(["run", str(tiny_checkpoint), str(images["good"]), str(bad),
                                  "--out", str(out)])
    assert rc == 1
    assert len(errors) == 1 and str(bad) in errors[0] and "\n" not in errors[0]
    assert (out / "good.json").is_file() and not (out / "broken.json").exists()
    assert "1 failed" in stdout


def test_empty_folder_and_missing_file(tiny_checkpoint, tmp_path, run_cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, errors = run_cli(["run", str(tiny_checkpoint), str(empty), "--out", str(tmp_path / "o")])
    assert rc == 1 and errors == [f"icnseg: error: {empty}: folder has no images "
                                  "(.jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp)"]
    rc, _, errors = run_cli(["run", str(tiny_checkpoint), str(tmp_path / "nope.jpg"), "--out",
                             str(tmp_path / "o")])
    assert rc == 1 and "nope.jpg: no such file" in errors[0]


def test_missing_and_truncated_checkpoint(tiny_checkpoint, images, tmp_path, run_cli):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    rc, _, errors = run_cli(["run", str(cut), str(images["good"]), "--out", str(tmp_path / "o")])
    assert rc == 1 and errors[0].startswith(f"icnseg: error: {cut}:")
