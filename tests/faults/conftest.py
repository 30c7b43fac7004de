"""The fault corpus (corpus.py, corpus_cli.py) and the clean assets its cases start from."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, _HERE / file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


corpus = _load("faults_corpus", "corpus.py")
_load("faults_corpus_cli", "corpus_cli.py")


def write_video(path: Path, frames: int, size: int = 64) -> Path:
    """An MJPG video of a square moving over a gradient."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    base = np.linspace(0, 255, size * size * 3).reshape(size, size, 3).astype(np.uint8)
    for i in range(frames):
        img = base.copy()
        cv2.rectangle(img, (i % 40, 10), (i % 40 + 20, 30), (0, 0, 255), -1)
        writer.write(img)
    writer.release()
    return path


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> corpus.Assets:
    """Clean inputs, made once: sample images, shipped export/checkpoint, dataset, run, video."""
    from icnseg.cli import main
    from icnseg.data.synth import generate
    from icnseg.loader import ASSETS

    root = tmp_path_factory.mktemp("fault-assets")
    images = root / "imgs"
    shutil.copytree(ASSETS / "samples", images)
    dataset = generate(root / "ds", 6, seed=5, size=64)
    pred = root / "pred"
    assert main(["run", str(ASSETS / "export"), str(dataset / "JPEGImages"), "--out", str(pred),
                 "--backend", "onnxruntime"]) == 0
    return corpus.Assets(images=images, export=ASSETS / "export",
                         checkpoint=ASSETS / "default.safetensors", dataset=dataset, pred=pred,
                         video=write_video(root / "v.avi", 12))
