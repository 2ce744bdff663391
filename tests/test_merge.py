"""Tests of ser_cli.merge and of ``analyze(shard=...)``: shards of one archive, merged, give the
reports one run writes, byte for byte; merges of unlike runs are refused with the folder named.

Audio is synthetic (tests/signals.py); the model is the session fixture ``tiny_model``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from ser_cli import reports
from ser_cli.analysis import analyze
from ser_cli.cli import main
from ser_cli.errors import ConfigError
from ser_cli.merge import merge
import signals

REPORTS = ("utterances.csv", "utterances.json", "segments.csv", "segments.json", "segments.jsonl")
N_SHARDS = 3
# summary fields that describe a run's timing and command line, not its results
RUN_FIELDS = {"this_run", "wall_s", "x_real_time", "command", "finished_at", "merged_from", "merge"}


def write_archive(root: Path) -> Path:
    """archive/: nine short speech-like files in two speaker folders, a 2.5 s 22.05 kHz chirp,
    a broken file (an error row) and a text file (skipped)."""
    for s in range(2):
        (root / f"spk{s}").mkdir(parents=True)
        for i in range(4 + s):
            y = signals.vowel(100.0 + 37 * i + 90 * s, duration_s=0.6 + 0.35 * i, seed=10 * s + i)
            sf.write(root / f"spk{s}" / f"utt{i}.wav", y, 16000)
    sf.write(root / "chirp.wav", signals.chirp(100.0, 3000.0, 2.5, sample_rate=22050), 22050)
    (root / "broken.wav").write_bytes(b"RIFF not really")
    (root / "notes.txt").write_text("skipped")
    return root


def _analyze(out, model, **kwargs):
    # "missing.wav" does not exist: an error row, sharded by its name like every input
    return analyze(["archive", "missing.wav"], out, model=model, progress=False, batch_size=8,
                   **kwargs)


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """One full run and its three shards, in a folder that is the working directory."""
    root = tmp_path_factory.mktemp("merge")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        write_archive(Path("archive"))
        _analyze("full", tiny_model)
        for i in range(1, N_SHARDS + 1):
            _analyze(f"shard-{i}", tiny_model, shard=f"{i}/{N_SHARDS}")
    return root


@pytest.fixture
def here(runs, monkeypatch):
    monkeypatch.chdir(runs)
    return runs


def _files(out) -> list[str]:
    return [u["file"] for u in json.loads(Path(out, "utterances.json").read_text())]


def test_shards_are_disjoint_and_cover_the_single_run(here):
    shard_files = [_files(f"shard-{i}") for i in range(1, N_SHARDS + 1)]
    everything = _files("full")
    assert len(everything) == 12  # 9 + chirp + broken + missing, text file skipped
    assert sorted(f for files in shard_files for f in files) == sorted(everything)
    assert all(files for files in shard_files)  # 12 files: no shard is empty with this hash
    summary = json.loads(Path("shard-2/summary.json").read_text())
    assert summary["shard"] == "2/3" and summary["files"]["skipped_non_audio"] == 1


def test_merged_shards_equal_the_single_run_byte_for_byte(here, tmp_path):
    shards = [f"shard-{i}" for i in (3, 1, 2)]  # input order does not matter
    result = merge(shards, tmp_path / "all")
    for name in REPORTS:
        assert (tmp_path / "all" / name).read_bytes() == Path("full", name).read_bytes(), name
    full = json.loads(Path("full/summary.json").read_text())
    merged = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert {k: v for k, v in merged.items() if k not in RUN_FIELDS} == {
        k: v for k, v in full.items() if k not in RUN_FIELDS}
    assert list(merged)[: len(full)] == list(full)  # same keys in the same order
    assert merged["merge"]["shards"] == {"count": 3, "merged": [1, 2, 3], "missing": []}
    assert [m["shard"] for m in merged["merged_from"]] == ["3/3", "1/3", "2/3"]
    assert (result.n_ok, result.n_error) == (10, 2)
    # the merged folder is a normal analyze output: a rerun over it resumes and adds nothing
    again = _analyze(tmp_path / "all", str(Path(here, full["model"]["path"])))
    assert again.summary["this_run"]["resumed_skipped"] == 12
    for name in REPORTS:
        assert (tmp_path / "all" / name).read_bytes() == Path("full", name).read_bytes(), name


def test_merge_refuses_another_model(here, tmp_path):
    from ser_cli.bench import _random_model
    from conftest import tiny_model_config

    other = _random_model(tmp_path / "other.pt", tiny_model_config())
    _analyze(tmp_path / "other-2", other, shard="2/3")
    with pytest.raises(ConfigError, match=r"other-2: settings\.model_sha256 is .* shard-1 has"):
        merge(["shard-1", tmp_path / "other-2", "shard-3"], tmp_path / "all")


def test_merge_refuses_other_settings_naming_dir_and_field(here, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree("shard-2", tampered)
    summary = json.loads((tampered / "summary.json").read_text())
    summary["settings"]["segment_config"]["score_hop_frames"] = 20
    (tampered / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match=r"tampered: settings\.segment_config\.score_hop_frames "
                       r"is 20, shard-1 has 40; cannot merge"):
        merge(["shard-1", tampered, "shard-3"], tmp_path / "all")
    run = json.loads((tampered / reports.RUN_NAME).read_text())
    other = "fp32" if run["settings"]["precision"] == "bf16" else "bf16"  # auto picks per CPU
    run["settings"]["precision"] = other
    (tampered / reports.RUN_NAME).write_text(json.dumps(run))
    with pytest.raises(ConfigError, match=rf"tampered: settings\.precision is \"{other}\""):
        merge(["shard-1", tampered, "shard-3"], tmp_path / "all")


def test_merge_refuses_missing_repeated_or_conflicting_inputs(here, tmp_path):
    with pytest.raises(ConfigError, match=r"shards 2/3 are missing \(2 of 3 given\).*--partial"):
        merge(["shard-1", "shard-3"], tmp_path / "a")
    partial = merge(["shard-1", "shard-3"], tmp_path / "a", allow_partial=True)
    assert partial.summary["merge"]["shards"]["missing"] == [2]
    with pytest.raises(ConfigError, match="already holds"):
        merge(["shard-1", "shard-3"], tmp_path / "a", allow_partial=True)
    with pytest.raises(ConfigError, match="given twice"):
        merge(["shard-1", "./shard-1"], tmp_path / "b")
    with pytest.raises(ConfigError, match="is one of the inputs"):
        merge(["shard-1", "shard-2"], "shard-2")
    with pytest.raises(ConfigError, match=r"not-an-out: no \.run\.json"):
        Path("not-an-out").mkdir(exist_ok=True)
        merge(["shard-1", "not-an-out"], tmp_path / "c")
    # identical records of one file (a full run and a shard of it) collapse into one row
    both = merge(["full", "shard-2"], tmp_path / "d", allow_partial=True)
    assert [u["file"] for u in both.utterances] == _files("full")
    # a different record of the same file is refused
    conflict = tmp_path / "conflict"
    shutil.copytree("shard-2", conflict)
    lines = (conflict / reports.JOURNAL_NAME).read_text().splitlines(keepends=True)
    record = json.loads(lines[-1])
    record["duration_s"] = 123.0
    lines[-1] = json.dumps(record, separators=(",", ":")) + "\n"
    (conflict / reports.JOURNAL_NAME).write_text("".join(lines))
    with pytest.raises(ConfigError, match=r"conflict: holds another record of .* than full"):
        merge(["full", conflict], tmp_path / "e", allow_partial=True)


def test_cli_shard_and_merge(here, tmp_path, tiny_model):
    runner = CliRunner()
    for i in (1, 2):
        r = runner.invoke(main, ["analyze", "archive", "--model", str(tiny_model), "--batch-size",
                                 "8", "-q", "--shard", f"{i}/2", "-o", str(tmp_path / f"s{i}")])
        assert r.exit_code in (0, 3), r.output  # 3 for the shard broken.wav lands in
    r = runner.invoke(main, ["merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                             "-o", str(tmp_path / "all")])
    assert r.exit_code == 3, r.output
    assert "10 files ok, 1 failed, from 2 folder(s)" in r.output
    rows = _files(tmp_path / "all")
    assert rows == [f for f in _files("full") if f != "missing.wav"]
    r = runner.invoke(main, ["analyze", "archive", "--shard", "0/2"])
    assert r.exit_code == 2 and "1-based" in r.output
    r = runner.invoke(main, ["analyze", "archive", "--scheduler", "tcp://x:1"])
    assert r.exit_code == 2 and "--backend dask" in r.output
    r = runner.invoke(main, ["merge", str(tmp_path / "s1"), "-o", str(tmp_path / "p")])
    assert r.exit_code == 1 and "shards 2/2 are missing" in r.output


def test_segment_scores_are_the_single_runs_after_a_stable_sort(here, tmp_path):
    """The issue's criterion, independent of the renderer: rows sorted by (file, index)."""
    merge([f"shard-{i}" for i in range(1, N_SHARDS + 1)], tmp_path / "all")

    def rows(out):
        lines = Path(out, "segments.jsonl").read_text().splitlines()
        return sorted((json.loads(x) for x in lines), key=lambda r: (r["file"], r["index"]))

    a, b = rows("full"), rows(tmp_path / "all")
    assert a == b and len(a) > 10
    assert np.allclose([r["high"] + r["low"] for r in a], 1.0, atol=1e-6)
