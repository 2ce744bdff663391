"""Tests of ser_cli.analysis (ser_cli.analyze): the batch pipeline, its reports, resume and refusals.

Audio is synthetic (tests/signals.py); the model is the session fixture ``tiny_model``.
"""

from __future__ import annotations

import csv
import fcntl
import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ser_cli
from ser_cli import reports
from ser_cli.analysis import analyze
from ser_cli.errors import ConfigError, ModelFileError, SerError
import signals

# ``ser_cli.analyze`` the attribute is the function (public API); the module is in sys.modules.
analyze_module = importlib.import_module("ser_cli.analysis")

REPORTS = ("utterances.csv", "utterances.json", "segments.csv", "segments.json", "segments.jsonl")


def _write_inputs(root: Path) -> Path:
    """in/: 0.5 s (one padded segment), 1 s, 2.5 s at 22.05 kHz, a 12 s stereo 44.1 kHz FLAC in a
    sub-folder (two decode blocks), and a text file that is skipped."""
    (root / "sub").mkdir(parents=True)
    sf.write(root / "short.wav", signals.vowel(120.0, duration_s=0.5, seed=1), 16000)
    sf.write(root / "a.wav", signals.vowel(240.0, duration_s=1.0, seed=2), 16000)
    sf.write(root / "mid.wav", signals.chirp(100.0, 3000.0, 2.5, sample_rate=22050), 22050)
    t = np.arange(12 * 44100) / 44100
    tone = 0.3 * np.sin(2 * np.pi * (150 + 100 * np.sin(2 * np.pi * 0.2 * t)) * t)
    stereo = np.stack([tone, 0.5 * tone + signals.noise(12, sample_rate=44100, seed=3)], axis=1)
    sf.write(root / "sub" / "long.flac", stereo.astype(np.float32), 44100)
    (root / "notes.txt").write_text("not audio, skipped in folders")
    return root


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temporary working directory holding in/ (relative paths as a user would type them)."""
    monkeypatch.chdir(tmp_path)
    _write_inputs(Path("in"))
    return tmp_path


def _run(paths=("in",), out="out", model=None, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("batch_size", 8)
    return analyze(list(paths), out, model=model, **kwargs)


def _read_reports(out) -> dict[str, bytes]:
    return {name: (Path(out) / name).read_bytes() for name in REPORTS}


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _expected_segments(n_samples: int, hop: int = 40) -> int:
    from ser_cli.segmentation import segment_starts

    n_frames = 1 + (n_samples - 640) // 160
    return len(segment_starts(n_frames, hop))


def test_reports_columns_rows_and_formats_agree(workdir, tiny_model):
    result = _run(model=tiny_model)
    classes = ser_cli.load_model(tiny_model).classes
    assert (result.n_ok, result.n_error) == (4, 0)
    files = ["in/a.wav", "in/mid.wav", "in/short.wav", "in/sub/long.flac"]  # as given, sorted
    utterances = json.loads(Path("out/utterances.json").read_text())
    assert [u["file"] for u in utterances] == files
    assert utterances == result.utterances
    u_csv = _csv_rows("out/utterances.csv")
    assert list(u_csv[0]) == reports.utterance_columns(classes)
    for row_csv, row_json in zip(u_csv, utterances, strict=True):
        assert row_csv == {k: "" if v is None else str(v) for k, v in row_json.items()}
    by_file = {u["file"]: u for u in utterances}
    assert by_file["in/short.wav"]["n_segments"] == 1
    assert by_file["in/a.wav"]["n_segments"] == 1
    assert by_file["in/mid.wav"]["n_segments"] == _expected_segments(40000)  # 2.5 s
    assert by_file["in/sub/long.flac"]["n_segments"] == _expected_segments(12 * 16000)
    assert by_file["in/mid.wav"]["duration_s"] == pytest.approx(2.5, abs=1e-3)
    for u in utterances:
        assert u["status"] == "ok" and u["error"] == ""
        assert sum(u[c] for c in classes) == pytest.approx(1.0, abs=1e-5)
        assert u["label"] == max(classes, key=u.__getitem__)

    segments = json.loads(Path("out/segments.json").read_text())
    s_csv = _csv_rows("out/segments.csv")
    s_jsonl = [json.loads(x) for x in Path("out/segments.jsonl").read_text().splitlines()]
    assert segments == s_jsonl
    assert len(segments) == len(s_csv) == sum(u["n_segments"] for u in utterances)
    assert list(s_csv[0]) == reports.segment_columns(classes)
    for row_csv, row_json in zip(s_csv, segments, strict=True):
        assert row_csv == {k: str(v) for k, v in row_json.items()}
    assert [(s["file"], s["index"]) for s in segments] == sorted(
        (s["file"], s["index"]) for s in segments)
    long = [s for s in segments if s["file"] == "in/sub/long.flac"]
    assert [s["start_s"] for s in long[:3]] == [0.0, 0.4, 0.8]
    assert long[0]["end_s"] == pytest.approx(2.03)
    assert long[-1]["end_s"] == pytest.approx(12.0, abs=1e-3)  # end-aligned tail segment
    assert [s["end_s"] for s in segments if s["file"] == "in/short.wav"] == [0.5]  # clipped

    summary = json.loads(Path("out/summary.json").read_text())
    assert summary == result.summary
    assert summary["files"]["ok"] == 4 and summary["files"]["error"] == 0
    assert summary["files"]["skipped_non_audio"] == 1
    assert summary["model"]["sha256"] == ser_cli.load_model(tiny_model).sha256
    assert summary["versions"]["ser_cli"] == ser_cli.__version__
    assert summary["audio_hours"] == pytest.approx(16.0 / 3600, abs=1e-5)
    assert summary["settings"]["segment_config"]["score_hop_frames"] == 40


@pytest.fixture(scope="module")
def wide_model(synthetic_corpus, feature_cache, tmp_path_factory):
    """``tiny_model``'s recipe (2 epochs) on the 0 - 8 kHz band (``FeatureConfig(fmax=8000)``)."""
    from conftest import tiny_model_config
    from ser_cli.corpora import read_corpus
    from ser_cli.features import FeatureConfig
    from ser_cli.training import TrainConfig, train

    return train(
        read_corpus(synthetic_corpus), tmp_path_factory.mktemp("wide-model") / "wide.pt",
        model_config=tiny_model_config(), train_config=TrainConfig(epochs=2, batch_size=8),
        feature_config=FeatureConfig(fmax=8000), cache_dir=feature_cache, device="cpu",
        precision="fp32", progress=False, command="pytest wide_model fixture",
    ).model_path


