"""runtime.device_match: device-resident maps (a DeviceArray, as an engine leaves them) matched
by the CUDA kernels give select_instances' instances. CPU emulator, and a GPU when present."""

from __future__ import annotations

import numpy as np
import pytest

from icnseg.matching import MatchConfig
from icnseg.postprocess import select_instances
from icnseg.proposals.types import Proposals
from icnseg.runtime.backend import DeviceArray
from icnseg.runtime.gpu_matcher import as_gpuarray, match_on_device
from icnseg.segmenter import Stages
from icnseg.settings import SegmentConfig

from .conftest import to_dev

CLASSES = ("circle", "square", "triangle")


def _case(seed: int, k: int, h: int = 24, w: int = 40):
    """Stages with K blob maps (ICN output) and superpixel-union proposals around them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    maps = np.zeros((k, h, w), np.float32)
    for i in range(k):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 8)
        maps[i] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    labels = (yy // 4) * (-(-w // 4)) + xx // 4
    member = rng.random((60, int(labels.max()) + 1)) < 0.08
    member[0] = False  # an empty proposal
    props = Proposals.from_membership(labels, member)
    peaks = np.stack([rng.integers(0, len(CLASSES), k), rng.integers(0, 3, k),
                      rng.integers(0, 5, k), rng.random(k)], 1).astype(np.float32)
    stages = Stages(np.zeros((h, w, 3), np.uint8), rng.uniform(0.3, 1, len(CLASSES)), peaks,
                    prm=maps, enhanced=maps, crm=np.zeros((len(CLASSES), 3, 5), np.float32))
    return stages, props


def _match_on_device(to_dev, stages, props, cfg):
    """The stages' ICN maps put on the device as an engine leaves them, then matched there."""
    on_device = to_dev(stages.enhanced)
    maps = DeviceArray(int(on_device.gpudata), on_device.shape, on_device.dtype, "cuda",
                       owner=on_device)
    return match_on_device(stages, maps, props, CLASSES, cfg, normalize=False)


@pytest.mark.parametrize("seed,k", [(0, 1), (1, 6), (2, 12)])
@pytest.mark.parametrize("factored", [True, False])
def test_device_maps_give_the_numpy_instances(device, seed, k, factored):
    cfg = SegmentConfig(match=MatchConfig(nms_iou=0.3))
    stages, props = _case(seed, k)
    props = props if factored else Proposals(props.masks)
    want = select_instances(stages, props, CLASSES, cfg)
    got = _match_on_device(to_dev, stages, props, cfg)
    assert [(i.class_name, i.score, i.peak) for i in got] == \
        [(i.class_name, i.score, i.peak) for i in want]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("factored", [True, False])
def test_maps_are_upsampled_to_the_proposals_size(device, factored):
    """ICN maps at the model input size matched to proposals at 2.5x it (the image's size)."""
    cfg = SegmentConfig(match=MatchConfig(nms_iou=0.3))
    stages, _ = _case(4, 6)
    _, props = _case(5, 1, h=60, w=100)
    props = props if factored else Proposals(props.masks)
    want = select_instances(stages, props, CLASSES, cfg)
    got = _match_on_device(to_dev, stages, props, cfg)
    assert want, "the case must keep some instances"
    assert [(i.class_name, i.score, i.peak) for i in got] == \
        [(i.class_name, i.score, i.peak) for i in want]
    assert all(np.array_equal(a.mask, b.mask) and a.mask.shape == (60, 100)
               for a, b in zip(got, want, strict=True))


def test_as_gpuarray_is_a_view(device):
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    arr = to_dev(host)
    view = as_gpuarray(DeviceArray(int(arr.gpudata), (3, 4), np.dtype(np.float32), "cuda",
                                   owner=arr))
    assert view.shape == (3, 4) and int(view.gpudata) == int(arr.gpudata)
    np.testing.assert_array_equal(view.get(), host)
    assert view.icnseg_owner is arr
