"""INT8 calibration: a folder of images, preprocessed exactly like the runtime, fed to TensorRT.

``calibration_feeds`` yields host inputs per image (``image`` = ``prepare_input`` with the
manifest's size/mean/std; for icn.onnx also ``prm`` = the image's naive PRMs, computed by
running prm.onnx with ONNX Runtime on the CPU and repeated to the calibration K).
``make_calibrator`` wraps them in a TensorRT entropy calibrator (``IInt8EntropyCalibrator2``)
with one pycuda device buffer per input; the calibration cache goes next to the engine, so a
rebuild with the same images skips calibration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from icnseg.errors import InputError
from icnseg.fileio import write_bytes

Feeds = Mapping[str, np.ndarray]


def images_digest(images: Sequence[Path]) -> str:
    """sha256 over the names and bytes of ``images`` (part of the INT8 engine's cache key)."""
    h = hashlib.sha256()
    for path in images:
        h.update(path.name.encode() + b"\0")
        try:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:
            raise InputError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    return h.hexdigest()


def _prm_session(prm_onnx: Path) -> Any:
    """A CPU ONNX Runtime session on prm.onnx (gives icn.onnx its calibration PRMs)."""
    from icnseg.export.ort_cpu import cpu_session

    return cpu_session(prm_onnx, "INT8 calibration of icn.onnx (its PRM inputs)")


def calibration_feeds(input_names: Sequence[str], images: Sequence[Path],
                      manifest: Mapping[str, Any], prm_onnx: Path | None = None,
                      k: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Host feeds, one dict per image; images without a peak are skipped for icn.onnx."""
    from icnseg.data.voc import read_image
    from icnseg.preprocess import prepare_input

    size = tuple(int(v) for v in manifest["input_size"])
    session = _prm_session(prm_onnx) if "prm" in input_names else None
    for path in images:
        _, x = prepare_input(read_image(path), size, manifest["mean"], manifest["std"])
        feeds = {"image": np.ascontiguousarray(x, dtype=np.float32)}
        if session is not None:
            prm, count = session.run(["prm", "count"], {"image": feeds["image"]})
            n = int(count[0])
            if n == 0:
                continue
            rows = np.arange(k) % n  # repeat the image's PRMs up to the calibration K
            feeds["prm"] = np.ascontiguousarray(prm[rows][:, None], dtype=np.float32)
        yield feeds


def make_calibrator(trt: Any, feeds: Callable[[], Iterator[Feeds]],
                    shapes: Mapping[str, tuple[int, ...]], cache_path: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``feeds()``; call ``.free()`` after the build."""
    from icnseg.runtime.cuda import check_cuda, cuda_driver

    drv = cuda_driver()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds one image per batch from device buffers allocated once per input."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.shapes = {n: tuple(int(d) for d in s) for n, s in shapes.items()}
            with check_cuda("allocating calibration buffers"):
                self.buffers = {n: drv.mem_alloc(max(4, 4 * int(np.prod(s))))
                                for n, s in self.shapes.items()}
            self.batches: Iterator[Feeds] | None = None
            self.count = 0
            self.error: BaseException | None = None  # raised by the builder's caller

        def get_batch_size(self) -> int:
            """Explicit-batch networks: the batch is in the input shapes."""
            return 1

        def get_batch(self, names: Sequence[str]) -> list[int] | None:
            """Device pointers of the next image's inputs, or None when done."""
            try:
                if self.batches is None:
                    self.batches = iter(feeds())
                batch = next(self.batches, None)
                if batch is None:
                    return None
                for name in names:
                    arr = batch[name]
                    if tuple(arr.shape) != self.shapes[name]:
                        raise InputError(f"calibration input {name}: shape {arr.shape}, "
                                         f"the calibration profile needs {self.shapes[name]}")
                    drv.memcpy_htod(self.buffers[name], np.ascontiguousarray(arr, np.float32))
                self.count += 1
                return [int(self.buffers[name]) for name in names]
            except Exception as exc:  # noqa: BLE001 - must not propagate into TensorRT
                self.error = exc
                return None

        def read_calibration_cache(self) -> bytes | None:
            """The cache from an earlier build with the same images, if any."""
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            """Keep the scales next to the engine."""
            try:
                write_bytes(cache_path, bytes(cache))
            except Exception as exc:  # noqa: BLE001 - must not propagate into TensorRT
                self.error = exc

        def free(self) -> None:
            """Release the device buffers."""
            for buf in self.buffers.values():
                buf.free()
            self.buffers = {}

    return EntropyCalibrator()
