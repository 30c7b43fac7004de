"""Shared fixtures: a small random-weight checkpoint and a tiny synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def static_export(tmp_path_factory):
    """The default model exported with a static K (what TensorRT engines are built from; the
    shipped export uses --dynamic-k)."""
    pytest.importorskip("torch")
    from icnseg.export.pipeline import checkpoint_to_onnx

    return checkpoint_to_onnx("default", tmp_path_factory.mktemp("static") / "export").out_dir


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


@pytest.fixture(scope="session")
def peaky_checkpoint(tmp_path_factory):
    """Like ``tiny_checkpoint`` but with peaks: a random tiny classifier's maps are smooth and
    offset, so Eq. 1 finds none; centring the class conv's bias on one synthetic image (and
    scaling it) gives every class local maxima, so exports and backends have work to compare."""
    torch = pytest.importorskip("torch")
    from icnseg.checkpoint import save_checkpoint
    from icnseg.classes import SYNTH_CLASSES
    from icnseg.data.synth import render_sample, sample_rng
    from icnseg.data.transforms import normalize
    from icnseg.model import MEAN, STD
    from icnseg.models.icn import ICN
    from icnseg.models.prm import PRMClassifier

    torch.manual_seed(1)
    classifier = PRMClassifier("tiny", len(SYNTH_CLASSES)).eval()
    icn = ICN(encoder="tiny").eval()
    image, _, _ = render_sample(sample_rng(99, 0), size=64)
    with torch.no_grad():
        crm = classifier(torch.from_numpy(normalize(image, MEAN, STD))[None])[0]
        head = classifier.classifier
        head.bias -= crm.mean((1, 2))
        head.weight *= 20.0
        head.bias *= 20.0
    state = {f"classifier.{k}": v for k, v in classifier.state_dict().items()}
    state.update({f"icn.{k}": v for k, v in icn.state_dict().items()})
    config = {"classes": list(SYNTH_CLASSES), "backbone": "tiny", "icn_encoder": "tiny",
              "input_size": [64, 64], "mean": list(MEAN), "std": list(STD),
              "peaks": {"score_threshold": 0.0, "max_peaks": 8}}
    path = tmp_path_factory.mktemp("ckpt") / "peaky.safetensors"
    save_checkpoint(path, state, config)
    return path


@pytest.fixture(scope="session")
def peaky_export(peaky_checkpoint, tmp_path_factory):
    """``peaky_checkpoint`` exported (rule prm, K_max 8, 64x64) without the parity check."""
    pytest.importorskip("onnx")
    from icnseg.export.pipeline import checkpoint_to_onnx

    out = tmp_path_factory.mktemp("export") / "peaky"
    return checkpoint_to_onnx(peaky_checkpoint, out, peaks=8).out_dir
