"""Backbones: torchvision key layout (recorded independently), shapes, load_pretrained."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from icnseg.errors import CheckpointError, ConfigError
from icnseg.models.backbones import BACKBONES, build_backbone, load_pretrained

# torchvision vgg16().features: conv layers sit at these indices (ReLU/MaxPool in between).
TORCHVISION_VGG16_KEYS = [
    f"features.{i}.{p}"
    for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    for p in ("weight", "bias")
]
TORCHVISION_VGG16_SHAPES = {
    "features.0.weight": (64, 3, 3, 3),
    "features.5.weight": (128, 64, 3, 3),
    "features.10.weight": (256, 128, 3, 3),
    "features.17.weight": (512, 256, 3, 3),
    "features.28.weight": (512, 512, 3, 3),
}
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet_keys(layers: tuple[int, ...] = (3, 4, 6, 3)) -> list[str]:
    """torchvision ResNet (Bottleneck) state_dict naming, minus fc.*, written out by hand."""
    keys = ["conv1.weight"] + [f"bn1.{p}" for p in _BN]
    for li, n in enumerate(layers, start=1):
        for b in range(n):
            pre = f"layer{li}.{b}"
            for j in (1, 2, 3):
                keys.append(f"{pre}.conv{j}.weight")
                keys += [f"{pre}.bn{j}.{p}" for p in _BN]
            if b == 0:
                keys.append(f"{pre}.downsample.0.weight")
                keys += [f"{pre}.downsample.1.{p}" for p in _BN]
    return keys


def test_vgg16_keys_match_torchvision():
    sd = build_backbone("vgg16").state_dict()
    assert sorted(sd) == sorted(TORCHVISION_VGG16_KEYS)
    for k, shape in TORCHVISION_VGG16_SHAPES.items():
        assert tuple(sd[k].shape) == shape
    assert sum(v.numel() for v in sd.values()) == 14_714_688  # torchvision vgg16 features


def test_resnet50_keys_match_torchvision():
    sd = build_backbone("resnet50").state_dict()
    expected = torchvision_resnet_keys()
    assert len(expected) == 320 - 2  # torchvision resnet50 has 320 entries incl. fc.weight/bias
    assert sorted(sd) == sorted(expected)
    assert tuple(sd["layer1.0.conv1.weight"].shape) == (64, 64, 1, 1)
    assert tuple(sd["layer2.0.downsample.0.weight"].shape) == (512, 256, 1, 1)
    assert tuple(sd["layer4.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    params = sum(p.numel() for p in build_backbone("resnet50").parameters())
    assert params == 25_557_032 - 2048 * 1000 - 1000  # torchvision resnet50 minus fc


def test_resnet50_is_v15_stride_on_conv2():
    m = build_backbone("resnet50")
    assert m.layer2[0].conv1.stride == (1, 1)
    assert m.layer2[0].conv2.stride == (2, 2)
    assert m.maxpool.kernel_size == 3 and m.maxpool.stride == 2 and m.maxpool.padding == 1


@pytest.mark.parametrize(
    "name,size,channels,stride",
    [("tiny", 64, 128, 8), ("vgg16", 32, 512, 16), ("resnet50", 64, 2048, 32)],
)
def test_output_shape_and_attributes(name, size, channels, stride):
    m = build_backbone(name).eval()
    assert m.out_channels == channels and m.stride == stride
    with torch.no_grad():
        y = m(torch.zeros(2, 3, size, size))
    assert tuple(y.shape) == (2, channels, size // stride, size // stride)


def test_tiny_is_small():
    n = sum(p.numel() for p in build_backbone("tiny").parameters())
    assert 200_000 <= n <= 500_000
    assert set(BACKBONES) == {"tiny", "vgg16", "resnet50"}


def test_unknown_backbone():
    with pytest.raises(ConfigError, match="alexnet"):
        build_backbone("alexnet")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_pretrained_round_trip_ignores_head(tmp_path, suffix):
    src = build_backbone("tiny")
    for p in src.parameters():
        p.data.normal_()
    state = {k: v.clone() for k, v in src.state_dict().items()}
    state["fc.weight"] = torch.zeros(10, 128)
    state["classifier.6.bias"] = torch.zeros(10)
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    dst = load_pretrained(build_backbone("tiny"), path)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_load_pretrained_mismatch_names_file_and_keys(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(build_backbone("tiny").state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(build_backbone("vgg16"), path)
    msg = str(err.value)
    assert msg.startswith(str(path))
    assert "features.0.bias" in msg  # missing: tiny convs have no bias
    assert "features.1.running_mean" in msg  # unexpected: tiny BN


def test_load_pretrained_shape_mismatch_and_bad_files(tmp_path):
    state = build_backbone("tiny").state_dict()
    state["features.0.weight"] = torch.zeros(32, 4, 3, 3)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="features.0.weight"):
        load_pretrained(build_backbone("tiny"), path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_pretrained(build_backbone("tiny"), junk)
    with pytest.raises(CheckpointError, match="absent.pth"):
        load_pretrained(build_backbone("tiny"), tmp_path / "absent.pth")
