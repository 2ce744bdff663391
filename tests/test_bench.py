"""Tests for ser_cli.bench: the inputs every benchmark times (no timings are asserted)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile as sf

from ser_cli.bench import bench_inputs
from ser_cli.errors import ConfigError
import signals


def _duration_s(path: str) -> float:
    return sf.info(path).duration


def test_synthetic_files_reach_the_seconds_and_repeat(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files, source = bench_inputs(None, 10.0, tmp_path / "a")
    again, _ = bench_inputs("", 10.0, tmp_path / "b")
    total = sum(_duration_s(f) for f in files)
    assert source == "synthetic speech-like files (harmonics, 2-8 s, 16 kHz)"
    assert total >= 10.0 - 1e-3 and total - _duration_s(files[-1]) < 10.0
    assert all(2.0 <= _duration_s(f) <= 8.0 for f in files)
    assert sf.info(files[0]).samplerate == 16000
    assert [Path(f).read_bytes() for f in files] == [Path(f).read_bytes() for f in again]


def test_synthetic_long_file_and_max_files(tmp_path):
    files, source = bench_inputs(None, math.inf, tmp_path, long_s=12.0, max_files=2)
    assert len(files) == 3 and Path(files[-1]).name == "synthetic_long.wav"
    assert _duration_s(files[-1]) == pytest.approx(12.0)
    assert source == "synthetic speech-like files (2-8 s, plus one of 12 s)"


def test_data_folder_in_scan_order_until_seconds_skipping_undecodable(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b", "c", "d"):
        signals.write_tone(data / f"{name}.wav", 16000, duration_s=2.0)
    (data / "b0.wav").write_bytes(b"not audio")
    files, source = bench_inputs(data, 3.0, tmp_path)
    assert [Path(f).name for f in files] == ["a.wav", "b.wav"]
    assert source == str(data)
    files, _ = bench_inputs(data, math.inf, tmp_path, max_files=3)
    assert [Path(f).name for f in files] == ["a.wav", "b.wav", "c.wav"]


def test_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: no decodable audio files"):
        bench_inputs(tmp_path / "empty", 10.0, tmp_path)
    with pytest.raises(ConfigError, match="finite seconds or max_files"):
        bench_inputs(None, math.inf, tmp_path)
