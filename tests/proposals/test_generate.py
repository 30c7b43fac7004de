"""Built-in selective-search style proposal generator."""

import time

import cv2
import numpy as np
import pytest

from icnseg.errors import ConfigError, InputError
from icnseg.nms import mask_iou
from icnseg.proposals.generate import ProposalConfig, generate_proposals


def shapes_image(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seven filled shapes on a noisy two-tone gradient background, and their masks."""
    rng = np.random.default_rng(seed)
    s = size / 256
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([80 + 60 * xx, 110 + 40 * yy, 150 - 50 * xx * yy], axis=2)
    draws = [
        lambda m: cv2.circle(m, (int(60 * s), int(60 * s)), int(35 * s), 1, -1),
        lambda m: cv2.rectangle(m, (int(140 * s), int(30 * s)), (int(220 * s), int(90 * s)), 1, -1),
        lambda m: cv2.fillPoly(m, [(np.array([[20, 230], [70, 140], [120, 230]]) * s).astype(
            np.int32)], 1),
        lambda m: cv2.ellipse(m, (int(180 * s), int(170 * s)), (int(45 * s), int(25 * s)), 30,
                              0, 360, 1, -1),
        lambda m: cv2.rectangle(m, (int(110 * s), int(110 * s)), (int(135 * s), int(200 * s)), 1,
                                -1),
        lambda m: cv2.circle(m, (int(225 * s), int(235 * s)), int(15 * s), 1, -1),
        lambda m: cv2.fillPoly(m, [(np.array([[100, 20], [125, 60], [75, 60]]) * s).astype(
            np.int32)], 1),
    ]
    colours = [(220, 40, 40), (40, 200, 60), (230, 220, 40), (60, 60, 200), (240, 240, 240),
               (20, 20, 20), (200, 60, 200)]
    masks = []
    for draw, colour in zip(draws, colours, strict=True):
        m = np.zeros((size, size), np.uint8)
        draw(m)
        masks.append(m.astype(bool))
        image[masks[-1]] = colour
    image = image + rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), np.stack(masks)


def test_proposals_cover_drawn_shapes_fast():
    image, shapes = shapes_image()
    generate_proposals(image[:32, :32])  # warm up OpenCV's lazy initialisation
    elapsed = []
    for _ in range(2):  # best of two: the CI machine may be busy
        start = time.perf_counter()
        props = generate_proposals(image)
        elapsed.append(time.perf_counter() - start)
    elapsed = min(elapsed)
    assert len(props) >= 100
    assert elapsed < 1.0, f"{elapsed:.2f} s at 256x256"
    best = mask_iou(shapes, props.masks).max(axis=1)
    assert (best >= 0.7).all(), best
    # Exact factorisation over one shared superpixel map, and no duplicate masks.
    np.testing.assert_array_equal(props.masks, props.membership[:, props.superpixels])
    assert len(np.unique(props.membership, axis=0)) == len(props)
    assert props.masks.any(axis=(1, 2)).all()


@pytest.mark.parametrize("image", [np.zeros((1, 1, 3), np.uint8), np.full((40, 30, 3), 128,
                                                                           np.uint8)])
def test_degenerate_images(image):
    props = generate_proposals(image)
    assert len(props) >= 1 and props.shape == image.shape[:2]
    assert props.masks[0].all()  # a uniform image is one region: the whole image


def test_grey_input_and_errors():
    image, _ = shapes_image(64)
    assert len(generate_proposals(image[..., 0])) > 0
    with pytest.raises(InputError):
        generate_proposals(image.astype(np.float32))
    with pytest.raises(ConfigError):
        generate_proposals(image, ProposalConfig(strategies=("xyz:c",)))
    assert len(generate_proposals(image, ProposalConfig(max_proposals=5))) <= 5


def test_masks_stay_sharp_when_the_oversegmentation_is_shrunk():
    """At 448 px the superpixels are found at 280 px and refined at full size: the drawn
    shapes are still recovered nearly pixel-exactly (nearest upscaling alone is blockier)."""
    image, shapes = shapes_image(448)
    props = generate_proposals(image)
    assert props.superpixels.shape == (448, 448)
    best = mask_iou(shapes, props.masks).max(axis=1)
    assert (best >= 0.9).all(), best
    np.testing.assert_array_equal(props.masks, props.membership[:, props.superpixels])


def test_bad_shrink_settings_are_config_errors():
    image, _ = shapes_image(64)
    with pytest.raises(ConfigError, match="segment_scale"):
        generate_proposals(image, ProposalConfig(segment_scale=0))
    with pytest.raises(ConfigError, match="min_side"):
        generate_proposals(image, ProposalConfig(refine_passes=-1))


def test_coarser_starting_partition_adds_proposals_after_the_default_ones():
    """partition_k=(0, 40) (the old default) runs the k=0 strategies first, so the default's
    proposals are its first rows, then the k=40 groups and their hierarchies follow."""
    image, shapes = shapes_image(160, seed=3)
    default = generate_proposals(image)
    more = generate_proposals(image, ProposalConfig(partition_k=(0.0, 40.0)))
    assert len(more) > len(default)
    np.testing.assert_array_equal(more.superpixels, default.superpixels)
    np.testing.assert_array_equal(more.membership[: len(default)], default.membership)
    np.testing.assert_array_equal(more.masks, more.membership[:, more.superpixels])
    assert len(np.unique(more.membership, axis=0)) == len(more)


def test_small_images_are_segmented_at_min_side_and_refined():
    """A 96-px image is over-segmented at 72 px (min_side) and refined back to 96 px: the
    superpixel map is at the image size and the drawn shapes are still recovered."""
    image, shapes = shapes_image(96, seed=1)
    props = generate_proposals(image)
    assert props.superpixels.shape == (96, 96)
    unrefined = generate_proposals(image, ProposalConfig(refine_passes=0))
    assert not np.array_equal(props.superpixels, unrefined.superpixels)
    best = mask_iou(shapes, props.masks).max(axis=1)
    assert (best >= 0.85).all(), best  # 0.93..1.0 here; 0.81..1.0 without the refinement
