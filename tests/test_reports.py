"""Tests of ser_cli.reports: journal durability and repair, the lock, settings, rendering."""

from __future__ import annotations

import csv
import fcntl
import json
import os

import pytest

from ser_cli import reports
from ser_cli.errors import ConfigError, SerError

CLASSES = ["angry", "sad"]


def _record(file: str, *, n_segments: int = 2, status: str = "ok", size: int = 10):
    key = {"path": "/abs/" + file, "size": size, "mtime_ns": 1}
    if status != "ok":
        return {"file": file, "key": key, "status": "error", "error": f"{file}: broken",
                "duration_s": None, "n_segments": None, "label": None, "scores": None}
    return {
        "file": file,
        "key": key,
        "status": "ok",
        "error": "",
        "duration_s": 2.5,
        "n_segments": n_segments,
        "label": "sad",
        "scores": [0.25, 0.75],
        "segments": {
            "start_s": [0.4 * i for i in range(n_segments)],
            "end_s": [0.4 * i + 2.03 for i in range(n_segments)],
            "scores": [[0.9, 0.1] if i % 2 == 0 else [0.2, 0.8] for i in range(n_segments)],
        },
    }


def test_round_score_keeps_float32_precision():
    assert reports.round_score(0.123456789) == 0.1234568
    assert reports.round_score(1.234567890e-9) == 1.234568e-09


def test_score_columns_avoid_fixed_names():
    assert reports.utterance_columns(["file", "sad"]) == [
        "file", "duration_s", "n_segments", "label", "score_file", "sad", "status", "error"]
    assert reports.segment_columns(CLASSES) == [
        "file", "index", "start_s", "end_s", "label", "angry", "sad"]


def test_file_key_changes_with_size_and_mtime(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"1234")
    key = reports.file_key(path)
    assert key.path == str(path) and key.size == 4
    os.utime(path, ns=(key.mtime_ns + 10**9, key.mtime_ns + 10**9))
    assert reports.file_key(path) != key
    assert reports.file_key(tmp_path / "missing.wav").size == -1


def test_journal_appends_and_finds_finished(tmp_path):
    with reports.Journal(tmp_path) as journal:
        journal.append(_record("b.wav"))
        journal.append(_record("a.wav"))
    with reports.Journal(tmp_path) as journal:
        assert len(journal) == 2
        assert journal.is_finished(reports.FileKey("/abs/a.wav", 10, 1))
        assert not journal.is_finished(reports.FileKey("/abs/a.wav", 11, 1))
        assert [r["file"] for r in journal.iter_latest()] == ["a.wav", "b.wav"]


def test_journal_cuts_a_partial_last_line(tmp_path):
    """A crash mid-write leaves a line without its newline: it does not count, and the next
    append starts on a clean line."""
    with reports.Journal(tmp_path) as journal:
        journal.append(_record("a.wav"))
        journal.append(_record("b.wav"))
    path = tmp_path / reports.JOURNAL_NAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 25])  # cut inside b.wav's record
    with reports.Journal(tmp_path) as journal:
        assert len(journal) == 1
        assert not journal.is_finished(reports.FileKey("/abs/b.wav", 10, 1))
        journal.append(_record("b.wav"))
    with reports.Journal(tmp_path) as journal:
        assert [r["file"] for r in journal.iter_latest()] == ["a.wav", "b.wav"]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_journal_latest_record_wins(tmp_path):
    with reports.Journal(tmp_path) as journal:
        journal.append(_record("a.wav", n_segments=2))
        journal.append(_record("a.wav", n_segments=3, size=11))
        records = list(journal.iter_latest())
    assert len(records) == 1 and records[0]["n_segments"] == 3


def test_render_reports_csv_json_jsonl_agree(tmp_path):
    with reports.Journal(tmp_path) as journal:
        journal.append(_record("z/b.wav", n_segments=3))
        journal.append(_record("bad.wav", status="error"))
        journal.append(_record("a.wav", n_segments=1))
        rows = reports.render_reports(tmp_path, journal, CLASSES)
    assert [r["file"] for r in rows] == ["a.wav", "bad.wav", "z/b.wav"]
    u_json = json.loads((tmp_path / "utterances.json").read_text())
    assert u_json == rows
    with open(tmp_path / "utterances.csv", newline="") as fh:
        u_csv = list(csv.DictReader(fh))
    assert list(u_csv[0]) == reports.utterance_columns(CLASSES)
    for c, j in zip(u_csv, u_json):
        for column, value in j.items():
            assert c[column] == ("" if value is None else str(value))
    bad = u_json[1]
    assert bad["status"] == "error" and bad["error"] == "bad.wav: broken" and bad["sad"] is None
    s_json = json.loads((tmp_path / "segments.json").read_text())
    s_jsonl = [json.loads(x) for x in (tmp_path / "segments.jsonl").read_text().splitlines()]
    with open(tmp_path / "segments.csv", newline="") as fh:
        s_csv = list(csv.DictReader(fh))
    assert s_json == s_jsonl
    assert len(s_json) == len(s_csv) == 4
    assert [(r["file"], r["index"]) for r in s_json] == [
        ("a.wav", 0), ("z/b.wav", 0), ("z/b.wav", 1), ("z/b.wav", 2)]
    assert [r["label"] for r in s_json] == ["angry", "angry", "sad", "angry"]
    assert [float(r["end_s"]) for r in s_csv] == [r["end_s"] for r in s_json]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_render_reports_empty_journal(tmp_path):
    with reports.Journal(tmp_path) as journal:
        assert reports.render_reports(tmp_path, journal, CLASSES) == []
    assert json.loads((tmp_path / "segments.json").read_text()) == []
    assert (tmp_path / "utterances.csv").read_text().startswith("file,duration_s")


def test_atomic_writer_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with reports.atomic_writer(target) as fh:
            fh.write("new")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.csv"]


def test_lock_refuses_a_second_holder(tmp_path):
    with reports.OutputLock(tmp_path):
        with pytest.raises(SerError, match="another ser-cli analyze is writing"):
            with reports.OutputLock(tmp_path):
                pass
    with open(tmp_path / reports.LOCK_NAME, "a") as fh:  # a lock held by "another process"
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SerError, match=str(tmp_path)):
            reports.OutputLock(tmp_path).__enter__()
    with reports.OutputLock(tmp_path):  # released: free again
        pass


def test_prepare_output_refuses_other_settings(tmp_path):
    reports.prepare_output(tmp_path, {"model_sha256": "aa", "precision": "fp32"}, overwrite=False)
    reports.prepare_output(tmp_path, {"model_sha256": "aa", "precision": "fp32"}, overwrite=False)
    with pytest.raises(ConfigError, match=r"model_sha256: 'aa' before, 'bb' now.*--overwrite"):
        reports.prepare_output(tmp_path, {"model_sha256": "bb", "precision": "fp32"},
                               overwrite=False)
    (tmp_path / "utterances.csv").write_text("x")
    (tmp_path / "mine.txt").write_text("user file")
    reports.prepare_output(tmp_path, {"model_sha256": "bb", "precision": "fp32"}, overwrite=True)
    assert not (tmp_path / "utterances.csv").exists()
    assert (tmp_path / "mine.txt").exists()


def test_prepare_output_refuses_foreign_reports(tmp_path):
    (tmp_path / "utterances.csv").write_text("someone else's")
    with pytest.raises(ConfigError, match="utterances.csv but no .run.json"):
        reports.prepare_output(tmp_path, {"model_sha256": "aa"}, overwrite=False)
