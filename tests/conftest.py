"""Shared fixtures: a small random-weight checkpoint and a tiny synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny classifier + tiny ICN with random weights (seeded), saved as safetensors."""
    torch = pytest.importorskip("torch")
    from icnseg.checkpoint import save_checkpoint
    from icnseg.classes import SYNTH_CLASSES
    from icnseg.model import MEAN, STD
    from icnseg.models.icn import ICN
    from icnseg.models.prm import PRMClassifier

    torch.manual_seed(0)
    classifier = PRMClassifier("tiny", len(SYNTH_CLASSES)).eval()
    with torch.no_grad():  # Eq. 1 subtracts mean(M): a negative offset lets random maps peak
        classifier.classifier.bias.fill_(-2.0)
    icn = ICN(encoder="tiny").eval()
    state = {f"classifier.{k}": v for k, v in classifier.state_dict().items()}
    state.update({f"icn.{k}": v for k, v in icn.state_dict().items()})
    config = {"classes": list(SYNTH_CLASSES), "backbone": "tiny", "icn_encoder": "tiny",
              "input_size": [64, 64], "mean": list(MEAN), "std": list(STD),
              # a random classifier: accept every class so peaks exist
              "peaks": {"score_threshold": 0.0}}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, state, config)
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A 6-image synthetic VOC-layout dataset at 96 px."""
    from icnseg.data.synth import generate

    return generate(tmp_path_factory.mktemp("data") / "shapes", 6, seed=3, size=96)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
