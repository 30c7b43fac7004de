"""The schema of an export's manifest.json, its own digest, and its agreement with the graphs.

``validate_manifest`` checks types and ranges key by key (InputError ``"{path}: key 'k':
..."``); ``manifest_digest`` is the sha256 of the manifest's canonical JSON without its
``manifest_sha256`` key, which the exporter records so that any edit is detected;
``check_graph`` compares one loaded graph's input/output shapes and embedded facts
(``metadata_props["icnseg.manifest"]``) with the manifest. Pure Python: no onnx, no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from icnseg.errors import ConfigError, InputError

DIGEST_KEY = "manifest_sha256"
MAX_INPUT_SIDE = 4096  # the export's --size bound (icnseg.cli.bounds "size")
MAX_K = 256  # the export's --peaks bound
# facts every graph embeds that must equal the manifest's (the rest may legitimately differ)
GRAPH_FACTS = ("classes", "input_size", "mean", "std", "k_max", "rule", "unroll")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``manifest`` without its own digest key."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def bad_key(path: Path, key: str, problem: str, fix: str = "re-export the model",
            error: type[InputError] = InputError) -> InputError:
    """The one-line error for a bad key of a JSON config file."""
    return error(f"{path}: key {key!r}: {problem}; {fix}")


_bad = bad_key


def check_int(path: Path, m: Mapping, key: str, lo: int, hi: int, **kw: Any) -> None:
    """``m[key]`` is an integer in [lo, hi]."""
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad_key(path, key, f"must be an integer, got {json.dumps(v)}", **kw)
    if not lo <= v <= hi:
        raise bad_key(path, key, f"{v} is outside [{lo}, {hi}]", **kw)


def check_floats(path: Path, m: Mapping, key: str, n: int, positive: bool, **kw: Any) -> None:
    """``m[key]`` is a list of ``n`` finite numbers (all > 0 when ``positive``)."""
    v = m.get(key)
    ok = (isinstance(v, list | tuple) and len(v) == n
          and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                  for x in v))
    if not ok:
        raise bad_key(path, key, f"must be a list of {n} finite numbers, got "
                      f"{json.dumps(v, default=str)}", **kw)
    if positive and any(x <= 0 for x in v):
        raise bad_key(path, key, f"every value must be > 0, got {list(v)}", **kw)


def check_classes(path: Path, classes: Any, **kw: Any) -> None:
    """A non-empty list of distinct, non-blank class names."""
    if (not isinstance(classes, list | tuple) or not classes
            or not all(isinstance(c, str) and c.strip() for c in classes)):
        raise bad_key(path, "classes", "must be a non-empty list of class names", **kw)
    if len(set(classes)) != len(classes):
        raise bad_key(path, "classes", "lists a class twice", **kw)


def _files(path: Path, files: Any) -> None:
    if not isinstance(files, dict) or "prm" not in files:
        raise _bad(path, "files", "must map 'prm' (and 'icn') to file entries")
    for role, entry in files.items():
        key = f"files.{role}"
        if role not in ("prm", "icn"):
            raise _bad(path, key, "unknown graph role (expected prm, icn)")
        if not isinstance(entry, dict):
            raise _bad(path, key, "must be an object with path, sha256, bytes")
        name = entry.get("path")
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".",
                                                                                       ".."):
            raise _bad(path, f"{key}.path", f"must be a file name in the export folder, got "
                       f"{json.dumps(name)}")
        if not isinstance(entry.get("sha256"), str) or not _HEX64.fullmatch(entry["sha256"]):
            raise _bad(path, f"{key}.sha256", "must be 64 lowercase hex digits")


def validate_manifest(path: str | Path, m: Mapping[str, Any]) -> None:
    """InputError naming ``path`` and the key for any missing, mistyped or out-of-range value."""
    path = Path(path)
    digest = m.get(DIGEST_KEY)
    if digest is None:
        raise InputError(f"{path}: key {DIGEST_KEY!r} missing (written by an older icnseg, or "
                         "edited); re-export the model")
    try:
        actual = manifest_digest(m)
    except ValueError as exc:
        raise InputError(f"{path}: not strict JSON ({exc})") from exc
    if digest != actual:
        raise InputError(f"{path}: edited after export (its {DIGEST_KEY} {str(digest)[:12]}... "
                         f"!= {actual[:12]}... of its content); re-export the model")
    check_classes(path, m.get("classes"))
    size = m.get("input_size")
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in size)):
        raise _bad(path, "input_size", f"must be [H, W] integers, got {json.dumps(size)}")
    if not all(16 <= s <= MAX_INPUT_SIDE and s % 16 == 0 for s in size):
        raise _bad(path, "input_size", f"{size}: each side must be a multiple of 16 in "
                   f"[16, {MAX_INPUT_SIDE}]")
    check_floats(path, m, "mean", 3, positive=False)
    check_floats(path, m, "std", 3, positive=True)
    check_int(path, m, "k_max", 1, MAX_K)
    check_int(path, m, "unroll", 1, 50)
    from icnseg.settings import RULES, config_from_dict

    if m.get("rule") not in RULES:
        raise _bad(path, "rule", f"must be one of {', '.join(RULES)}, "
                   f"got {json.dumps(m.get('rule'))}")
    for key in ("dynamic_k", "dynamic_size"):
        if key in m and not isinstance(m[key], bool):
            raise _bad(path, key, f"must be true or false, got {json.dumps(m[key])}")
    if not isinstance(m.get("segment"), dict):
        raise _bad(path, "segment", "must be an object of segment settings")
    try:
        cfg = config_from_dict({"segment": m["segment"]})
    except (ConfigError, TypeError, ValueError) as exc:
        raise _bad(path, "segment", str(exc)) from exc
    if cfg.iterations % m["unroll"]:
        raise _bad(path, "segment.iterations", f"{cfg.iterations} is not a multiple of "
                   f"unroll {m['unroll']}")
    if cfg.peaks.max_peaks != m["k_max"]:
        raise _bad(path, "segment.peaks.max_peaks", f"{cfg.peaks.max_peaks} != k_max "
                   f"{m['k_max']}")
    _files(path, m.get("files"))


def _dims_agree(have: Sequence, want: Sequence) -> bool:
    """Shapes agree where both are fixed (a named / None dimension matches anything)."""
    return len(have) == len(want) and all(
        not isinstance(h, int) or not isinstance(w, int) or h == w
        for h, w in zip(have, want, strict=True))


def check_graph(path: Path, manifest: Mapping[str, Any], role: str,
                inputs: Mapping[str, Sequence], outputs: Mapping[str, Sequence],
                embedded: str | None) -> None:
    """InputError if graph ``role`` (file ``path``) does not fit the manifest it is listed in."""
    h, w = manifest["input_size"]
    c, k = len(manifest["classes"]), manifest["k_max"]
    dynamic = manifest.get("dynamic_size", False) and role == "icn"
    want_in = {"image": [1, 3, None if dynamic else h, None if dynamic else w]}
    want_out: dict[str, list] = {}
    if role == "prm":
        want_out = {"class_scores": [1, c], "peaks": [k, 4]}
    else:
        want_in["prm"] = [None, 1, None if dynamic else h, None if dynamic else w]
    for kind, have, want in (("input", inputs, want_in), ("output", outputs, want_out)):
        for name, shape in want.items():
            if name not in have:
                raise InputError(f"{path}: graph has no {kind} {name!r}; not the {role} graph "
                                 "of this export (re-export the model)")
            if not _dims_agree(list(have[name]), shape):
                raise InputError(f"{path}: {kind} {name!r} is {list(have[name])}, the manifest "
                                 f"implies {shape} (classes / input_size / k_max); re-export")
    if embedded is None:
        raise InputError(f"{path}: carries no icnseg metadata; not a graph icnseg exported")
    try:
        facts = json.loads(embedded)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: its icnseg metadata is not JSON ({exc})") from exc
    for key in GRAPH_FACTS:
        if isinstance(facts, dict) and facts.get(key) != manifest.get(key):
            raise InputError(f"{path}: its embedded {key!r} ({json.dumps(facts.get(key))}) "
                             f"differs from the manifest's ({json.dumps(manifest.get(key))}); "
                             "the graph or manifest was swapped or edited, re-export")