@pytest.mark.parametrize("which", ["tiny_model", "wide_model"])
def test_scores_match_a_direct_computation(workdir, which, request):
    """The streamed, batched pipeline equals load -> spectrogram -> cut -> normalize -> model,
    with the band the model was trained on (0 - 4 kHz, or 0 - 8 kHz for ``wide_model``)."""
    import torch

    from ser_cli import audio, features
    from ser_cli.scoring import utterance_scores
    from ser_cli.segmentation import cut_segments

    model = request.getfixturevalue(which)
    # fp32: "auto" is bf16 on a CPU with native bf16, and the direct computation below is fp32
    result = _run(["in/sub/long.flac", "in/short.wav"], model=model, precision="fp32")
    loaded = ser_cli.load_model(model)
    assert loaded.feature_config.fmax == (8000 if which == "wide_model" else 4000)
    columns = reports.score_columns(loaded.classes)
    for row in result.utterances:
        spec = features.spectrogram(audio.load(row["file"]), fmax=loaded.feature_config.fmax)
        segments, _ = cut_segments(spec, loaded.segment_config.score_hop_frames,
                                   loaded.segment_config)
        x = features.normalize(segments, loaded.feature_config.normalization,
                               mu=loaded.feature_config.mu)
        with torch.inference_mode():
            logits = loaded.module(torch.from_numpy(x).unsqueeze(1))
        expected = utterance_scores(logits, loaded.scoring_config)
        # fp32 both ways; oneDNN may pick another convolution algorithm for the frozen,
        # channels_last module (seen: 2e-5 apart on an AMX CPU)
        np.testing.assert_allclose([row[c] for c in columns], expected, rtol=1e-4, atol=1e-4)


