"""`icnseg run --ray` on a small local Ray cluster: byte-identical outputs to the
single-process run, a corrupt image reported and skipped, COCO results, flag checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pycocotools import mask as mask_util

from icnseg.loader import ASSETS
from icnseg.outdir import MARKER

SAMPLES = sorted((ASSETS / "samples").glob("*.jpg"))


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU local Ray for the module (the CLI reuses a running Ray and leaves it up)."""
    ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'icnseg[ray]'")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024 * 1024)
    yield ray
    ray.shutdown()


@pytest.fixture()
def inputs(tmp_path):
    """The three samples (one twice, under another folder: stem collision) + a corrupt file,
    listed in a text file of paths."""
    d = tmp_path / "in"
    (d / "more").mkdir(parents=True)
    for p in SAMPLES:
        shutil.copy(p, d / p.name)
    shutil.copy(SAMPLES[0], d / "more" / SAMPLES[0].name)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    listing = tmp_path / "list.txt"
    names = [p.name for p in SAMPLES] + ["broken.jpg", "more/" + SAMPLES[0].name]
    listing.write_text("# images\n" + "".join(f"in/{n}\n" for n in names))
    return d, listing


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data, pycocotools
def test_ray_run_writes_what_run_writes(local_ray, inputs, tmp_path, run_cli, monkeypatch):
    d, listing = inputs
    # a model named by a relative path: recorded as given, though actors read it absolute
    shutil.copytree(ASSETS / "export", tmp_path / "exp")
    monkeypatch.chdir(tmp_path)
    files = [str(d / p.name) for p in SAMPLES] + [str(d / "broken.jpg"),
                                                   str(d / "more" / SAMPLES[0].name)]
    local, dist = tmp_path / "local", tmp_path / "ray"
    settings = tmp_path / "settings.json"  # --config reaches the workers too
    settings.write_text('{"threshold": 0.45, "match": {"nms_iou": 0.4}}')
    rc_local, out_local, err_local = run_cli(["run", "exp", *files, "--backend", "onnxruntime",
                                              "--out", str(local), "--config", str(settings)])
    coco = tmp_path / "coco.json"
    rc, out, err = run_cli(["run", "exp", str(listing), "--backend", "onnxruntime",
                            "--config", str(settings),
                            "--out", str(dist), "--ray", "--workers", "2", "--batch-size", "2",
                            "--coco", str(coco)])
    assert rc == rc_local == 1
    assert err == err_local and len(err) == 1 and "broken.jpg" in err[0]
    assert out.strip().split(",")[:3] == out_local.strip().split(",")[:3]  # counts agree
    written = sorted(p.name for p in local.iterdir() if p.name != MARKER)
    assert (dist / MARKER).is_file()  # both are icnseg output folders (their logs differ)
    assert sorted(p.name for p in dist.iterdir()
                  if p.name not in ("failures.jsonl", MARKER)) == written
    assert "000000-1.json" in written  # the duplicate stem got the run's suffix
    for name in written:
        assert (dist / name).read_bytes() == (local / name).read_bytes(), name
    assert "run.json" in written  # compared byte for byte above: the driver wrote the same
    run = json.loads((dist / "run.json").read_text())
    assert run["model"]["source"] == "exp" and run["segment"]["threshold"] == 0.45
    assert run["segment"]["match"]["nms_iou"] == 0.4
    assert "config" not in json.loads((dist / "000001.json").read_text())
    [failure] = [json.loads(ln) for ln in (dist / "failures.jsonl").read_text().splitlines()]
    assert failure["image"] == str(d / "broken.jpg") and failure["error"] == err[0][15:]

    from icnseg.classes import SYNTH_CLASSES

    results = json.loads(coco.read_text())
    stems = [p.stem for p in SAMPLES] + ["000000-1"]
    by_image: dict[int, list] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    assert sorted(by_image) == [0, 1, 2, 4]  # positions in the list; 3 is the broken one
    for image_id, stem in zip([0, 1, 2, 4], stems, strict=True):
        record = json.loads((local / f"{stem}.json").read_text())
        got = by_image[image_id]
        assert len(got) == len(record["instances"])
        for r, inst in zip(got, record["instances"], strict=True):
            assert SYNTH_CLASSES[r["category_id"] - 1] == inst["class"]
            assert r["score"] == inst["score"] and r["segmentation"] == inst["mask"]
            x0, y0, x1, y1 = inst["bbox"]
            assert r["bbox"] == [x0, y0, x1 - x0, y1 - y0]
            assert mask_util.area(r["segmentation"]) == int(
                mask_util.decode(inst["mask"]).sum())


def test_segment_dataset_on_decoded_images(local_ray, tmp_path, run_cli):
    import icnseg.ray
    from icnseg.data.images import read_image

    local = tmp_path / "local"
    assert run_cli(["run", "default", str(SAMPLES[1]), "--backend", "onnxruntime",
                    "--out", str(local)])[0] == 0
    ds = local_ray.data.from_items([{"path": str(SAMPLES[1]), "image": read_image(SAMPLES[1])},
                                    {"path": "bad.png", "image": np.zeros((0, 4, 3), np.uint8)}])
    rows = icnseg.ray.segment_dataset(ds, "default", tmp_path / "api", backend="onnxruntime",
                                      pool=icnseg.ray.PoolConfig(workers=1)).take_all()
    rows = {r["path"]: r for r in rows}
    assert rows["bad.png"]["error"].startswith("bad.png: ")
    assert rows[str(SAMPLES[1])]["error"] == ""
    stem = SAMPLES[1].stem
    assert (tmp_path / "api" / f"{stem}.json").read_bytes() == (local / f"{stem}.json").read_bytes()


@pytest.mark.parametrize("extra, match", [
    (["--workers", "2"], "--workers needs --ray"),
    (["--ray", "--frames", "3"], "--frames is for videos"),
])
def test_flag_errors(tmp_path, run_cli, extra, match):
    rc, _, err = run_cli(["run", "default", str(SAMPLES[0]), "--out", str(tmp_path / "o"),
                          *extra])
    assert rc == 1 and len(err) == 1 and match in err[0]


@pytest.mark.parametrize("extra, match", [
    (["--ray", "--workers", "0"], "--workers: 0 is outside [1, 4096]"),
    (["--ray", "--batch-size", "0"], "--batch-size: 0 is outside [1, 4096]"),
])
def test_counts_are_bounded(tmp_path, capsys, extra, match, run_cli):
    with pytest.raises(SystemExit) as exit_:  # the one bounds table: argparse, exit 2
        run_cli(["run", "default", str(SAMPLES[0]), "--out", str(tmp_path / "o"), *extra])
    assert exit_.value.code == 2 and match in capsys.readouterr().err


def test_empty_path_list(tmp_path, run_cli):
    listing = tmp_path / "none.txt"
    listing.write_text("# nothing\n\n")
    rc, _, err = run_cli(["run", "default", str(listing), "--out", str(tmp_path / "o"), "--ray"])
    assert rc == 1 and err == [f"icnseg: error: {listing}: the list of image paths is empty"]
