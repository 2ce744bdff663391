"""Leave-one-speaker-out evaluation: folds, metrics with known answers, outputs, resume."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from ser_cli.corpora import read_corpus
from ser_cli.errors import ConfigError
from ser_cli.evaluation import (
    confusion_matrix,
    corpus_metrics,
    evaluate,
    make_folds,
    metrics_from_confusion,
)
from ser_cli.training import TrainConfig
from conftest import tiny_model_config


def test_metrics_from_a_hand_made_confusion():
    # rows = true (neutral, happy, angry, sad), columns = predicted
    confusion = [
        [8, 1, 0, 1],  # neutral: 8/10
        [2, 2, 1, 0],  # happy:   2/5
        [0, 1, 9, 0],  # angry:   9/10
        [1, 0, 0, 4],  # sad:     4/5
    ]
    m = metrics_from_confusion(confusion, ["neutral", "happy", "angry", "sad"])
    assert m["n"] == 30
    assert m["wa"] == pytest.approx(23 / 30)
    assert m["recalls"] == pytest.approx({"neutral": 0.8, "happy": 0.4, "angry": 0.9, "sad": 0.8})
    assert m["ua"] == pytest.approx((0.8 + 0.4 + 0.9 + 0.8) / 4)


def test_class_without_test_utterances_is_left_out_of_ua():
    m = metrics_from_confusion([[3, 1], [0, 0]], ["a", "b"])
    assert m["recalls"] == {"a": 0.75, "b": None}
    assert m["ua"] == pytest.approx(0.75) and m["wa"] == pytest.approx(0.75)


def test_confusion_matrix_counts():
    assert confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_make_folds():
    speakers = [f"{i:02d}" for i in range(24, 0, -1)] * 2
    groups = make_folds(speakers, 6)
    assert groups[0] == ["01", "02", "03", "04"] and groups[5] == ["21", "22", "23", "24"]
    assert make_folds(["b", "a", "c"]) == [["a"], ["b"], ["c"]]
    assert make_folds(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    with pytest.raises(ConfigError, match="folds=4"):
        make_folds(["a", "b", "c"], 4)
    with pytest.raises(ConfigError, match="at least 2 speakers"):
        make_folds(["a", "a"])


@pytest.fixture(scope="module")
def three_speakers(synthetic_corpus):
    return [u for u in read_corpus(synthetic_corpus) if u.speaker != "s4"]


def _evaluate(utts, out, cache, **kwargs):
    return evaluate(
        utts, out, folds=2, model_config=tiny_model_config(head="gap"),
        train_config=TrainConfig(epochs=1, batch_size=8), cache_dir=cache, device="cpu",
        precision="fp32", progress=False, command="ser-cli evaluate test", **kwargs,
    )


def test_evaluate_writes_every_output_and_resumes(three_speakers, feature_cache, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    result = _evaluate(three_speakers, out, feature_cache)
    for name in ("predictions.csv", "metrics.json", "metrics.csv", "command.txt", "confusion.png"):
        assert (out / name).is_file(), name
    assert result.n_folds == 2 and result.folds_run == [1, 2] and not result.partial

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fold_speakers"] == {"1": ["s1", "s2"], "2": ["s3"]}
    assert set(metrics["by_average"]) == {"logits", "probs"} and metrics["primary_average"] == "logits"
    assert metrics["epochs"] == 1 and metrics["command"] == "ser-cli evaluate test"

    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(three_speakers) == result.n_utterances
    assert {r["fold"] for r in rows if r["speaker"] == "s3"} == {"2"}
    # WA and UA recomputed from the predictions file
    correct = [r["true"] == r["pred"] for r in rows]
    assert result.wa == pytest.approx(np.mean(correct))
    recalls = [np.mean([r["true"] == r["pred"] for r in rows if r["true"] == c]) for c in ("high", "low")]
    assert result.ua == pytest.approx(np.mean(recalls))
    assert metrics["wa"] == pytest.approx(result.wa)
    for r in rows:
        assert float(r["high"]) + float(r["low"]) == pytest.approx(1.0, abs=1e-5)

    # a rerun reuses both folds without training
    import ser_cli.training as train_module

    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("retrained a finished fold"))
    again = _evaluate(three_speakers, out, feature_cache)
    assert again.wa == result.wa and again.confusion == result.confusion
    partial = _evaluate(three_speakers, out, feature_cache, only_folds=[2])
    assert partial.partial and partial.folds_run == [2] and partial.n_utterances == 6
    assert json.loads((out / "metrics.json").read_text())["partial"] is True

    # an interrupted run into the same folder leaves the finished run's command beside its results
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(three_speakers, out, folds=2, model_config=tiny_model_config(head="gap"),
                 train_config=TrainConfig(epochs=2, batch_size=8), cache_dir=feature_cache,
                 device="cpu", precision="fp32", progress=False, command="ser-cli evaluate other")
    assert (out / "command.txt").read_text() == "ser-cli evaluate test\n"
    assert json.loads((out / "metrics.json").read_text())["command"] == "ser-cli evaluate test"


def test_only_folds_out_of_range(three_speakers, tmp_path):
    with pytest.raises(ConfigError, match="only_folds"):
        evaluate(three_speakers, tmp_path, folds=2, only_folds=[3], progress=False)


def test_make_folds_per_corpus_family():
    speakers = [f"emodb:{i:02d}" for i in (3, 8, 9, 10)] + [f"ravdess:{i:02d}" for i in range(1, 7)]
    groups = make_folds(speakers, {"emodb": 4, "ravdess": 3})
    assert groups == [
        ["emodb:03", "ravdess:01", "ravdess:02"],
        ["emodb:08", "ravdess:03", "ravdess:04"],
        ["emodb:09", "ravdess:05", "ravdess:06"],
        ["emodb:10"],
    ]
    # one family without prefixes: the mapping's only entry applies
    assert make_folds(["a", "b", "c", "d"], {"ravdess": 2}) == [["a", "b"], ["c", "d"]]
    with pytest.raises(ConfigError, match="no fold count for corpus family 'ravdess'"):
        make_folds(speakers, {"emodb": 4})
    with pytest.raises(ConfigError, match="folds=5"):
        make_folds(speakers, {"emodb": 5, "ravdess": 3})
    cross = make_folds(speakers, "corpus")
    assert cross == [speakers[:4], speakers[4:]]
    with pytest.raises(ConfigError, match="cross-corpus"):
        make_folds(["a", "b"], "corpus")


def _prediction(family, speaker, label, scores, fold=1):
    return {"family": family, "speaker": f"{family}:{speaker}", "corpus": family, "label": label,
            "fold": fold, "scores": {"logits": scores, "probs": scores}}


def test_corpus_metrics_score_each_corpus_over_its_own_classes():
    classes = ["calm", "happy", "sad"]
    predictions = [
        # corpus a has no "calm": its argmax ignores that column
        _prediction("a", "1", "happy", [9.0, 2.0, 1.0]),
        _prediction("a", "1", "sad", [9.0, 1.0, 2.0]),
        _prediction("a", "2", "sad", [0.0, 3.0, 1.0], fold=2),
        _prediction("b", "1", "calm", [1.0, 2.0, 0.0]),
        _prediction("b", "1", "calm", [3.0, 2.0, 0.0]),
        _prediction("b", "2", "happy", [0.0, 5.0, 9.0]),  # no "sad" in b: happy wins
    ]
    m = corpus_metrics(predictions, classes, "logits")
    assert m["a"]["classes"] == ["happy", "sad"] and m["a"]["folds"] == [1, 2]
    assert m["a"]["confusion"] == [[1, 0], [1, 1]]
    assert m["a"]["wa"] == pytest.approx(2 / 3) and m["a"]["ua"] == pytest.approx(0.75)
    assert m["b"]["classes"] == ["calm", "happy"] and m["b"]["confusion"] == [[1, 1], [0, 1]]
    assert m["a"]["by_average"]["probs"]["wa"] == pytest.approx(2 / 3)
    assert corpus_metrics(predictions[:3], classes, "logits") == {}  # one corpus: nothing extra


def test_evaluate_reports_each_corpus(synthetic_corpus, tmp_path, feature_cache):
    """Two corpus families, per-family folds: metrics.json and metrics.csv carry each corpus."""
    from conftest import write_pitch_corpus

    other = write_pitch_corpus(tmp_path / "other", speakers={"t1": (600.0, 1100.0, 2500.0),
                                                             "t2": (450.0, 1700.0, 2600.0)}, per_class=2)
    utts = read_corpus([synthetic_corpus, other])
    assert {u.speaker for u in utts} >= {"pitch:s1", "other:t1"}
    out = tmp_path / "eval"
    result = evaluate(
        utts, out, folds={"pitch": 2, "other": 2}, only_folds=[1], model_config=tiny_model_config(head="gap"),
        train_config=TrainConfig(epochs=1, batch_size=8), cache_dir=feature_cache, device="cpu",
        precision="fp32", progress=False, command="test",
    )
    by_corpus = result.metrics["by_corpus"]
    assert set(by_corpus) == {"pitch", "other"}
    assert by_corpus["pitch"]["n"] == 12 and by_corpus["other"]["n"] == 4
    assert by_corpus["pitch"]["n"] + by_corpus["other"]["n"] == result.n_utterances
    assert result.metrics["folds_spec"] == {"pitch": 2, "other": 2}
    assert "corpus other" in (out / "metrics.csv").read_text()
    assert (out / "confusion_other.png").is_file()


def test_cli_evaluate_folds_and_excluded_speakers(synthetic_corpus, feature_cache, tmp_path):
    from click.testing import CliRunner

    from ser_cli.cli import main

    common = [str(synthetic_corpus), "--widths", "4,4,4,4", "--head", "gap", "--epochs", "1",
              "--batch-size", "8", "--cache-dir", str(feature_cache), "--device", "cpu", "--quiet"]
    runner = CliRunner()
    bad = runner.invoke(main, ["evaluate", *common, "-o", str(tmp_path / "x"), "--folds", "pitch=1"])
    assert bad.exit_code == 2 and "emodb=10,ravdess=6" in bad.output
    typo = runner.invoke(main, ["evaluate", *common, "-o", str(tmp_path / "x"), "--exclude-speakers", "s9"])
    assert typo.exit_code == 2 and "s9 not in the data" in typo.output
    out = tmp_path / "eval"
    ok = runner.invoke(main, ["evaluate", *common, "-o", str(out), "--exclude-speakers", "s4",
                              "--folds", "pitch=3", "--only-folds", "2", "--recipe", "paper"])
    assert ok.exit_code == 0, ok.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fold_speakers"] == {"1": ["s1"], "2": ["s2"], "3": ["s3"]}  # s4 left out
    assert metrics["configs"]["train_config"]["sampling"] == "segments"  # --recipe paper


def test_parallel_folds_equal_sequential_folds(three_speakers, feature_cache, tmp_path):
    serial = _evaluate(three_speakers, tmp_path / "serial", feature_cache, threads=1)
    parallel = _evaluate(three_speakers, tmp_path / "parallel", feature_cache, threads=1, jobs=2)
    assert parallel.confusion == serial.confusion and parallel.folds_run == [1, 2]
    for index in (1, 2):
        a, b = (json.loads((tmp_path / name / "folds" / f"fold_{index:02d}" / "result.json").read_text())
                for name in ("serial", "parallel"))
        for row_a, row_b in zip(a["utterances"], b["utterances"]):
            np.testing.assert_allclose(row_a["segment_logits"], row_b["segment_logits"], atol=1e-5)
    with pytest.raises(ConfigError, match="jobs=0"):
        _evaluate(three_speakers, tmp_path / "bad", feature_cache, jobs=0)


def test_fold_worker_ends_when_evaluate_is_killed(tmp_path):
    # a stand-in for evaluate: starts a worker as the fold pool does (the initializer with its
    # pid), reports the worker's pid, then dies as if killed; the worker must not live on
    worker = ("import sys, time; from ser_cli.evaluation import _exit_with_parent; "
              "_exit_with_parent(int(sys.argv[1]), every=0.05); time.sleep(60)")
    parent = ("import os, subprocess, sys; "
              f"w = subprocess.Popen([sys.executable, '-c', {worker!r}, str(os.getpid())], "
              "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
              "print(w.pid, flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    pytest.fail(f"worker {pid} outlived its parent by 20 s")


def test_reuse_models_rescores_without_training_and_refuses_other_settings(
    three_speakers, feature_cache, tmp_path, monkeypatch
):
    import torch

    import ser_cli.training as train_module
    from ser_cli.model import load_model
    from ser_cli.scoring import ScoringConfig
    from ser_cli.segmentation import SegmentConfig

    first = tmp_path / "first"
    base = _evaluate(three_speakers, first, feature_cache)
    before = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}

    # scoring-only changes: no epoch runs, the same weights score, the source is untouched
    monkeypatch.setattr(train_module, "_augment_batch",
                        lambda *a, **k: pytest.fail("trained instead of reusing"))
    second = tmp_path / "second"
    again = _evaluate(three_speakers, second, feature_cache, reuse_models=first,
                      segment_config=SegmentConfig(score_hop_frames=20),
                      scoring_config=ScoringConfig(average="probs"))
    assert again.folds_run == [1, 2] and again.n_utterances == base.n_utterances
    assert json.loads((second / "metrics.json").read_text())["primary_average"] == "probs"
    for index in (1, 2):
        old, new = (load_model(d / "folds" / f"fold_{index:02d}" / "model.pt", device="cpu")
                    for d in (first, second))
        assert new.segment_config.score_hop_frames == 20 and old.segment_config.score_hop_frames == 40
        for (name, a), (_, b) in zip(old.module.state_dict().items(), new.module.state_dict().items()):
            assert torch.equal(a, b), name
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == before

    # the paper recipe cuts training segments with the tail policy, so it is a training setting
    with pytest.raises(ConfigError, match="no checkpoint of these data and training settings"):
        _evaluate(three_speakers, tmp_path / "third", feature_cache, reuse_models=first,
                  segment_config=SegmentConfig(tail="drop"))
    with pytest.raises(ConfigError, match="missing, so fold 1 cannot be reused"):
        _evaluate(three_speakers, tmp_path / "fourth", feature_cache, reuse_models=tmp_path / "none")
    with pytest.raises(ConfigError, match="is the output folder itself"):
        _evaluate(three_speakers, first, feature_cache, reuse_models=first)


def test_tail_is_a_scoring_setting_for_crop_recipes():
    from ser_cli.segmentation import SegmentConfig
    from ser_cli.training import _training_identity, config_dict

    def identity(train_config, **segment):
        configs = {"segment_config": config_dict(SegmentConfig(**segment)),
                   "scoring_config": {"average": "probs"}}
        return _training_identity(configs, train_config)

    crops, segments = TrainConfig(sampling="crops"), TrainConfig()
    assert identity(crops, tail="drop", score_hop_frames=10) == identity(crops)
    assert identity(segments, score_hop_frames=10) == identity(segments)
    assert identity(segments, tail="drop") != identity(segments)
    assert identity(crops, pad="zeros") != identity(crops)  # pads short training utterances
    assert identity(segments)["scoring_config"] == {"average": "logits"}
    # at the default scoring settings the identity is the configs themselves, so checkpoints
    # written before scoring-only settings were left out keep their fingerprint
    defaults = {"segment_config": config_dict(SegmentConfig()), "scoring_config": {"average": "logits"}}
    assert _training_identity(defaults, crops) == defaults == _training_identity(defaults, segments)
