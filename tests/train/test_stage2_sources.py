"""Stage 2's label sources and schedule: a class-agnostic saliency set, --init, the warm-up
before fed-back inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from icnseg.checkpoint import load_checkpoint  # noqa: E402
from icnseg.data.synth import generate  # noqa: E402
from icnseg.data.transforms import resize, resize_mask  # noqa: E402
from icnseg.data.voc import VocDataset  # noqa: E402
from icnseg.eager import EagerModel  # noqa: E402
from icnseg.errors import ConfigError  # noqa: E402
from icnseg.models.prm import PeakConfig, find_peaks, present_classes  # noqa: E402
from icnseg.train import stage2  # noqa: E402
from icnseg.train.pseudo_labels import naive_prms  # noqa: E402
from icnseg.train.stage2 import Stage2Config, build_targets, train_stage2  # noqa: E402


@pytest.fixture(scope="module")
def others(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("others") / "o", 4, seed=5, size=64,
                    val_fraction=0.0, style="salient", objects="others")


def _cfg(tmp_path, data, stage1, **kw) -> Stage2Config:
    base = dict(data=str(data), out=str(tmp_path / "s2.safetensors"), stage1=str(stage1),
                icn_encoder="tiny", epochs=1, batch_size=4)
    return Stage2Config(**{**base, **kw})


def test_predicted_classes_give_the_peaks_when_none_are_given(tiny_checkpoint, others):
    model = EagerModel.from_checkpoint(load_checkpoint(tiny_checkpoint))
    peak_cfg = PeakConfig(**model.config["peaks"])
    image = resize(VocDataset(others, "train")[0].image, model.input_size)
    peaks, prm = naive_prms(model.classifier, image, None, peak_cfg, "prm", model.mean,
                            model.std)
    from icnseg.data.transforms import normalize

    with torch.no_grad():  # independently: the classifier's own present classes
        crm = model.classifier(torch.from_numpy(normalize(image, model.mean, model.std))[None])[0]
    want = find_peaks(crm, present_classes(crm, peak_cfg), peak_cfg)
    assert len(peaks) > 0 and np.array_equal(peaks, want) and len(prm) == len(peaks)


def test_saliency_targets_of_a_foreign_set_are_its_own_masks(tiny_checkpoint, others, tmp_path):
    cfg = _cfg(tmp_path, others, tiny_checkpoint, labels="saliency", saliency_dir=str(others))
    model = EagerModel.from_checkpoint(load_checkpoint(tiny_checkpoint))
    ds = VocDataset(others, "train")  # its own classes.txt ("object"), not the model's
    images, targets = build_targets(cfg, model, ds, log=lambda m: None)
    assert len(images) == len(ds) and targets
    for t in targets:
        gt = [resize_mask(m, model.input_size) for m in ds[t.image_index].instance_masks]
        assert any(np.array_equal(t.mask, g) for g in gt)


def test_fed_back_inputs_wait_for_the_warm_up(monkeypatch, tiny_checkpoint, synth_dir,
                                               tmp_path):
    calls = []
    real = stage2._fed_back
    monkeypatch.setattr(stage2, "_fed_back", lambda *a, **k: calls.append(1) or real(*a, **k))
    common = dict(labels="saliency", saliency_dir=str(synth_dir), iterations=3, feedback=1.0)
    train_stage2(_cfg(tmp_path / "a", synth_dir, tiny_checkpoint, feedback_after=1, **common),
                 log=lambda m: None)
    assert calls == []  # one epoch, all of it warm-up
    train_stage2(_cfg(tmp_path / "b", synth_dir, tiny_checkpoint, feedback_after=0, **common),
                 log=lambda m: None)
    assert calls


def test_init_starts_from_that_checkpoints_icn(tiny_checkpoint, synth_dir, tmp_path):
    (tmp_path / "a").mkdir()
    cfg = _cfg(tmp_path / "a", synth_dir, tiny_checkpoint, labels="saliency",
               saliency_dir=str(synth_dir), init=str(tiny_checkpoint), lr=1e-12)
    train_stage2(cfg, log=lambda m: None)
    before = load_checkpoint(tiny_checkpoint).sub_state("icn")
    after = load_checkpoint(cfg.out).sub_state("icn")
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)


def test_init_from_a_checkpoint_without_icn_is_refused(tiny_checkpoint, synth_dir, tmp_path):
    from icnseg.checkpoint import save_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    stage1_only = tmp_path / "s1.safetensors"
    save_checkpoint(stage1_only, {k: v for k, v in ckpt.state.items()
                                  if k.startswith("classifier.")}, ckpt.config)
    cfg = _cfg(tmp_path, synth_dir, tiny_checkpoint, labels="saliency",
               saliency_dir=str(synth_dir), init=str(stage1_only))
    with pytest.raises(ConfigError, match="s1.safetensors: --init needs"):
        train_stage2(cfg, log=lambda m: None)


def test_init_of_another_variant_is_refused_before_the_targets(monkeypatch, tiny_checkpoint,
                                                                synth_dir, tmp_path):
    from icnseg.errors import CheckpointError

    monkeypatch.setattr(stage2, "build_targets", lambda *a, **k: pytest.fail("targets built"))
    cfg = _cfg(tmp_path, synth_dir, tiny_checkpoint, labels="saliency",
               saliency_dir=str(synth_dir), init=str(tiny_checkpoint), icn_variant="no_prm")
    with pytest.raises(CheckpointError, match=r"--init ICN .*no_prm.*another shape"):
        train_stage2(cfg, log=lambda m: None)


def test_a_variant_is_trained_and_recorded(tiny_checkpoint, synth_dir, tmp_path):
    from icnseg.loader import load

    cfg = _cfg(tmp_path, synth_dir, tiny_checkpoint, labels="saliency",
               saliency_dir=str(synth_dir), icn_variant="no_fusion")
    train_stage2(cfg, log=lambda m: None)
    assert load_checkpoint(cfg.out).config["icn_variant"] == "no_fusion"
    model = load(cfg.out, backend="torch")
    assert model.icn.variant == "no_fusion" and len(model.icn.cfm) == 0


def test_proposal_labels_are_unions_of_the_given_proposals(tiny_checkpoint, synth_dir,
                                                            tmp_path):
    import itertools

    import cv2

    ds = VocDataset(synth_dir, "train")
    given = {}
    for i in range(len(ds)):  # each image's proposals: its true instances + four quadrants
        s = ds[i]
        h, w = s.image.shape[:2]
        quads = np.zeros((4, h, w), bool)
        for q, (ys, xs) in enumerate(itertools.product((slice(0, h // 2), slice(h // 2, h)),
                                                       (slice(0, w // 2), slice(w // 2, w)))):
            quads[q, ys, xs] = True
        given[i] = np.concatenate([s.instance_masks, quads])
        (tmp_path / "props" / s.id).mkdir(parents=True)
        for j, m in enumerate(given[i]):
            cv2.imwrite(str(tmp_path / "props" / s.id / f"{j:03d}.png"), m.astype(np.uint8) * 255)
    cfg = _cfg(tmp_path, synth_dir, tiny_checkpoint, proposals=str(tmp_path / "props"))
    model = EagerModel.from_checkpoint(load_checkpoint(tiny_checkpoint))
    _, targets = build_targets(cfg, model, VocDataset(synth_dir, "train", model.classes),
                               log=lambda m: None)
    assert targets
    for t in targets:  # brute force: some union of <= k given proposals, at the input size
        props = given[t.image_index]
        assert t.mask.shape == model.input_size
        assert any(np.array_equal(t.mask, resize_mask(np.any(props[list(c)], 0),
                                                      model.input_size))
                   for r in range(1, cfg.k + 1)
                   for c in itertools.combinations(range(len(props)), r))


def test_rough_cues_reach_the_icn_inputs_when_asked(monkeypatch, tiny_checkpoint, synth_dir,
                                                    tmp_path):
    seen = []
    real = stage2.with_rough_cues

    def spy(prms, masks, rng, share):
        out = real(prms, masks, rng, share)
        seen.append((share, int((out != prms).any(axis=(1, 2)).sum()), len(prms)))
        return out

    monkeypatch.setattr(stage2, "with_rough_cues", spy)
    common = dict(labels="saliency", saliency_dir=str(synth_dir))
    train_stage2(_cfg(tmp_path / "a", synth_dir, tiny_checkpoint, **common), log=lambda m: None)
    assert seen == []  # off by default
    train_stage2(_cfg(tmp_path / "b", synth_dir, tiny_checkpoint, rough_cues=1.0, **common),
                 log=lambda m: None)
    assert seen and all(s == 1.0 and changed == n for s, changed, n in seen)
    assert load_checkpoint(tmp_path / "b" / "s2.safetensors").config["stage2"]["rough_cues"] == 1.0


def test_a_second_round_matches_the_first_icns_maps(monkeypatch, tiny_checkpoint, synth_dir,
                                                    tmp_path):
    from icnseg.data.transforms import normalize

    cues = []
    real = stage2._pseudo_labels
    monkeypatch.setattr(stage2, "_pseudo_labels",
                        lambda cfg, m, cue, props, size: cues.append(cue) or real(
                            cfg, m, cue, props, size))
    model = EagerModel.from_checkpoint(load_checkpoint(tiny_checkpoint))
    ds = VocDataset(synth_dir, "train", model.classes)
    cfg = _cfg(tmp_path, synth_dir, tiny_checkpoint, pseudo_icn=str(tiny_checkpoint),
               pseudo_passes=2)
    build_targets(cfg, model, ds, log=lambda m: None)
    assert cues
    peak_cfg = PeakConfig(**stage2.peak_settings(cfg, model.config))
    k = 0
    for i in range(len(ds)):  # independently: two passes of the checkpoint's ICN by hand
        image = resize(ds[i].image, model.input_size)
        peaks, prm = naive_prms(model.classifier, image, ds[i].labels > 0, peak_cfg, "prm",
                                model.mean, model.std)
        if not len(peaks):
            continue
        x = torch.from_numpy(normalize(image, model.mean, model.std))[None]
        v = torch.from_numpy(prm)[:, None]
        with torch.no_grad():
            for _ in range(2):
                v = model.icn(x.expand(len(prm), -1, -1, -1), v)
        np.testing.assert_allclose(cues[k], v[:, 0].numpy(), atol=1e-6)
        assert not np.allclose(cues[k], prm)
        k += 1
    assert k == len(cues)


def test_a_second_round_needs_proposal_labels_and_an_icn(tiny_checkpoint, synth_dir, tmp_path):
    from icnseg.checkpoint import save_checkpoint

    cfg = _cfg(tmp_path, synth_dir, tiny_checkpoint, labels="saliency",
               saliency_dir=str(synth_dir), pseudo_icn=str(tiny_checkpoint))
    with pytest.raises(ConfigError, match="--pseudo-icn .* needs --labels proposals"):
        train_stage2(cfg, log=lambda m: None)
    ckpt = load_checkpoint(tiny_checkpoint)
    stage1_only = tmp_path / "s1.safetensors"
    save_checkpoint(stage1_only, {k: v for k, v in ckpt.state.items()
                                  if k.startswith("classifier.")}, ckpt.config)
    cfg = _cfg(tmp_path, synth_dir, tiny_checkpoint, pseudo_icn=str(stage1_only))
    with pytest.raises(ConfigError, match="s1.safetensors: --pseudo-icn needs"):
        train_stage2(cfg, log=lambda m: None)


def test_default_t_and_threshold_change_only_the_recorded_settings(tiny_checkpoint, synth_dir,
                                                                   tmp_path):
    common = dict(labels="saliency", saliency_dir=str(synth_dir), iterations=3, feedback=0.5,
                  feedback_after=0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    train_stage2(_cfg(tmp_path / "a", synth_dir, tiny_checkpoint, **common), log=lambda m: None)
    train_stage2(_cfg(tmp_path / "b", synth_dir, tiny_checkpoint, default_iterations=1,
                      default_score_threshold=0.1, **common), log=lambda m: None)
    a = load_checkpoint(tmp_path / "a" / "s2.safetensors")
    b = load_checkpoint(tmp_path / "b" / "s2.safetensors")
    assert a.config["segment"]["iterations"] == 3 and b.config["segment"]["iterations"] == 1
    stage1_peaks = load_checkpoint(tiny_checkpoint).config["peaks"]
    assert a.config["peaks"].get("score_threshold") == stage1_peaks.get("score_threshold")
    assert b.config["peaks"]["score_threshold"] == 0.1
    assert EagerModel.from_checkpoint(b).segment_config().peaks.score_threshold == 0.1
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)  # same training
    with pytest.raises(ConfigError, match="--default-iterations must be > 0"):
        train_stage2(_cfg(tmp_path / "b", synth_dir, tiny_checkpoint, default_iterations=0,
                          **common), log=lambda m: None)
    with pytest.raises(ConfigError, match=r"--default-score-threshold must be in \[0, 1\]"):
        train_stage2(_cfg(tmp_path / "b", synth_dir, tiny_checkpoint,
                          default_score_threshold=1.5, **common), log=lambda m: None)


def test_unrolled_training_chains_the_passes_with_gradients(monkeypatch, tiny_checkpoint,
                                                            synth_dir, tmp_path):
    from icnseg.models.icn import ICN

    calls = []
    real = ICN.logits

    def spy(self, image, prm, factored=True):
        calls.append(prm.requires_grad)
        return real(self, image, prm, factored)

    monkeypatch.setattr(ICN, "logits", spy)
    cfg = _cfg(tmp_path, synth_dir, tiny_checkpoint, labels="saliency",
               saliency_dir=str(synth_dir), iterations=3, unrolled=True)
    train_stage2(cfg, log=lambda m: None)
    steps = len(calls) // 3
    assert steps > 0 and len(calls) == 3 * steps
    # pass 1 reads the naive PRM; passes 2 and 3 read the previous pass, gradients attached
    assert calls == [False, True, True] * steps


def test_unrolled_gamma_weights_each_pass_loss(monkeypatch, tiny_checkpoint, synth_dir,
                                               tmp_path):
    import torch.nn.functional as F

    passes = []

    def fake_bce(logits, target):  # pass t's loss is t, so the batch loss is sum_t w_t * t
        passes.append(len(passes) % 3 + 1)
        return logits.sum() * 0 + passes[-1]

    monkeypatch.setattr(F, "binary_cross_entropy_with_logits", fake_bce)
    lines = []
    cfg = _cfg(tmp_path, synth_dir, tiny_checkpoint, labels="saliency",
               saliency_dir=str(synth_dir), iterations=3, unrolled=True, unrolled_gamma=0.5)
    train_stage2(cfg, log=lines.append)
    # weights 0.25, 0.5, 1 normalised: (1 * 1 + 2 * 2 + 4 * 3) / 7
    assert any(f"loss {17 / 7:.4f}" in line for line in lines), lines
    assert stage2.pass_weights(2, 1.0) == [0.5, 0.5]


def test_unrolled_gamma_is_refused_out_of_range_or_without_unrolled(tiny_checkpoint, synth_dir,
                                                                    tmp_path):
    common = dict(labels="saliency", saliency_dir=str(synth_dir), iterations=3)
    with pytest.raises(ConfigError, match=r"--unrolled-gamma must be in \(0, 1\]"):
        train_stage2(_cfg(tmp_path, synth_dir, tiny_checkpoint, unrolled=True,
                          unrolled_gamma=0.0, **common), log=lambda m: None)
    with pytest.raises(ConfigError, match="add --unrolled"):
        train_stage2(_cfg(tmp_path, synth_dir, tiny_checkpoint, unrolled_gamma=0.5, **common),
                     log=lambda m: None)
    assert not (tmp_path / "s2.safetensors").exists()


def test_negatives_add_the_unpaired_peaks_with_empty_masks(tiny_checkpoint, others, tmp_path):
    from icnseg.data.transforms import resize

    model = EagerModel.from_checkpoint(load_checkpoint(tiny_checkpoint))
    ds = VocDataset(others, "train")
    common = dict(labels="saliency", saliency_dir=str(others))
    _, plain = build_targets(_cfg(tmp_path, others, tiny_checkpoint, **common), model, ds,
                             log=lambda m: None)
    _, withneg = build_targets(_cfg(tmp_path, others, tiny_checkpoint, negatives=True,
                                    **common), model, ds, log=lambda m: None)
    unpaired = 0  # independently: peaks whose binarised PRM touches no instance mask
    peak_cfg = PeakConfig(**model.config["peaks"])
    for i in range(len(ds)):
        s = ds[i]
        image = resize(s.image, model.input_size)
        _, prm = naive_prms(model.classifier, image, None, peak_cfg, "prm", model.mean,
                            model.std)
        masks = [resize_mask(m, model.input_size) for m in s.instance_masks]
        for r in prm:
            on = (r - r.min()) / max(r.max() - r.min(), 1e-12) >= 0.2
            unpaired += not any(np.logical_and(on, m).any() for m in masks)
    empty = [t for t in withneg if not t.mask.any()]
    assert len(empty) == unpaired > 0
    assert len(withneg) == len(plain) + unpaired
    assert all(t.mask.any() for t in plain)


def test_color_jitter_changes_only_the_icns_image_input(monkeypatch, tiny_checkpoint,
                                                        synth_dir, tmp_path):
    from icnseg.models.icn import ICN

    real = ICN.logits

    def first_batch(jitter, where):
        seen = []

        def spy(self, image, prm, factored=True):
            seen.append((image.detach().clone(), prm.detach().clone()))
            return real(self, image, prm, factored)

        monkeypatch.setattr(ICN, "logits", spy)
        cfg = _cfg(tmp_path / where, synth_dir, tiny_checkpoint, labels="saliency",
                   saliency_dir=str(synth_dir), color_jitter=jitter, seed=4)
        train_stage2(cfg, log=lambda m: None)
        return seen[0]

    x0, r0 = first_batch(0.0, "a")
    x0b, r0b = first_batch(0.0, "b")
    x1, r1 = first_batch(1.0, "c")
    assert torch.equal(x0, x0b) and torch.equal(r0, r0b)  # the same run twice
    assert torch.equal(r1, r0)  # the PRM inputs (and crops) are those of the unjittered run
    changed = (x1 != x0).flatten(1).any(1)
    assert changed.all()  # every image of the batch got a new look


def test_pseudo_scoring_choices_are_the_matchers_rules():
    """The flag's Literal and matching.SCORINGS name the same rules (two lists, one set)."""
    import dataclasses
    import typing

    from icnseg.matching import SCORINGS

    field = {f.name: f for f in dataclasses.fields(Stage2Config)}["pseudo_scoring"]
    hints = typing.get_type_hints(Stage2Config)
    assert field.default in SCORINGS
    assert set(typing.get_args(hints["pseudo_scoring"])) == set(SCORINGS)
