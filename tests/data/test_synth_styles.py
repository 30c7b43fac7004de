"""The other looks and the non-target objects of the synthetic data (``synth_styles``)."""

from __future__ import annotations

import numpy as np
import pytest

from icnseg.classes import OTHERS_CLASSES, SYNTH_CLASSES
from icnseg.data.synth import generate, render_sample, sample_rng
from icnseg.data.voc import VocDataset
from icnseg.errors import ConfigError


@pytest.mark.parametrize("style,objects", [("salient", "others"), ("unseen", "targets"),
                                           ("train", "others"), ("unseen", "others")])
def test_rendered_masks_are_disjoint_visible_and_classed(style, objects):
    for i in range(12):
        img, masks, classes = render_sample(sample_rng(7, i), 128, style, objects)
        assert img.dtype == np.uint8 and img.shape == (128, 128, 3)
        assert len(masks) >= 1 and masks.reshape(len(masks), -1).any(1).all()
        assert (masks.sum(0) <= 1).all()  # disjoint
        names = OTHERS_CLASSES if objects == "others" else SYNTH_CLASSES
        assert ((classes >= 0) & (classes < len(names))).all()


def test_unseen_look_keeps_the_scene_and_changes_the_pixels():
    for i in range(6):
        a = render_sample(sample_rng(11, i), 128, "train")
        b = render_sample(sample_rng(11, i), 128, "unseen")
        assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
        assert np.abs(a[0].astype(int) - b[0].astype(int)).mean() > 10


def test_others_dataset_is_class_agnostic_and_reads_back(tmp_path):
    root = generate(tmp_path / "others", 5, seed=2, size=96, val_fraction=0.0,
                    style="salient", objects="others")
    assert (root / "classes.txt").read_text().split() == list(OTHERS_CLASSES)
    ds = VocDataset(root, "train")
    assert ds.classes == OTHERS_CLASSES and len(ds) == 5
    for i in range(len(ds)):
        s = ds[i]
        _, masks, _ = render_sample(sample_rng(2, i), 96, "salient", "others")
        assert len(s.instance_masks) == len(masks)
        # the PNG carries a void band on boundaries; the interiors must agree
        inside = ~s.ignore_mask
        assert np.array_equal(s.instance_masks[:, inside], masks[:, inside])


def test_bad_style_or_objects_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="style must be one of"):
        render_sample(sample_rng(0, 0), 64, "photo")
    with pytest.raises(ConfigError, match="objects must be one of"):
        generate(tmp_path / "x", 2, objects="animals")
    assert not (tmp_path / "x").exists()
