"""Leave-one-speaker-out evaluation: folds, metrics with known answers, outputs, resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ser_cli.corpora import read_corpus
from ser_cli.errors import ConfigError
from ser_cli.evaluation import confusion_matrix, evaluate, make_folds, metrics_from_confusion
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


def test_only_folds_out_of_range(three_speakers, tmp_path):
    with pytest.raises(ConfigError, match="only_folds"):
        evaluate(three_speakers, tmp_path, folds=2, only_folds=[3], progress=False)
