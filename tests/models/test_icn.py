"""ICN: shapes, range, min-max invariance, iteration, size checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from icnseg.errors import ConfigError
from icnseg.models.icn import ICN, conv_of_upsampled, enhance


@pytest.fixture(scope="module")
def icn():
    torch.manual_seed(0)
    return ICN("tiny").eval()


def test_output_shape_and_range(icn):
    image = torch.randn(1, 3, 32, 48)
    prm = torch.rand(3, 1, 32, 48)
    with torch.no_grad():
        out = icn(image, prm)
        logits = icn.logits(image.expand(3, -1, -1, -1), prm)
    assert out.shape == (3, 1, 32, 48)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, torch.sigmoid(logits))


def test_prm_minmax_invariance(icn):
    torch.manual_seed(1)
    image = torch.randn(2, 3, 32, 32)
    prm = torch.rand(2, 1, 32, 32) * 1e-3  # naive PRMs are gradients: tiny magnitudes
    with torch.no_grad():
        ref = icn.logits(image, prm)
        scaled = icn.logits(image, prm * 250.0 + 3.0)
        lo = prm.amin(dim=(1, 2, 3), keepdim=True)
        hi = prm.amax(dim=(1, 2, 3), keepdim=True)
        pre = icn.logits(image, (prm - lo) / (hi - lo))
    torch.testing.assert_close(scaled, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pre, ref, rtol=1e-4, atol=1e-5)


def test_per_sample_normalisation(icn):
    image = torch.randn(1, 3, 16, 16)
    prm = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        both = icn(image, torch.cat([prm[:1], prm[1:] * 40.0]))
        single = icn(image, prm[1:])
    torch.testing.assert_close(both[1:], single, rtol=1e-4, atol=1e-5)


def test_enhance_feeds_back_output(icn):
    image = torch.randn(1, 3, 16, 32)
    prm = torch.rand(2, 1, 16, 32)
    with torch.no_grad():
        out = enhance(icn, image, prm, iterations=3)
        x = prm
        for _ in range(3):
            x = torch.sigmoid(icn.logits(image, x))
    torch.testing.assert_close(out, x)
    assert out.shape == (2, 1, 16, 32)


def test_gradients_reach_parameters(icn):
    icn.train()
    out = icn.logits(torch.randn(1, 3, 16, 16), torch.rand(1, 1, 16, 16))
    nn.functional.binary_cross_entropy_with_logits(out, torch.ones_like(out)).backward()
    assert all(p.grad is not None for p in icn.parameters())
    icn.zero_grad(set_to_none=True)
    icn.eval()


def test_vgg16_layout():
    m = ICN("vgg16")
    sd = m.state_dict()
    convs = [k for k in sd if k.startswith("encoder.features.") and k.endswith(".weight")]
    idx = [int(k.split(".")[2]) for k in convs]
    assert idx == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # torchvision VGG-16 indices
    assert tuple(sd["encoder.features.0.weight"].shape) == (64, 4, 3, 3)
    with torch.no_grad():
        out = m(torch.randn(1, 3, 16, 16), torch.rand(2, 1, 16, 16))
    assert out.shape == (2, 1, 16, 16)


def test_config_errors(icn):
    with pytest.raises(ConfigError, match="divisible by 16"):
        icn(torch.randn(1, 3, 40, 48), torch.rand(1, 1, 40, 48))
    with pytest.raises(ConfigError):
        icn(torch.randn(1, 3, 32, 32), torch.rand(1, 1, 16, 16))
    with pytest.raises(ConfigError):
        icn(torch.randn(2, 3, 16, 16), torch.rand(3, 1, 16, 16))
    with pytest.raises(ConfigError):
        ICN("resnet50")
    with pytest.raises(ConfigError):
        enhance(icn, torch.randn(1, 3, 16, 16), torch.rand(1, 1, 16, 16), iterations=0)


@pytest.mark.parametrize("size,d_size", [((96, 96), (6, 6)), ((64, 128), (4, 8)),
                                         ((16, 32), (1, 2)), ((40, 24), (7, 3))])
def test_conv_of_upsampled_equals_conv_after_interpolate(size, d_size):
    """The stride-16 form of the mapping's first conv: the same values and gradients as
    upsampling d with F.interpolate and convolving (zero padding) at full resolution."""
    g = torch.Generator().manual_seed(sum(size))
    # float64, so that only the algebra is compared, not float32 summation orders (the taps
    # stay float32, as upsample_maps': ~1e-6 apart from F.interpolate's at a 7 -> 40 ratio)
    d = torch.randn(3, 5, *d_size, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    got = conv_of_upsampled(d, weight, size)
    up = F.interpolate(d, size=size, mode="bilinear", align_corners=False)
    ref = F.conv2d(up, weight, padding=1)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-5)
    probe = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    got_grads = torch.autograd.grad((got * probe).sum(), (d, weight))
    ref_grads = torch.autograd.grad((ref * probe).sum(), (d, weight))
    for a, b in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-4)


def test_factored_logits_equal_the_upsample_first_ones(icn):
    image = torch.randn(1, 3, 48, 64)
    prm = torch.rand(4, 1, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(icn.logits(image, prm), icn.logits(image, prm, factored=False),
                                   rtol=1e-5, atol=1e-6)


def test_ablation_variants():
    """Table 1's variants: w/o input PRM ignores the PRM, w/o CFM and DFM has no fusions;
    both factored forms equal their upsample-first ones."""
    from icnseg.config_schema import ICN_VARIANTS
    from icnseg.models.icn import VARIANTS

    assert ICN_VARIANTS == VARIANTS
    torch.manual_seed(3)
    image = torch.randn(1, 3, 32, 48)
    prm = torch.rand(2, 1, 32, 48)
    no_prm, no_fusion = ICN("tiny", "no_prm").eval(), ICN("tiny", "no_fusion").eval()
    assert no_prm.encoder.features[0].in_channels == 3
    assert len(no_fusion.cfm) == len(no_fusion.dfm) == 0
    with torch.no_grad():
        out = no_prm(image, prm)
        torch.testing.assert_close(out[0], out[1])  # the same map for every instance
        for m in (no_prm, no_fusion):
            torch.testing.assert_close(m.logits(image, prm), m.logits(image, prm, factored=False),
                                       rtol=1e-5, atol=1e-6)
        full = ICN("tiny").eval()(image, prm)
        assert not torch.allclose(full[0], full[1])
    with pytest.raises(ConfigError, match="variant"):
        ICN("tiny", "no_cfm")
