"""Request decoding and response encoding of the Triton model ``icnseg`` (numpy only).

A request carries, per batch item, either ``image`` (uint8 [H, W, 3]) or ``image_bytes`` (one
encoded JPEG/PNG/... file), and optionally ``proposals`` (uint8 [N, H, W], nonzero = inside).
A response has, per batch item, ``count`` [1] and per instance (padded to the request's
largest count: class_id -1, empty strings, zeros) ``class_id`` int32, ``class_name`` bytes,
``score`` float64, ``bbox`` int32 [4] (x0, y0, x1, y1, x1/y1 exclusive), ``mask`` bytes (the
compressed COCO-RLE counts string of an ``image_size`` [H, W] mask) and ``image_size`` [2].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from icnseg.errors import InputError
from icnseg.instance import Instance

IMAGE, IMAGE_BYTES, PROPOSALS = "image", "image_bytes", "proposals"
OUTPUTS = ("count", "class_id", "class_name", "score", "bbox", "mask", "image_size")


class RequestError(InputError):
    """A request the model cannot segment; Triton answers it with this one-line message.

    PyTriton sends ``traceback.format_exception(err, err.__traceback__)`` to the client, so
    the traceback is hidden here: the client gets the message, not the server's stack.
    """

    @property  # type: ignore[override]
    def __traceback__(self) -> None:
        return None

    @__traceback__.setter
    def __traceback__(self, value: Any) -> None:
        pass


def _batch_size(request: Mapping[str, np.ndarray]) -> int:
    """Items in one request (the leading dimension Triton's batching adds)."""
    if (IMAGE in request) == (IMAGE_BYTES in request):
        raise RequestError(f"send exactly one of the inputs {IMAGE!r} (uint8 H x W x 3) and "
                           f"{IMAGE_BYTES!r} (an encoded image file)")
    return int(np.asarray(request[IMAGE if IMAGE in request else IMAGE_BYTES]).shape[0])


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else bytes(np.asarray(value).tobytes())


def decode_request(request: Mapping[str, np.ndarray], where: str) -> list[tuple[np.ndarray, Any]]:
    """Each batch item of ``request`` as (RGB uint8 image, Proposals | None); RequestError
    starting with ``where`` (e.g. "request 0") for anything that is not a valid input."""
    from icnseg.data.images import decode_image
    from icnseg.errors import IcnsegError
    from icnseg.preprocess import check_image
    from icnseg.proposals.types import Proposals

    try:
        n = _batch_size(request)
    except RequestError as exc:
        raise RequestError(f"{where}: {exc}") from None
    items = []
    for i in range(n):
        tag = f"{where} item {i}" if n > 1 else where
        try:
            if IMAGE in request:
                image = np.asarray(request[IMAGE][i])
                if image.size == 0:
                    raise InputError(f"input {IMAGE!r} has zero size {image.shape}")
                image = check_image(image, f"input {IMAGE!r}")
            else:
                data = np.asarray(request[IMAGE_BYTES][i]).reshape(-1)
                if data.size != 1:
                    raise InputError(f"input {IMAGE_BYTES!r} must hold one encoded file per "
                                     f"item, got {data.size}")
                image = decode_image(_as_bytes(data[0]), f"input {IMAGE_BYTES}")
            props = None
            if PROPOSALS in request:
                masks = np.asarray(request[PROPOSALS][i])
                if masks.ndim != 3 or masks.shape[1:] != image.shape[:2] or masks.shape[0] < 1:
                    raise InputError(f"input {PROPOSALS!r} must be [N >= 1, H, W] with the "
                                     f"image's H x W {image.shape[:2]}, got {masks.shape}")
                props = Proposals(masks.astype(bool))
        except IcnsegError as exc:
            raise RequestError(f"{tag}: {exc}") from None
        items.append((image, props))
    return items


def encode_response(results: Sequence[tuple[tuple[int, int], Sequence[Instance]]]
                    ) -> dict[str, np.ndarray]:
    """The output arrays of one request from its items' (image H x W, instances)."""
    from icnseg.rle import mask_to_rle

    n, m = len(results), max((len(insts) for _, insts in results), default=0)
    out = {
        "count": np.zeros((n, 1), np.int32),
        "class_id": np.full((n, m), -1, np.int32),
        "class_name": np.full((n, m), b"", dtype=object),
        "score": np.zeros((n, m), np.float64),
        "bbox": np.zeros((n, m, 4), np.int32),
        "mask": np.full((n, m), b"", dtype=object),
        "image_size": np.zeros((n, 2), np.int32),
    }
    for i, (size, instances) in enumerate(results):
        out["count"][i, 0] = len(instances)
        out["image_size"][i] = size
        for j, inst in enumerate(instances):
            out["class_id"][i, j] = inst.class_index
            out["class_name"][i, j] = inst.class_name.encode("utf-8")
            out["score"][i, j] = inst.score
            out["bbox"][i, j] = inst.bbox
            out["mask"][i, j] = mask_to_rle(inst.mask)["counts"].encode("ascii")
    return out
