"""Both training stages end to end on a tiny synthetic set, through the CLI."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from icnseg.checkpoint import load_checkpoint  # noqa: E402
from icnseg.cli.main import main  # noqa: E402
from icnseg.loader import load  # noqa: E402
from icnseg.train.common import resume_path  # noqa: E402

SMALL = ["--backbone", "tiny", "--input-size", "64", "--epochs", "2", "--batch-size", "4",
         "--lr", "1e-3"]


@pytest.fixture(scope="module")
def stage1(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("s1") / "s1.safetensors"
    assert main(["train", "stage1", "--data", str(synth_dir), "--out", str(out), *SMALL]) == 0
    return out


def test_stage1_writes_a_loadable_classifier(stage1):
    ckpt = load_checkpoint(stage1)
    assert ckpt.config["backbone"] == "tiny" and ckpt.config["icn_encoder"] is None
    assert ckpt.config["input_size"] == [64, 64]
    assert 0.0 <= ckpt.config["metrics"]["val_classification_mAP"] <= 1.0
    model = load(stage1)
    assert model.icn is None and model.classes[0] == "circle"
    assert not resume_path(stage1).exists()


def test_stage1_is_reproducible(synth_dir, stage1, tmp_path):
    again = tmp_path / "again.safetensors"
    assert main(["train", "stage1", "--data", str(synth_dir), "--out", str(again), *SMALL]) == 0
    a, b = load_checkpoint(stage1).state, load_checkpoint(again).state
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stage1_resumes_from_its_resume_file(synth_dir, stage1, tmp_path):
    from icnseg.train.stage1 import Stage1Config, train_stage1

    out = tmp_path / "r.safetensors"
    cfg = Stage1Config(data=str(synth_dir), out=str(out), backbone="tiny", input_size=64,
                       epochs=2, batch_size=4, lr=1e-3)

    class Stop(Exception):
        pass

    def crash_after_epoch_1(msg):
        if "epoch 1/2" in msg:
            raise Stop

    with pytest.raises(Stop):  # an interrupted run leaves the resume file of epoch 1
        train_stage1(cfg, log=crash_after_epoch_1)
    assert resume_path(out).exists() and not out.exists()
    messages = []
    train_stage1(cfg, log=messages.append)
    assert any("resuming" in m for m in messages)
    full = load_checkpoint(stage1).state  # the uninterrupted 2-epoch run, same settings
    resumed = load_checkpoint(out).state
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_stage2_trains_the_icn(synth_dir, stage1, tmp_path):
    out = tmp_path / "full.safetensors"
    rc = main(["train", "stage2", "--data", str(synth_dir), "--stage1", str(stage1),
               "--out", str(out), "--icn-encoder", "tiny", "--epochs", "1", "--batch-size", "4",
               "--iterations", "2", "--feedback", "0.5"])
    assert rc == 0
    model = load(out)
    assert model.icn is not None
    assert model.config["stage2"]["k"] == 3
    assert model.config["segment"]["iterations"] == 2  # the model's test-time default
    s1 = load_checkpoint(stage1).state
    s2 = load_checkpoint(out).state
    assert all(torch.equal(s1[k], s2[k]) for k in s1)  # the classifier stays frozen


def test_stage2_saliency_labels(synth_dir, stage1, tmp_path):
    out = tmp_path / "sal.safetensors"
    rc = main(["train", "stage2", "--data", str(synth_dir), "--stage1", str(stage1),
               "--out", str(out), "--icn-encoder", "tiny", "--epochs", "1",
               "--labels", "saliency", str(synth_dir)])
    assert rc == 0 and load(out).config["stage2"]["labels"] == "saliency"


def test_bad_training_input(synth_dir, tmp_path, capsys):
    errors = []
    rc = main(["train", "stage1", "--data", str(tmp_path / "nope"), "--out",
               str(tmp_path / "x.pt"), *SMALL], err=errors.append)
    assert rc == 1 and str(tmp_path / "nope") in errors[0]
    errors.clear()
    rc = main(["train", "stage1", "--data", str(synth_dir), "--out", str(tmp_path / "x.pt"),
               "--input-size", "50"], err=errors.append)
    assert rc == 1 and "multiple of 32" in errors[0]


def test_stage1_restarts_keep_the_seed_with_the_best_val_map(tmp_path):
    from icnseg.data.synth import generate

    data = generate(tmp_path / "d", 16, seed=3, size=64, val_fraction=0.5)
    runs = tmp_path / "runs"
    runs.mkdir()
    singles = {}
    for seed in (0, 1):
        out = tmp_path / f"single{seed}.safetensors"
        assert main(["train", "stage1", "--data", str(data), "--out", str(out), *SMALL,
                     "--seed", str(seed)]) == 0
        singles[seed] = load_checkpoint(out)
    maps = {s: c.config["metrics"]["val_classification_mAP"] for s, c in singles.items()}
    assert maps[0] != maps[1]  # so the choice is seen
    want = max(maps, key=maps.get)
    out = runs / "best.safetensors"
    assert main(["train", "stage1", "--data", str(data), "--out", str(out), *SMALL,
                 "--restarts", "2"]) == 0
    kept = load_checkpoint(out)
    assert all(torch.equal(kept.state[k], singles[want].state[k]) for k in kept.state)
    assert kept.config["stage1"]["seed"] == want and kept.config["stage1"]["restarts"] == 2
    assert kept.config["metrics"]["restarts"] == {"0": maps[0], "1": maps[1]}
    assert [p.name for p in runs.iterdir()] == ["best.safetensors"]  # the other run removed


def test_stage1_restarts_need_val_images(synth_dir, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    assert main(["train", "stage1", "--data", str(synth_dir), "--out", str(out), *SMALL,
                 "--restarts", "2", "--val-split", ""]) != 0
    assert "--restarts keeps the run with the best val mAP" in capsys.readouterr().err
    assert not out.exists()


def test_stage1_restarts_continue_and_never_overwrite_a_foreign_file(synth_dir, tmp_path):
    from icnseg.errors import ConfigError
    from icnseg.train.stage1 import Stage1Config, train_stage1

    out = tmp_path / "best.safetensors"
    cfg = Stage1Config(data=str(synth_dir), out=str(out), backbone="tiny", input_size=64,
                       epochs=2, batch_size=4, lr=1e-3, restarts=2)

    class Stop(Exception):
        pass

    def stop_after_seed_0(msg):
        if msg.startswith("stage1 done"):
            raise Stop

    with pytest.raises(Stop):  # interrupted once seed 0 has finished
        train_stage1(cfg, log=stop_after_seed_0)
    assert (tmp_path / "best.seed0.safetensors").exists() and not out.exists()
    messages = []
    train_stage1(cfg, log=messages.append)
    assert any("seed 0, finished; kept" in m for m in messages)
    assert sum(m.startswith("stage1 done") for m in messages) == 1  # only seed 1 trained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors"]
    (tmp_path / "best.seed1.safetensors").write_text("mine")
    out.unlink()
    with pytest.raises(ConfigError, match="best.seed1.safetensors: exists and is not"):
        train_stage1(cfg, log=lambda m: None)
    assert (tmp_path / "best.seed1.safetensors").read_text() == "mine"
