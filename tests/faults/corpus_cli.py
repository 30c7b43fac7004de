"""Bad command-line values, output folders and datasets (the rest of the corpus)."""

from __future__ import annotations

import shutil

from faults_corpus import RUN, Call, case


def _bound(name: str, argv: list[str], flag: str) -> None:
    @case(name)
    def _(d, a):
        shutil.copytree(a.images, d / "imgs")
        return Call(argv, flag, outputs=["out", "exp", "ds", "o.json", "o.md", "c.pt"],
                    exit_code=2)


_RUN = ["run", "default", "imgs", *RUN[1:]]
for _flag, _value in (("--nms-iou", "-1"), ("--nms-iou", "0"), ("--threshold", "2"),
                      ("--threshold", "nan"), ("--iterations", "-1"),
                      ("--iterations", "1000000"), ("--iterations", "two"),
                      ("--prefetch", "-1"), ("--frames", "-5")):
    _bound(f"run{_flag}={_value}", [*_RUN, _flag, _value], _flag)
for _flag, _value in (("--size", "100000"), ("--size", "8"), ("--peaks", "0"),
                      ("--unroll", "0"), ("--opset", "5")):
    _values = [_value, _value] if _flag == "--size" else [_value]
    _bound(f"export{_flag}={_value}", ["export", "default", "--out", "exp", _flag, *_values],
           _flag)
for _flag, _value in (("--size", "1000000"), ("--n", "0"), ("--val-fraction", "1"),
                      ("--seed", "-1")):
    _extra = [] if _flag == "--n" else ["--n", "2"]
    _bound(f"synth{_flag}={_value}", ["data", "synth", "--out", "ds", *_extra, _flag, _value],
           _flag)
for _flag, _value in (("--iters", "1000000"), ("--iters", "0"), ("--streams", "-1")):
    _bound(f"bench{_flag}={_value}", ["bench", "default", _flag, _value], _flag)
_TRAIN = ["train", "stage1", "--data", "ds", "--out", "c.pt"]
for _flag, _value in (("--workers", "-1"), ("--epochs", "0"), ("--lr", "-1"),
                      ("--batch-size", "0"), ("--input-size", "100000")):
    _bound(f"train{_flag}={_value}", [*_TRAIN, _flag, _value], _flag)


# ---- output folders: never an input, never a folder of someone else's files ----------------

@case("out-empty-string")
def _(d, a):
    shutil.copytree(a.images, d / "imgs")
    return Call(["run", "default", "imgs", "--backend", "onnxruntime", "--out", ""], "--out",
                outputs=[])


@case("out-is-input-folder")
def _(d, a):
    shutil.copytree(a.images, d / "imgs")
    (d / "imgs" / "snap.json").write_text('{"mine": 1}\n')
    return Call(["run", "default", "imgs", "--backend", "onnxruntime", "--out", "imgs"],
                "input folder", outputs=[])


@case("out-inside-input-folder")
def _(d, a):
    shutil.copytree(a.images, d / "imgs")
    return Call(["run", "default", "imgs", "--backend", "onnxruntime", "--out", "imgs/res"],
                "input folder", outputs=["imgs/res"])


@case("out-contains-input-folder")
def _(d, a):
    shutil.copytree(a.images, d / "in" / "imgs")
    return Call(["run", "default", "in/imgs", "--backend", "onnxruntime", "--out", "in"],
                "contains the input", outputs=[])


@case("out-is-folder-of-input-file")
def _(d, a):
    shutil.copytree(a.images, d / "imgs")
    first = sorted(p.name for p in (d / "imgs").iterdir())[0]
    return Call(["run", "default", f"imgs/{first}", "--backend", "onnxruntime", "--out",
                 "imgs"], "contains the input", outputs=[])


@case("out-holds-user-files")
def _(d, a):
    shutil.copytree(a.images, d / "imgs")
    (d / "out").mkdir()
    (d / "out" / "report.docx").write_bytes(b"precious")
    return Call([*_RUN], "did not write", outputs=[])


@case("out-is-a-file")
def _(d, a):
    shutil.copytree(a.images, d / "imgs")
    (d / "out").write_text("a file")
    return Call([*_RUN], "not a folder", outputs=[])


@case("out-resume-foreign-folder")
def _(d, a):
    shutil.copytree(a.images, d / "imgs")
    (d / "out").mkdir()
    (d / "out" / "x.json").write_text("{}")
    return Call([*_RUN, "--resume"], "--resume", outputs=[])


@case("export-force-over-checkpoint-folder")
def _(d, a):
    (d / "ck").mkdir()
    shutil.copy(a.checkpoint, d / "ck" / "m.safetensors")
    return Call(["export", "ck/m.safetensors", "--out", "ck", "--force"], "contains the input",
                outputs=[])


@case("export-force-over-user-folder")
def _(d, a):
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("keep")
    return Call(["export", "default", "--out", "mine", "--force"], "--force", outputs=[])


@case("export-nonempty-out")
def _(d, a):
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("keep")
    return Call(["export", "default", "--out", "mine"], "mine", outputs=[])


@case("synth-force-over-user-folder")
def _(d, a):
    (d / "mine").mkdir()
    (d / "mine" / "notes.txt").write_text("keep")
    return Call(["data", "synth", "--out", "mine", "--n", "2", "--force"], "--force",
                outputs=[])


@case("bench-json-foreign-file")
def _(d, a):
    (d / "r.json").write_text('{"mine": true}')
    return Call(["bench", "default", "--json", "r.json"], "r.json", outputs=["r.md"])


