"""Triton request decoding / response encoding (numpy only, no server): checked against
hand-built arrays, OpenCV-encoded files and pycocotools."""

from __future__ import annotations

import traceback

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from icnseg.instance import Instance
from icnseg.serve.requests import RequestError, decode_request, encode_response


def _png(image_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def test_image_and_image_bytes_decode_to_the_same_pixels(rng):
    image = rng.integers(0, 256, (2, 7, 9, 3), dtype=np.uint8)
    items = decode_request({"image": image}, "request")
    assert len(items) == 2 and all(p is None for _, p in items)
    for i, (got, _) in enumerate(items):
        np.testing.assert_array_equal(got, image[i])
    files = np.array([[_png(image[0])], [_png(image[1])]], dtype=object)
    for i, (got, _) in enumerate(decode_request({"image_bytes": files}, "request")):
        np.testing.assert_array_equal(got, image[i])  # PNG is lossless


def test_proposals_are_checked_and_kept(rng):
    image = rng.integers(0, 256, (1, 6, 5, 3), dtype=np.uint8)
    masks = np.zeros((1, 2, 6, 5), np.uint8)
    masks[0, 0, :3] = 1
    masks[0, 1, 3:, 2:] = 7
    [(_, props)] = decode_request({"image": image, "proposals": masks}, "request")
    np.testing.assert_array_equal(props.masks, masks[0] != 0)
    with pytest.raises(RequestError, match=r"^request: input 'proposals' must be \[N >= 1, H, W\]"):
        decode_request({"image": image, "proposals": masks[:, :, :5]}, "request")


@pytest.mark.parametrize("request_, match", [
    ({"image": np.zeros((1, 0, 4, 3), np.uint8)}, "input 'image' has zero size"),
    ({"image": np.zeros((1, 4, 4, 3), np.float32)}, "expected uint8 pixels"),
    ({"image_bytes": np.array([[b""]], dtype=object)}, "input image_bytes: empty"),
    ({"image_bytes": np.array([[b"\x89PNG\r\n\x1a\n broken"]], dtype=object)},
     "input image_bytes: not a readable image"),
    ({}, "send exactly one of the inputs"),
    ({"image": np.zeros((1, 4, 4, 3), np.uint8),
      "image_bytes": np.array([[b"x"]], dtype=object)}, "send exactly one of the inputs"),
])
def test_bad_requests_get_one_line_errors(request_, match):
    with pytest.raises(RequestError, match=match) as info:
        decode_request(request_, "request 3")
    assert str(info.value).startswith("request 3")
    # what PyTriton sends the client: the message alone, on one line, no server stack
    text = "".join(traceback.format_exception(None, info.value, info.value.__traceback__))
    assert text.count("\n") == 1 and "Traceback" not in text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_responses_pad_to_the_largest_item_and_encode_coco_rle():
    masks = [np.zeros((5, 8), bool) for _ in range(3)]
    masks[0][1:3, 2:6] = True
    masks[1][4, 0] = True
    masks[2][0:5, 7] = True
    a = [Instance("star", 3, 0.75, masks[0]), Instance("square", 1, 0.5, masks[1])]
    b = [Instance("circle", 0, 0.25, masks[2])]
    out = encode_response([((5, 8), a), ((5, 8), b), ((5, 8), [])])
    np.testing.assert_array_equal(out["count"][:, 0], [2, 1, 0])
    np.testing.assert_array_equal(out["class_id"], [[3, 1], [0, -1], [-1, -1]])
    assert out["class_name"].tolist() == [[b"star", b"square"], [b"circle", b""], [b"", b""]]
    np.testing.assert_array_equal(out["score"], [[0.75, 0.5], [0.25, 0], [0, 0]])
    np.testing.assert_array_equal(out["bbox"][0], [[2, 1, 6, 3], [0, 4, 1, 5]])
    np.testing.assert_array_equal(out["bbox"][1, 0], [7, 0, 8, 5])
    np.testing.assert_array_equal(out["image_size"], [[5, 8]] * 3)
    for (i, j), mask in zip([(0, 0), (0, 1), (1, 0)], masks, strict=True):
        rle = {"size": [5, 8], "counts": out["mask"][i, j]}
        np.testing.assert_array_equal(mask_util.decode(rle).astype(bool), mask)