def test_segment_scores_do_not_depend_on_batch_companions(workdir, tiny_model):
    """A file scored in batches shared with other files equals that file scored alone."""
    together = _run(out="together", model=tiny_model, batch_size=8, jobs=2)
    alone = _run(["in/mid.wav"], out="alone", model=tiny_model, batch_size=8, jobs=1)
    assert together.n_ok == 4
    seg_together = [s for s in json.loads(Path("together/segments.json").read_text())
                    if s["file"] == "in/mid.wav"]
    assert seg_together == json.loads(Path("alone/segments.json").read_text())
    assert [u for u in together.utterances if u["file"] == "in/mid.wav"] == alone.utterances


def test_bad_files_give_error_rows_and_the_run_goes_on(workdir, tiny_model):
    Path("in/empty.wav").write_bytes(b"")
    Path("in/text.wav").write_text("this is not a RIFF file at all")
    result = _run(["in", "missing.wav"], model=tiny_model)
    assert (result.n_ok, result.n_error) == (4, 3)
    errors = {u["file"]: u for u in result.utterances if u["status"] == "error"}
    assert set(errors) == {"in/empty.wav", "in/text.wav", "missing.wav"}
    assert "in/empty.wav" in errors["in/empty.wav"]["error"]
    assert "empty" in errors["in/empty.wav"]["error"]
    assert errors["in/text.wav"]["error"].startswith("in/text.wav: ")
    assert "no such file" in errors["missing.wav"]["error"]
    for row in errors.values():
        assert row["label"] is None and row["duration_s"] is None
    row = next(r for r in _csv_rows("out/utterances.csv") if r["file"] == "in/empty.wav")
    assert row["status"] == "error" and row["label"] == "" and "empty" in row["error"]
    files = {s["file"] for s in json.loads(Path("out/segments.json").read_text())}
    assert files.isdisjoint(errors)


