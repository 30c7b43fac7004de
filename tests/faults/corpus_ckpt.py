"""Bad checkpoints (the corpus, continued): damaged files, pickled code, bad configs."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from faults_corpus import Assets, Call, case

# ---- checkpoints ---------------------------------------------------------------------------

def _run_ckpt(path: str, names: str | None = None) -> Call:
    return Call(["run", path, "imgs", "--out", "out", "--backend", "torch"], names or path)


def _with_imgs(d: Path, a: Assets) -> None:
    shutil.copytree(a.images, d / "imgs")


def _resave(d: Path, a: Assets, edit: Callable[[dict], None], name: str = "c.safetensors",
            state_edit: Callable[[dict], None] | None = None) -> str:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(a.checkpoint), framework="pt") as f:
        meta = json.loads(f.metadata()["icnseg"])
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    edit(meta["config"])
    if state_edit is not None:
        state_edit(state)
    save_file(state, str(d / name), metadata={"icnseg": json.dumps(meta)})
    _with_imgs(d, a)
    return name


@case("ckpt-zero-byte")
def _(d, a):
    (d / "c.safetensors").write_bytes(b"")
    _with_imgs(d, a)
    return _run_ckpt("c.safetensors")


@case("ckpt-truncated")
def _(d, a):
    data = a.checkpoint.read_bytes()
    (d / "c.safetensors").write_bytes(data[: len(data) // 3])
    _with_imgs(d, a)
    return _run_ckpt("c.safetensors")


@case("ckpt-random-pt")
def _(d, a):
    (d / "c.pt").write_bytes(np.random.default_rng(2).bytes(4096))
    _with_imgs(d, a)
    return _run_ckpt("c.pt")


@case("ckpt-pickled-code")
def _(d, a):
    import torch

    torch.save({"icnseg": "{}", "state": {"x": _Evil()}}, d / "evil.pt")
    _with_imgs(d, a)
    return _run_ckpt("evil.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED",))


@case("ckpt-legacy-pickle")
def _(d, a):
    import torch

    torch.save({"state": {}}, d / "old.pt", _use_new_zipfile_serialization=False)
    _with_imgs(d, a)
    return _run_ckpt("old.pt")


@case("ckpt-zip-not-torch")
def _(d, a):
    with zipfile.ZipFile(d / "z.pt", "w") as zf:
        zf.writestr("hello.txt", "hi")
    _with_imgs(d, a)
    return _run_ckpt("z.pt")


@case("ckpt-no-metadata")
def _(d, a):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(d / "bare.safetensors"))
    _with_imgs(d, a)
    return _run_ckpt("bare.safetensors")


@case("ckpt-metadata-not-json")
def _(d, a):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(d / "m.safetensors"), metadata={"icnseg": "{oops"})
    _with_imgs(d, a)
    return _run_ckpt("m.safetensors")


@case("ckpt-config-no-classes")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.pop("classes")), "classes")


@case("ckpt-config-empty-classes")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(classes=[])), "classes")


@case("ckpt-config-negative-input-size")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(input_size=[-96, 96])), "input_size")


@case("ckpt-config-zero-input-size")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(input_size=[0, 0])), "input_size")


@case("ckpt-config-bad-backbone")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(backbone="alexnet")), "backbone")


@case("ckpt-config-std-zero")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(std=[0, 0, 0])), "std")


@case("ckpt-config-mean-short")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(mean=[0.5])), "mean")


@case("ckpt-config-more-classes-than-weights")
def _(d, a):
    name = _resave(d, a, lambda c: c.update(classes=[f"c{i}" for i in range(8)]))
    return _run_ckpt(name, "weights do not fit")


@case("ckpt-config-negative-iterations")
def _(d, a):
    return _run_ckpt(_resave(d, a, lambda c: c.update(segment={"iterations": -1})), "segment")


@case("ckpt-weights-missing")
def _(d, a):
    def drop(state):
        state.pop(sorted(state)[0])
    return _run_ckpt(_resave(d, a, lambda c: None, state_edit=drop), "missing")


@case("ckpt-missing-file")
def _(d, a):
    _with_imgs(d, a)
    return _run_ckpt("none.safetensors")
