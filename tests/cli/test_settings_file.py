"""`--config FILE`: settings files parsed, validated with the file named, flags on top."""

from __future__ import annotations

import json

import pytest

from icnseg.cli.settings_file import config_with_file, merge_overrides, read_settings
from icnseg.errors import ConfigError
from icnseg.settings import config_from_dict

SAVED = {"segment": {"iterations": 1, "match": {"nms_iou": 0.5}}}


class _Model:
    """What config_with_file needs of a Segmenter: recorded settings + overrides."""

    def segment_config(self, **overrides):
        return config_from_dict(SAVED, **overrides)


def test_json_and_yaml_settings_and_flags_on_top(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"iterations": 3, "threshold": 0.6,
                             "match": {"alpha": 0.9, "gamma": 0.7},
                             "peaks": {"relative": 0.3}}))
    cfg = config_with_file(_Model().segment_config, f, {"match": {"gamma": 0.5}})
    assert (cfg.iterations, cfg.threshold) == (3, 0.6)
    assert (cfg.match.alpha, cfg.match.gamma, cfg.match.nms_iou) == (0.9, 0.5, 0.5)
    assert cfg.peaks.relative == 0.3
    assert merge_overrides({"match": {"a": 1}}, {"iterations": 2}) == {"match": {"a": 1},
                                                                       "iterations": 2}
    yaml = pytest.importorskip("yaml")
    y = tmp_path / "s.yaml"
    y.write_text(yaml.safe_dump({"iterations": 2, "match": {"beta": 0.2}}))
    assert read_settings(y) == {"iterations": 2, "match": {"beta": 0.2}}


@pytest.mark.parametrize("content, message", [
    ('{"iterationz": 3}', "unknown key 'iterationz'"),
    ('{"match": {"alfa": 1}}', "unknown key 'match.alfa'"),
    ('{"match": 3}', "'match' must be a mapping"),
    ('[1, 2]', "expected a mapping of settings"),
    ('{"threshold": 2}', "threshold must be in (0, 1)"),
    ('{"iterations": -1}', "iterations must be >= 0"),
    ('{not json', "not valid JSON"),
])
def test_bad_settings_name_the_file(tmp_path, content, message):
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(ConfigError) as err:
        config_with_file(_Model().segment_config, f, {})
    assert str(err.value).startswith(f"{f}: ") and message in str(err.value)
    assert "\n" not in str(err.value)