def test_rerun_skips_finished_files_without_duplicates(workdir, tiny_model):
    first = _run(model=tiny_model)
    before = _read_reports("out")
    journal_lines = Path("out", reports.JOURNAL_NAME).read_text().count("\n")
    again = _run(model=tiny_model)
    assert again.summary["this_run"]["scored"] == 0
    assert again.summary["this_run"]["resumed_skipped"] == 4
    assert _read_reports("out") == before
    assert Path("out", reports.JOURNAL_NAME).read_text().count("\n") == journal_lines
    # A changed file (new mtime) is scored again and replaces its rows.
    st = os.stat("in/a.wav")
    os.utime("in/a.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = _run(model=tiny_model)
    assert third.summary["this_run"]["scored"] == 1
    assert [u["file"] for u in third.utterances] == [u["file"] for u in first.utterances]
    assert _read_reports("out") == before  # same audio, same scores, no duplicate rows


def test_overwrite_starts_afresh(workdir, tiny_model):
    _run(model=tiny_model)
    result = _run(model=tiny_model, overwrite=True)
    assert result.summary["this_run"]["scored"] == 4
    assert Path("out", reports.JOURNAL_NAME).read_text().count("\n") == 4


def test_resume_after_a_crash_gives_the_uninterrupted_reports(workdir, tiny_model):
    _run(out="reference", model=tiny_model)
    reference = _read_reports("reference")
    _run(out="crashed", model=tiny_model)
    journal = Path("crashed", reports.JOURNAL_NAME)
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4
    # kill -9 mid-write of the last record, and a record that never made it at all
    journal.write_bytes(b"".join(lines[1:-1]) + lines[-1][: len(lines[-1]) // 2])
    for name in REPORTS:
        Path("crashed", name).unlink()
    resumed = _run(out="crashed", model=tiny_model)
    assert resumed.summary["this_run"]["scored"] == 2
    assert resumed.summary["this_run"]["resumed_skipped"] == 2
    assert _read_reports("crashed") == reference


def test_interrupt_writes_what_is_done_and_resume_completes(workdir, tiny_model, monkeypatch):
    _run(out="reference", model=tiny_model, batch_size=4)
    reference = _read_reports("reference")
    real_call = analyze_module._Scorer.__call__
    calls = {"n": 0}

    def interrupting_call(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_call(self, batch)

    monkeypatch.setattr(analyze_module._Scorer, "__call__", interrupting_call)
    with pytest.raises(KeyboardInterrupt):
        _run(out="out", model=tiny_model, batch_size=4, jobs=1)
    partial = json.loads(Path("out/utterances.json").read_text())
    assert 0 < len(partial) < 4
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["this_run"]["interrupted"] is True
    monkeypatch.setattr(analyze_module._Scorer, "__call__", real_call)
    _run(out="out", model=tiny_model, batch_size=4)
    assert _read_reports("out") == reference


def test_a_second_concurrent_run_is_refused(workdir, tiny_model):
    Path("out").mkdir()
    with open(Path("out", reports.LOCK_NAME), "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SerError, match="another ser-cli analyze is writing"):
            _run(model=tiny_model)
    assert _run(model=tiny_model).n_ok == 4


def test_another_model_into_the_same_out_is_refused(workdir, tiny_model, tmp_path):
    from conftest import tiny_model_config
    from ser_cli.bench import _random_model

    other = _random_model(tmp_path / "other.pt", tiny_model_config())
    _run(["in/a.wav"], model=tiny_model)
    with pytest.raises(ConfigError, match="other settings.*--overwrite"):
        _run(["in/a.wav"], model=other)
    result = _run(["in/a.wav"], model=other, overwrite=True)
    assert result.summary["model"]["name"] == "other"


def test_bad_model_and_arguments_are_fatal(workdir, tiny_model):
    Path("bad.pt").write_text("not a model")
    with pytest.raises(ModelFileError, match="bad.pt"):
        _run(model="bad.pt")
    with pytest.raises(ConfigError, match="batch_size=0"):
        _run(model=tiny_model, batch_size=0)
    with pytest.raises(ConfigError, match="jobs=0"):
        _run(model=tiny_model, jobs=0)
    assert not Path("out").exists()


def test_missing_bundled_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(analyze_module.importlib.resources, "files", lambda package: tmp_path)
    with pytest.raises(ModelFileError, match="no bundled model.*--model"):
        analyze_module.default_model_path()


def test_plot_writes_one_png_per_scored_file(workdir, tiny_model):
    pytest.importorskip("matplotlib")
    _run(["in/a.wav", "in/sub"], model=tiny_model, plot=True)
    for name in ("plots/in/a.wav.png", "plots/in/sub/long.flac.png"):
        assert Path("out", name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert analyze_module.plot_path("o", "/abs/x.wav") == Path("o/plots/abs/x.wav.png")
    assert analyze_module.plot_path("o", "../x.wav") == Path("o/plots/__/x.wav.png")


def test_progress_goes_to_stderr(workdir, tiny_model, capsys):
    _run(["in/a.wav"], model=tiny_model, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "1/1 files" in captured.err and "real time" in captured.err


@pytest.mark.cuda
def test_cuda_matches_cpu(workdir, tiny_model):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = _run(["in/mid.wav"], out="cpu", model=tiny_model, device="cpu")
    gpu = _run(["in/mid.wav"], out="gpu", model=tiny_model, device="cuda", precision="fp32")
    classes = ser_cli.load_model(tiny_model).classes
    np.testing.assert_allclose([gpu.utterances[0][c] for c in classes],
                               [cpu.utterances[0][c] for c in classes], atol=1e-4)


def test_public_function_survives_importing_the_module(workdir, tiny_model):
    importlib.import_module("ser_cli.analysis")
    importlib.import_module("ser_cli.training")
    result = ser_cli.analyze(["in/a.wav"], "out", model=tiny_model, progress=False)
    assert result.n_ok == 1
