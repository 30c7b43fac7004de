"""`--config FILE`: segmentation settings (peaks, alpha/beta/gamma, thresholds) from YAML/JSON.

The file is a mapping of ``SegmentConfig`` fields, with ``peaks`` and ``match`` as nested
mappings of ``PeakConfig`` / ``MatchConfig`` fields, e.g.::

    iterations: 3
    threshold: 0.5
    match: {alpha: 0.95, beta: 0.1, gamma: 0.8, nms_iou: 0.5}

The ``run.json`` a run writes into its output folder is also a settings file: its
``segment`` mapping (the run's full settings) is read, so ``--config OUT/run.json`` repeats
them (the model, backend and device it names are not: pass them as before).

Flags given on the command line win over the file; the file wins over the model's own
recorded settings. Unknown keys and bad values are errors naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icnseg.errors import ConfigError, InputError
from icnseg.matching import MatchConfig
from icnseg.output.run_file import FORMAT as RUN_FORMAT
from icnseg.settings import PeakConfig, SegmentConfig

_NESTED = {"peaks": PeakConfig, "match": MatchConfig}


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _parse(path: Path, text: str) -> Any:
    """YAML (``.yaml``/``.yml``, needs PyYAML) or JSON (anything else)."""
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or "
                              "write the settings as JSON") from exc
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The overrides a settings file holds; ConfigError naming the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the settings file ({exc})") from exc
    data = _parse(path, text)
    if isinstance(data, dict) and data.get("format") == RUN_FORMAT:
        data = data.get("segment")  # a run.json: the settings that run used
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    known = _fields(SegmentConfig)
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key {key!r} (valid: {', '.join(sorted(known))})")
        if key in _NESTED:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {key!r} must be a mapping of settings")
            sub = _fields(_NESTED[key])
            bad = sorted(set(value) - sub)
            if bad:
                raise ConfigError(f"{path}: unknown key '{key}.{bad[0]}' (valid: "
                                  f"{', '.join(sorted(sub))})")
    return data


def merge_overrides(file_settings: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """File settings with the command-line flags on top (``match`` merged key by key)."""
    out = {**file_settings, **{k: v for k, v in flags.items() if k != "match"}}
    if "match" in flags or "match" in file_settings:
        out["match"] = {**file_settings.get("match", {}), **flags.get("match", {})}
    return out


def config_with_file(segment_config: Callable[..., SegmentConfig],
                     path: str | os.PathLike | None, flags: dict[str, Any]) -> SegmentConfig:
    """``segment_config`` (a model's) with a settings file's values and the flags; a bad
    value in the file is reported with the file's name."""
    if path is None:
        return segment_config(**flags)
    settings = read_settings(path)
    try:
        segment_config(**merge_overrides(settings, {}))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except TypeError as exc:  # a value of the wrong type reaching a dataclass
        raise ConfigError(f"{path}: bad value ({exc})") from exc
    return segment_config(**merge_overrides(settings, flags))
