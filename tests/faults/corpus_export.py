"""Bad exports, manifests and engine requests (the corpus, continued)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from faults_corpus import EXPORT, RUN, Assets, Call, case
from faults_corpus_ckpt import _with_imgs

# ---- exports and manifests -----------------------------------------------------------------

def _export(d: Path, a: Assets, edit: Callable[[dict], None] | None = None,
            redigest: bool = True) -> None:
    from icnseg.artifacts.manifest_schema import DIGEST_KEY, manifest_digest

    shutil.copytree(a.export, d / EXPORT)
    _with_imgs(d, a)
    if edit is None:
        return
    path = d / EXPORT / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    if redigest and isinstance(m, dict):
        m[DIGEST_KEY] = manifest_digest(m)
    path.write_text(json.dumps(m))


def _run_export(names: str) -> Call:
    return Call(["run", EXPORT, "imgs", *RUN[1:]], names)


def _manifest_case(name: str, edit: Callable[[dict], None], names: str,
                   redigest: bool = True) -> None:
    @case(name)
    def _(d, a):
        _export(d, a, edit, redigest)
        return _run_export(names)


def _set(key: str, value) -> Callable[[dict], None]:
    return lambda m: m.update({key: value})


_manifest_case("manifest-edited-no-digest-update", _set("classes", list("abcde")),
               "edited after export", redigest=False)
_manifest_case("manifest-digest-removed", lambda m: m.pop("manifest_sha256"),
               "manifest_sha256", redigest=False)
_manifest_case("manifest-short-class-list", lambda m: m.update(classes=m["classes"][:3]),
               "class_scores")
_manifest_case("manifest-8-classes-for-5", lambda m: m.update(classes=[f"k{i}" for i in
                                                                      range(8)]), "class_scores")
_manifest_case("manifest-renamed-classes", _set("classes", list("abcde")), "classes")
_manifest_case("manifest-duplicate-classes", _set("classes", ["a"] * 5), "classes")
_manifest_case("manifest-negative-input-size", _set("input_size", [-96, 96]), "input_size")
_manifest_case("manifest-zero-input-size", _set("input_size", [0, 0]), "input_size")
_manifest_case("manifest-other-input-size", _set("input_size", [64, 64]), "'image'")
_manifest_case("manifest-unroll-zero", _set("unroll", 0), "unroll")
_manifest_case("manifest-mean-one-element", _set("mean", [0.5]), "mean")
_manifest_case("manifest-std-zeros", _set("std", [0, 0, 0]), "std")
_manifest_case("manifest-k-max-zero", _set("k_max", 0), "k_max")
_manifest_case("manifest-rule-unknown", _set("rule", "magic"), "rule")
_manifest_case("manifest-iterations-vs-unroll", _set("unroll", 2), "segment.iterations")
_manifest_case("manifest-segment-unknown-key",
               lambda m: m["segment"].update(bogus=1), "segment")
_manifest_case("manifest-file-path-missing", lambda m: m["files"]["prm"].pop("path"),
               "files.prm.path")
_manifest_case("manifest-file-path-escapes",
               lambda m: m["files"]["prm"].update(path="../prm.onnx"), "files.prm.path")
_manifest_case("manifest-sha-not-hex", lambda m: m["files"]["icn"].update(sha256="xyz"),
               "files.icn.sha256")
_manifest_case("manifest-wrong-format", _set("format", "other"), "manifest.json")
_manifest_case("manifest-version-99", _set("version", 99), "version 99")
_manifest_case("manifest-no-files", lambda m: m.pop("files"), "files")


@case("manifest-not-json")
def _(d, a):
    _export(d, a)
    (d / EXPORT / "manifest.json").write_text("{not json")
    return _run_export("manifest.json")


@case("manifest-is-a-list")
def _(d, a):
    _export(d, a)
    (d / EXPORT / "manifest.json").write_text("[1, 2]")
    return _run_export("manifest.json")


@case("manifest-missing")
def _(d, a):
    _export(d, a)
    (d / EXPORT / "manifest.json").unlink()
    return _run_export("manifest")


@case("export-graph-swapped-hash-updated")
def _(d, a):
    from icnseg.artifacts.manifest import sha256_file

    def swap(m):
        shutil.copy(d / EXPORT / "prm.onnx", d / EXPORT / "icn.onnx")
        m["files"]["icn"]["sha256"] = sha256_file(d / EXPORT / "icn.onnx")
        m["files"]["icn"]["bytes"] = (d / EXPORT / "icn.onnx").stat().st_size
    _export(d, a)
    path = d / EXPORT / "manifest.json"
    m = json.loads(path.read_text())
    swap(m)
    from icnseg.artifacts.manifest_schema import DIGEST_KEY, manifest_digest

    m[DIGEST_KEY] = manifest_digest(m)
    path.write_text(json.dumps(m))
    return _run_export("icn.onnx")


@case("export-onnx-truncated")
def _(d, a):
    _export(d, a)
    data = (d / EXPORT / "prm.onnx").read_bytes()
    (d / EXPORT / "prm.onnx").write_bytes(data[:1000])
    return _run_export("prm.onnx")


@case("export-onnx-missing")
def _(d, a):
    _export(d, a)
    (d / EXPORT / "icn.onnx").unlink()
    return _run_export("icn.onnx")


@case("export-folder-without-manifest")
def _(d, a):
    (d / EXPORT).mkdir()
    (d / EXPORT / "x.onnx").write_bytes(b"\x08\x07")
    _with_imgs(d, a)
    return _run_export(EXPORT)


# ---- engines -------------------------------------------------------------------------------

@case("engine-dynamic-k-export")
def _(d, a):
    _export(d, a)
    return Call(["build-engine", EXPORT], "dynamic-k", outputs=[f"{EXPORT}/engines"])


@case("engine-not-an-export")
def _(d, a):
    (d / "plain").mkdir()
    return Call(["build-engine", "plain"], "plain", outputs=["plain/engines"])


@case("engine-int8-without-calib")
def _(d, a):
    _export(d, a)
    return Call(["build-engine", EXPORT, "--int8"], "--calib", outputs=[f"{EXPORT}/engines"])


@case("engine-dla-negative")
def _(d, a):
    _export(d, a)
    return Call(["build-engine", EXPORT, "--dla", "-1"], "--dla", outputs=[], exit_code=2)


@case("engine-tensorrt-on-cpu")
def _(d, a):
    _export(d, a)
    return Call(["run", EXPORT, "imgs", "--out", "out", "--backend", "tensorrt", "--device",
                 "cpu"], "cpu")
