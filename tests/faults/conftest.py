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
for _part in ("ckpt", "export", "cli"):
    _load(f"faults_corpus_{_part}", f"corpus_{_part}.py")


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
                         video=corpus.write_video(root / "v.avi", 12))
