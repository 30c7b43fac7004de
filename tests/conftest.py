"""Shared fixtures: a small random-weight checkpoint and a tiny synthetic dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage


@pytest.fixture(scope="session")
def static_export(tmp_path_factory):
    """The default model exported with a static K (what TensorRT engines are built from; the
    shipped export uses --dynamic-k)."""
    pytest.importorskip("torch")
    from icnseg.export.exporter import checkpoint_to_onnx

    return checkpoint_to_onnx("default", tmp_path_factory.mktemp("static") / "export").out_dir


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny classifier + tiny ICN with random weights (seeded), saved as safetensors."""
    torch = pytest.importorskip("torch")
    from icnseg.checkpoint import save_checkpoint
    from icnseg.classes import SYNTH_CLASSES
    from icnseg.data.transforms import MEAN, STD
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
    from icnseg.data.transforms import MEAN, STD, normalize
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
    from icnseg.export.exporter import checkpoint_to_onnx

    out = tmp_path_factory.mktemp("export") / "peaky"
    return checkpoint_to_onnx(peaky_checkpoint, out, peaks=8).out_dir


def gaussian_by_hand(sigma: float, size: int) -> np.ndarray:
    """2-D Gaussian exp(-(y^2+x^2)/(2 sigma^2)) normalised to sum 1."""
    r = size // 2
    k = np.array(
        [
            [math.exp(-(y * y + x * x) / (2 * sigma * sigma)) for x in range(-r, r + 1)]
            for y in range(-r, r + 1)
        ]
    )
    return k / k.sum()


def eq1_by_loops(crm: np.ndarray, present: np.ndarray, cfg) -> list:
    """Eq. 1 with explicit loops; returns rows (c, y, x, value) sorted by (-value, c, y, x)."""
    c_n, h, w = crm.shape
    rows = []
    for c in range(c_n):
        if not present[c]:
            continue
        m = crm[c].astype(np.float64)
        if cfg.filter == "gaussian":
            g = ndimage.convolve(m, gaussian_by_hand(cfg.sigma, cfg.kernel_size), mode="constant")
        else:
            g = ndimage.median_filter(m, size=cfg.median_size, mode="constant", cval=0.0)
        p = np.maximum(m - g - m.mean(), 0.0)
        cand = []
        r = cfg.window // 2
        for y in range(h):
            for x in range(w):
                if p[y, x] <= 0:
                    continue
                nb = p[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
                if p[y, x] >= nb.max():
                    cand.append((c, y, x, p[y, x]))
        if cfg.min_response is not None:
            cand = [t for t in cand if m[t[1], t[2]] >= cfg.min_response]
        if cfg.relative > 0 and cand:
            top = max(t[3] for t in cand)
            cand = [t for t in cand if t[3] >= cfg.relative * top]
        rows += cand
    rows.sort(key=lambda t: (-t[3], t[0], t[1], t[2]))
    return rows[: cfg.max_peaks]


@pytest.fixture(scope="session")
def hand_gaussian():
    """The 2-D Gaussian by its formula (``gaussian_by_hand``)."""
    return gaussian_by_hand


@pytest.fixture(scope="session")
def brute_find_peaks():
    """Eq. 1 by pixel loops (``eq1_by_loops``): the reference of find_peaks and prm.onnx."""
    return eq1_by_loops


def randomise_batchnorm(model, seed: int = 1):
    """Give every BatchNorm non-trivial eval statistics and affine parameters (eval mode)."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def randomise_bn():
    """Factory: give BatchNorms non-trivial eval statistics (``randomise_bn(model, seed=1)``)."""
    return randomise_batchnorm


@pytest.fixture()
def run_cli(capsys):
    """Run the CLI in-process: ``run_cli(args)`` -> (exit code, stdout, the ``icnseg:`` lines
    of stderr followed by what main reported through ``err``)."""
    from icnseg.cli.main import main

    def run(args):
        errors: list[str] = []
        rc = main(args, err=errors.append)
        captured = capsys.readouterr()
        lines = [ln for ln in captured.err.splitlines() if ln.startswith("icnseg:")]
        return rc, captured.out, lines + errors

    return run
