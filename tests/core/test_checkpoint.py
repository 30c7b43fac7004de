"""Checkpoint files: round trip in both formats; damaged or unsafe files give one-line errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from icnseg.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from icnseg.errors import CheckpointError  # noqa: E402

CONFIG = {"classes": ["a", "b"], "backbone": "tiny", "input_size": [64, 64]}


def _state():
    g = torch.Generator().manual_seed(0)
    return {"classifier.w": torch.randn(3, 4, generator=g), "icn.b": torch.arange(5.0)}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip(tmp_path, suffix):
    path = save_checkpoint(tmp_path / f"m{suffix}", _state(), CONFIG)
    ckpt = load_checkpoint(path)
    assert ckpt.config == CONFIG
    for k, v in _state().items():
        assert torch.equal(ckpt.state[k], v)
    assert set(ckpt.sub_state("icn")) == {"b"}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file_names_the_file(tmp_path, suffix):
    path = save_checkpoint(tmp_path / f"m{suffix}", _state(), CONFIG)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = str(exc.value)
    assert msg.startswith(str(path)) and "\n" not in msg


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello world, not a checkpoint")
    with pytest.raises(CheckpointError, match="not an icnseg checkpoint"):
        load_checkpoint(junk)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state": {}, "icnseg": "{}", "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="pickled code.*refused") as exc:
        load_checkpoint(path)
    assert "\n" not in str(exc.value) and "weights_only=False" not in str(exc.value)


def test_bare_state_dict_is_explained(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save({"state": {"w": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="no icnseg metadata"):
        load_checkpoint(path)