@case("train-out-is-folder")
def _(d, a):
    shutil.copytree(a.dataset, d / "ds")
    (d / "runs").mkdir()
    return Call(["train", "stage1", "--data", "ds", "--out", "runs", "--backbone", "tiny",
                 "--input-size", "64"], "runs", outputs=["runs/.resume.pt"])


@case("train-out-foreign-file")
def _(d, a):
    shutil.copytree(a.dataset, d / "ds")
    (d / "model.pt").write_text("my notes")
    return Call(["train", "stage1", "--data", "ds", "--out", "model.pt", "--backbone", "tiny",
                 "--input-size", "64"], "model.pt", outputs=["model.pt.resume.pt"])


@case("train-stage2-out-is-stage1")
def _(d, a):
    shutil.copytree(a.dataset, d / "ds")
    shutil.copy(a.checkpoint, d / "s1.safetensors")
    return Call(["train", "stage2", "--data", "ds", "--stage1", "s1.safetensors", "--out",
                 "s1.safetensors"], "also an input", outputs=["s1.safetensors.resume.pt"])


# ---- datasets and evaluation ---------------------------------------------------------------

def _eval(d, a, pred: str = "pred", gt: str = "ds", *extra: str) -> list[str]:
    return ["eval", pred, "--gt", gt, *extra]


def _copy_eval(d, a) -> None:
    shutil.copytree(a.dataset, d / "ds")
    shutil.copytree(a.pred, d / "pred")


def _val_prediction(d, a, change: dict):
    """Copy dataset + predictions; add an instance with ``change`` to a val image's JSON."""
    import json

    _copy_eval(d, a)
    val = (d / "ds" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    victim = d / "pred" / f"{val[0]}.json"
    rec = json.loads(victim.read_text())
    import numpy as np

    from icnseg.rle import mask_to_rle

    mask = np.zeros((rec["height"], rec["width"]), bool)
    mask[2:9, 3:7] = True
    inst = {"class": "circle", "score": 0.9, "bbox": [3, 2, 7, 9], "mask": mask_to_rle(mask)}
    rec["instances"].append({**inst, **change})
    victim.write_text(json.dumps(rec))
    return victim


@case("eval-empty-prediction-folder")
def _(d, a):
    shutil.copytree(a.dataset, d / "ds")
    (d / "pred").mkdir()
    return Call(_eval(d, a), "pred", outputs=["pred/metrics.json"])


@case("eval-gt-missing-jpeg")
def _(d, a):
    _copy_eval(d, a)
    victim = sorted((d / "ds" / "JPEGImages").glob("*.jpg"))[-1]
    victim.unlink()
    return Call(_eval(d, a), f"JPEGImages/{victim.name}", outputs=["pred/metrics.json"])


@case("eval-gt-missing")
def _(d, a):
    shutil.copytree(a.pred, d / "pred")
    return Call(_eval(d, a, "pred", "nogt"), "nogt", outputs=["pred/metrics.json"])


@case("eval-prediction-corrupt-json")
def _(d, a):
    victim = _val_prediction(d, a, {})
    victim.write_text('{"image": ')
    return Call(_eval(d, a), victim.name, outputs=["pred/metrics.json"])


@case("eval-prediction-unknown-class")
def _(d, a):

    victim = _val_prediction(d, a, {"class": "unicorn"})
    return Call(_eval(d, a), victim.name, outputs=["pred/metrics.json"])


@case("eval-prediction-bad-rle")
def _(d, a):

    victim = _val_prediction(d, a, {"mask": {"size": [64, 64], "counts": "\x01\x02garbage"}})
    return Call(_eval(d, a), victim.name, outputs=["pred/metrics.json"])


@case("eval-unknown-split")
def _(d, a):
    _copy_eval(d, a)
    return Call(_eval(d, a, "pred", "ds", "--split", "nosuch"), "nosuch",
                outputs=["pred/metrics-nosuch.json"])


@case("eval-json-foreign-file")
def _(d, a):
    _copy_eval(d, a)
    (d / "m.json").write_text('{"mine": 1}')
    return Call(_eval(d, a, "pred", "ds", "--json", "m.json"), "m.json", outputs=[])


@case("train-data-missing")
def _(d, a):
    return Call(["train", "stage1", "--data", "nodata", "--out", "c.pt", "--backbone", "tiny",
                 "--input-size", "64"], "nodata", outputs=["c.pt", "c.pt.resume.pt"])


@case("train-data-no-split-file")
def _(d, a):
    shutil.copytree(a.dataset, d / "ds")
    (d / "ds" / "ImageSets" / "Segmentation" / "train.txt").unlink()
    (d / "ds" / "ImageSets" / "Main" / "train.txt").unlink()
    return Call(["train", "stage1", "--data", "ds", "--out", "c.pt", "--backbone", "tiny",
                 "--input-size", "64"], "train", outputs=["c.pt", "c.pt.resume.pt"])


@case("train-data-corrupt-xml")
def _(d, a):
    shutil.copytree(a.dataset, d / "ds")
    victim = sorted((d / "ds" / "Annotations").glob("*.xml"))[0]
    victim.write_text("<annotation><object>")
    return Call(["train", "stage1", "--data", "ds", "--out", "c.pt", "--backbone", "tiny",
                 "--input-size", "64", "--epochs", "1"], victim.name,
                outputs=["c.pt", "c.pt.resume.pt"])


@case("synth-more-than-the-disk-holds")
def _(d, a):
    return Call(["data", "synth", "--out", "ds", "--n", "1000000", "--size", "4096"],
                "MiB free", outputs=["ds"])
