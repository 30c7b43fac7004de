"""Proposal loaders: MCG .mat, COCO-RLE .json, PNG folder; round trips and bad files."""

import json

import cv2
import numpy as np
import pytest
import scipy.io
from pycocotools import mask as mask_utils

from icnseg.errors import InputError
from icnseg.proposals.loaders import load_proposals, load_proposals_for

H, W = 6, 9


def random_masks(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, H, W)) < 0.4


def write_mcg(path, superpixels, label_lists):
    cells = np.empty((len(label_lists), 1), dtype=object)
    for i, ids in enumerate(label_lists):
        cells[i, 0] = np.asarray(ids, dtype=np.float64).reshape(1, -1)  # MATLAB row vectors
    scipy.io.savemat(str(path), {"superpixels": superpixels.astype(np.uint32), "labels": cells,
                                 "scores": np.linspace(1, 0, len(label_lists))[:, None]})


def test_mcg_round_trip(tmp_path):
    sp = np.arange(H * W).reshape(H, W) // 7 + 1  # 1-based labels 1..8
    lists = [[1, 3], [2], [4, 5, 6, 7, 8], [8]]
    path = tmp_path / "img.mat"
    write_mcg(path, sp, lists)
    props = load_proposals(path, (H, W, 3))
    assert len(props) == 4 and props.membership.shape == (4, 8)
    for n, ids in enumerate(lists):
        np.testing.assert_array_equal(props.masks[n], np.isin(sp, ids))
    np.testing.assert_array_equal(props.superpixels, sp - 1)
    assert len(load_proposals(path, (H, W), max_proposals=2)) == 2


def test_mcg_bad_files(tmp_path):
    sp = np.ones((H, W), int)
    path = tmp_path / "wrong_shape.mat"
    write_mcg(path, sp[:, :-1], [[1]])
    with pytest.raises(InputError, match="wrong_shape.mat"):
        load_proposals(path, (H, W))
    path = tmp_path / "bad_ids.mat"
    write_mcg(path, sp, [[1, 2]])
    with pytest.raises(InputError, match="bad_ids.mat"):
        load_proposals(path, (H, W))
    path = tmp_path / "garbage.mat"
    path.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(InputError, match="garbage.mat"):
        load_proposals(path, (H, W))
    path = tmp_path / "missing.mat"
    scipy.io.savemat(str(path), {"x": np.zeros(3)})
    with pytest.raises(InputError, match="missing.mat"):
        load_proposals(path, (H, W))


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE written by hand: column-major runs starting with zeros."""
    flat = mask.T.ravel().astype(np.int8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": [H, W], "counts": counts}


def test_rle_json_round_trip(tmp_path):
    masks = random_masks()
    entries = []
    for n, m in enumerate(masks):
        if n % 2:
            seg = uncompressed_rle(m)
        else:
            seg = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            seg["counts"] = seg["counts"].decode("ascii")
        entries.append({"segmentation": seg, "score": 1.0 - n / 10})
    for name, payload in (("list.json", entries), ("dict.json", {"proposals": entries})):
        path = tmp_path / name
        path.write_text(json.dumps(payload))
        props = load_proposals(path, (H, W))
        np.testing.assert_array_equal(props.masks, masks)
        assert props.membership is None


def test_rle_json_bad_files(tmp_path):
    seg = mask_utils.encode(np.asfortranarray(np.ones((H + 1, W), np.uint8)))
    seg["counts"] = seg["counts"].decode("ascii")
    path = tmp_path / "size.json"
    path.write_text(json.dumps([{"segmentation": seg}]))
    with pytest.raises(InputError, match="size.json"):
        load_proposals(path, (H, W))
    path = tmp_path / "broken.json"
    path.write_text("[{")
    with pytest.raises(InputError, match="broken.json"):
        load_proposals(path, (H, W))
    path = tmp_path / "shape.json"
    path.write_text(json.dumps({"masks": []}))
    with pytest.raises(InputError, match="shape.json"):
        load_proposals(path, (H, W))
    path = tmp_path / "counts.json"
    path.write_text(json.dumps([{"segmentation": {"size": [H, W], "counts": 5}}]))
    with pytest.raises(InputError, match="counts.json"):
        load_proposals(path, (H, W))


def test_png_folder_round_trip_and_errors(tmp_path):
    masks = random_masks(3)
    folder = tmp_path / "props"
    folder.mkdir()
    for n, m in enumerate(masks):
        cv2.imwrite(str(folder / f"{n:03d}.png"), m.astype(np.uint8) * 255)
    (folder / "notes.txt").write_text("ignored")
    np.testing.assert_array_equal(load_proposals(folder, (H, W)).masks, masks)
    cv2.imwrite(str(folder / "004.png"), np.zeros((H, W + 1), np.uint8))
    with pytest.raises(InputError, match="004.png"):
        load_proposals(folder, (H, W))
    (folder / "004.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(InputError, match="004.png"):
        load_proposals(folder, (H, W))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty"):
        load_proposals(empty, (H, W))


def test_unknown_or_missing_path(tmp_path):
    with pytest.raises(InputError, match="nothing.json"):
        load_proposals(tmp_path / "nothing.json", (H, W))
    path = tmp_path / "props.npy"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="props.npy"):
        load_proposals(path, (H, W))


def test_load_proposals_for_finds_the_image_stem(tmp_path):
    masks = random_masks(3, seed=5)
    (tmp_path / "img7").mkdir()
    for i, m in enumerate(masks):
        cv2.imwrite(str(tmp_path / "img7" / f"{i:03d}.png"), m.astype(np.uint8) * 255)
    props = load_proposals_for(tmp_path, "img7", masks.shape[1:])
    np.testing.assert_array_equal(props.masks, masks)
    with pytest.raises(InputError, match="no proposals for image 'img8'"):
        load_proposals_for(tmp_path, "img8", masks.shape[1:])
