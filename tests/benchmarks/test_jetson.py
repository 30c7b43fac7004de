"""Jetson detection: the device-tree model picks the GPU peak row CUDA's "Orin" cannot."""

from __future__ import annotations

import pytest

from icnseg import jetson
from icnseg.benchmarks.gpus import find_gpu


@pytest.mark.parametrize(("board", "row"), [
    ("NVIDIA Jetson Orin Nano Developer Kit", "Jetson Orin Nano 8GB"),
    ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
     "Jetson Orin Nano 8GB Super"),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "Jetson Orin NX 16GB"),
    ("Jetson-AGX Orin Developer Kit", "Jetson AGX Orin 64GB"),
    ("NVIDIA Jetson Xavier NX Developer Kit", "Jetson Xavier NX"),
])
def test_board_model_picks_the_row(board: str, row: str) -> None:
    assert find_gpu("Orin" if "Orin" in board else "Xavier", board=board).name == row


def test_board_is_ignored_for_other_gpus() -> None:
    assert find_gpu("NVIDIA L4", board="NVIDIA Jetson Orin Nano Developer Kit").name == "L4"


def test_device_tree_model_is_read_with_its_nul(tmp_path) -> None:
    """The device tree stores a NUL-terminated string; non-Jetson boards give None."""
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert jetson.jetson_model(model) == "NVIDIA Jetson Orin Nano Developer Kit"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert jetson.jetson_model(model) is None
    assert jetson.jetson_model(tmp_path / "absent") is None


def test_clocks_from_devfreq(tmp_path) -> None:
    gpu = tmp_path / "17000000.gpu"
    gpu.mkdir()
    (gpu / "cur_freq").write_text("306000000\n")
    (gpu / "max_freq").write_text("1020000000\n")
    (tmp_path / "broken").mkdir()
    assert jetson.clocks(tmp_path) == {"17000000.gpu": {"cur_mhz": 306, "max_mhz": 1020}}
