"""Corpus readers: manifest, EMO-DB, RAVDESS, a synthetic IEMOCAP tree; dedupe and class selection."""

from __future__ import annotations

import pytest

from ser_cli.corpora import Utterance, describe, read_corpus, select_classes
from ser_cli.errors import ConfigError, CorpusError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_manifest_with_emotion_column_and_extra_columns(tmp_path):
    root = tmp_path / "mycorpus"
    _touch(root / "wav" / "a.wav")
    (root / "manifest.csv").write_text(
        "path,speaker,emotion,duration_s,sample_rate\nwav/a.wav,07,Angry,2.0,16000\n"
    )
    (utt,) = read_corpus(root)
    assert utt == Utterance(str(root / "wav" / "a.wav"), "07", "angry", "mycorpus", "a", "mycorpus")
    # the CSV itself works as a source too, with a label column
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("label,path,speaker\nsad,mycorpus/wav/a.wav,x\n")
    (utt,) = read_corpus(csv_path)
    assert (utt.label, utt.speaker, utt.path) == ("sad", "x", str(root / "wav" / "a.wav"))


@pytest.mark.parametrize(
    "text, match",
    [
        ("path,speaker\na.wav,1\n", "lacks column.*label"),
        ("path,speaker,label\na.wav,1,\n", r"bad.csv:2: a.wav: missing label"),
        ("path,speaker,label\na.wav,,sad\n", r"bad.csv:2: a.wav: missing speaker"),
        ("path,speaker,label\n", "lists no files"),
    ],
)
def test_manifest_errors_name_the_file(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CorpusError, match=match):
        read_corpus(path)


def test_emodb_file_names(tmp_path):
    root = tmp_path / "berlin"
    for name in ["03a01Fa.wav", "16b10Wb.wav", "readme.wav"]:
        _touch(root / name)
    utts = read_corpus(root)
    assert [(u.utt_id, u.speaker, u.label, u.family) for u in utts] == [
        ("03a01Fa", "03", "happy", "emodb"),
        ("16b10Wb", "16", "angry", "emodb"),
    ]
    assert read_corpus(root, format="emodb") == utts


def test_ravdess_file_names(tmp_path):
    root = tmp_path / "rav"
    _touch(root / "Actor_12" / "03-01-05-01-01-01-12.flac")
    _touch(root / "Actor_01" / "03-01-06-02-02-02-01.wav")
    utts = read_corpus(root)
    assert [(u.speaker, u.label) for u in utts] == [("01", "fear"), ("12", "angry")]


def _iemocap_tree(root):
    session = root / "Session1"
    labels = session / "dialog" / "EmoEvaluation"
    labels.mkdir(parents=True)
    (labels / "Ses01F_impro01.txt").write_text(
        "% header line\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n"
        "[10.01 - 11.3925]\tSes01F_impro01_M001\tang\t[2.0, 3.5, 3.5]\n"
        "[12.0 - 13.0]\tSes01F_impro01_F002\txxx\t[2.0, 3.5, 3.5]\n"
        "[14.0 - 15.0]\tSes01F_impro01_M003\texc\t[2.0, 3.5, 3.5]\n"
    )
    (labels / "Ses01F_script01_1.txt").write_text(
        "[1.0 - 2.0]\tSes01F_script01_1_F000\tsad\t[2.0, 2.0, 2.0]\n"
    )


def test_iemocap_improvised_only(tmp_path):
    _iemocap_tree(tmp_path / "IEMOCAP")
    utts = read_corpus(tmp_path / "IEMOCAP")
    assert [(u.utt_id, u.speaker, u.label) for u in utts] == [
        ("Ses01F_impro01_F000", "Ses01F", "neutral"),
        ("Ses01F_impro01_M001", "Ses01M", "angry"),
        ("Ses01F_impro01_M003", "Ses01M", "excited"),
    ]
    assert utts[0].path == str(
        tmp_path / "IEMOCAP" / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_F000.wav"
    )
    assert {u.corpus for u in utts} == {"iemocap"}


def _emodb_manifest(root, names):
    rows = ["path,speaker,emotion"]
    for name in names:
        _touch(root / "wav" / name)
        rows.append(f"wav/{name},{name[:2]},x")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")


def test_emodb_copies_are_used_once_first_source_wins(tmp_path):
    """The 2 s copies and the originals are the same recordings: family 'emodb', one file each."""
    _emodb_manifest(tmp_path / "emodb_original_subset", ["03a01Fa.wav", "03a01Nc.wav"])
    _emodb_manifest(tmp_path / "emodb", ["03a01Fa.wav", "03a01Nc.wav", "03a02Lb.wav"])
    utts = read_corpus([tmp_path / "emodb_original_subset", tmp_path / "emodb"])
    assert [(u.utt_id, u.corpus) for u in utts] == [
        ("03a01Fa", "emodb_original_subset"),
        ("03a01Nc", "emodb_original_subset"),
        ("03a02Lb", "emodb"),
    ]
    assert {u.family for u in utts} == {"emodb"}
    assert {u.speaker for u in utts} == {"03"}  # one family: speaker ids stay as they are
    reverse = read_corpus([tmp_path / "emodb", tmp_path / "emodb_original_subset"])
    assert {u.corpus for u in reverse} == {"emodb"}


def test_speakers_namespaced_across_families(tmp_path):
    _emodb_manifest(tmp_path / "emodb", ["03a01Fa.wav"])
    _touch(tmp_path / "rav" / "03-01-05-01-01-01-03.wav")
    utts = read_corpus([tmp_path / "emodb", tmp_path / "rav"])
    assert [u.speaker for u in utts] == ["emodb:03", "ravdess:03"]


def test_auto_detection_errors(tmp_path):
    with pytest.raises(CorpusError, match="missing.*does not exist"):
        read_corpus(tmp_path / "missing")
    _touch(tmp_path / "odd" / "hello.wav")
    with pytest.raises(CorpusError, match="odd.*cannot tell the corpus format"):
        read_corpus(tmp_path / "odd")
    with pytest.raises(ConfigError, match="format"):
        read_corpus(tmp_path / "odd", format="timit")


def _utts(*labels):
    return [Utterance(f"{i}.wav", str(i % 2), lab, "c", str(i)) for i, lab in enumerate(labels)]


def test_select_classes_orders_and_drops():
    utts = _utts("sad", "fear", "happy", "sad", "neutral")
    kept, classes = select_classes(utts, ["neutral", "happy", "sad"])
    assert classes == ["neutral", "happy", "sad"]
    assert [u.label for u in kept] == ["sad", "happy", "sad", "neutral"]
    assert select_classes(utts)[1] == ["fear", "happy", "neutral", "sad"]


def test_select_classes_errors():
    utts = _utts("sad", "happy")
    with pytest.raises(CorpusError, match="angry not in the data"):
        select_classes(utts, ["sad", "angry"])
    with pytest.raises(CorpusError, match="at least 2"):
        select_classes(utts, ["sad"])
    with pytest.raises(CorpusError, match="more than once"):
        select_classes(utts, ["sad", "sad"])


def test_describe_counts():
    info = describe(_utts("sad", "happy", "sad"))
    assert info["classes"] == {"happy": 1, "sad": 2}
    assert info["speakers"] == {"0": 2, "1": 1}
    assert info["speaker_class"]["0"] == {"sad": 2}
