"""Corpus readers: which files, which speaker, which emotion.

Four formats (SPEC §7; shared/data/README.md):

* ``manifest`` -- a CSV with the columns ``path,speaker,label`` (``emotion`` is accepted for
  ``label``; extra columns are ignored); ``path`` is relative to the CSV's folder.
* ``emodb`` -- EMO-DB file names, e.g. ``03a01Fa.wav``: speaker = characters 1-2, emotion letter
  = character 6 (W angry, L boredom, E disgust, A fear, F happy, T sad, N neutral).
* ``ravdess`` -- ``03-01-EE-II-SS-RR-AA.wav``: emotion = field 3, actor (speaker) = field 7.
* ``iemocap`` -- ``SessionN/dialog/EmoEvaluation/<dialog>.txt`` label lines and
  ``SessionN/sentences/wav/<dialog>/<utt>.wav``; improvised dialogs only; speaker = session +
  gender letter of the utterance (``Ses01F_impro01_M003`` → ``Ses01M``). The label ``xxx`` (no
  majority among annotators) is dropped.

Several sources combine into one list. Each utterance belongs to a corpus *family*: the naming
scheme of its files when they all follow EMO-DB's or RAVDESS's (so the 2 s copy ``emodb/`` and the
originals ``emodb_original_subset/`` are both family ``emodb``), else the corpus name. Within a
family an ``utt_id`` (the file stem) is used once, the first source given wins; speakers are
prefixed with the family (``emodb:03``) when more than one family is present.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from ser_cli.errors import ConfigError, CorpusError

__all__ = [
    "Utterance",
    "read_corpus",
    "select_classes",
    "describe",
    "FORMATS",
    "EMODB_EMOTIONS",
    "RAVDESS_EMOTIONS",
    "IEMOCAP_EMOTIONS",
]

FORMATS = ("auto", "manifest", "emodb", "ravdess", "iemocap")

EMODB_EMOTIONS = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
IEMOCAP_EMOTIONS = {
    "neu": "neutral",
    "hap": "happy",
    "ang": "angry",
    "sad": "sad",
    "exc": "excited",
    "fru": "frustrated",
    "sur": "surprise",
    "fea": "fear",
    "dis": "disgust",
    "oth": "other",
    "xxx": None,  # no majority label: dropped
}

_EMODB_NAME = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_IEMOCAP_LINE = re.compile(r"^\[\s*[-\d.]+\s*-\s*[-\d.]+\s*\]\t(\S+)\t(\S+)\t")
_SESSION_DIR = re.compile(r"^Session(\d+)$")
_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64", ".opus"}


@dataclass(frozen=True)
class Utterance:
    """One labelled recording.

    Attributes
    ----------
    path : str
        Absolute path of the audio file.
    speaker : str
        Speaker id (``"03"``, ``"Ses01F"``; ``"emodb:03"`` when several corpus families mix).
    label : str
        Emotion word, lowercase (``"neutral"``, ``"angry"``, ...).
    corpus : str
        Corpus name (the source folder's name, or the CSV's folder name).
    utt_id : str
        Utterance id, the file stem (``"03a01Fa"``); unique within a corpus family.
    family : str
        Corpus family used for de-duplication (``"emodb"`` for both EMO-DB copies).
    """

    path: str
    speaker: str
    label: str
    corpus: str
    utt_id: str
    family: str = ""


# ----------------------------------------------------------------------------------------------
# Readers


def _audio_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in _AUDIO_SUFFIXES and not name.startswith("."):
                files.append(Path(dirpath) / name)
    return files


def _family_of(stems: Iterable[str], default: str) -> str:
    stems = list(stems)
    if stems and all(_EMODB_NAME.match(s) for s in stems):
        return "emodb"
    if stems and all(_RAVDESS_NAME.match(s) for s in stems):
        return "ravdess"
    return default


def _read_manifest(csv_path: Path) -> list[Utterance]:
    corpus = csv_path.parent.name or "manifest"
    try:
        handle = open(csv_path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CorpusError(f"{csv_path}: cannot open manifest ({exc.strerror or exc})") from exc
    rows = []
    with handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        reader.fieldnames = fields
        label_key = "label" if "label" in fields else "emotion" if "emotion" in fields else None
        missing = [name for name, ok in (("path", "path" in fields), ("speaker", "speaker" in fields),
                                         ("label", label_key is not None)) if not ok]
        if missing:
            raise CorpusError(
                f"{csv_path}: manifest lacks column(s) {', '.join(missing)} "
                f"(found {', '.join(fields) or 'no header'}; expected path,speaker,label)"
            )
        for line_no, row in enumerate(reader, start=2):
            path = (row.get("path") or "").strip()
            speaker = (row.get("speaker") or "").strip()
            label = (row.get(label_key) or "").strip().lower()
            if not path:
                raise CorpusError(f"{csv_path}:{line_no}: empty path")
            if not speaker:
                raise CorpusError(f"{csv_path}:{line_no}: {path}: missing speaker")
            if not label:
                raise CorpusError(f"{csv_path}:{line_no}: {path}: missing label")
            full = Path(path) if os.path.isabs(path) else csv_path.parent / path
            rows.append((os.path.abspath(full), speaker, label, Path(path).stem))
    if not rows:
        raise CorpusError(f"{csv_path}: manifest lists no files")
    family = _family_of((r[3] for r in rows), corpus)
    return [Utterance(p, s, lab, corpus, stem, family) for p, s, lab, stem in rows]


def _read_emodb(root: Path) -> list[Utterance]:
    utts = []
    for path in _audio_files(root):
        match = _EMODB_NAME.match(path.stem)
        if match is None:
            continue
        utts.append(
            Utterance(os.path.abspath(path), match.group(1), EMODB_EMOTIONS[match.group(3)],
                      root.name, path.stem, "emodb")
        )
    if not utts:
        raise CorpusError(f"{root}: no EMO-DB file names (like 03a01Fa.wav) found")
    return utts


def _read_ravdess(root: Path) -> list[Utterance]:
    utts = []
    for path in _audio_files(root):
        match = _RAVDESS_NAME.match(path.stem)
        if match is None:
            continue
        code = match.group(3)
        if code not in RAVDESS_EMOTIONS:
            raise CorpusError(f"{path}: unknown RAVDESS emotion code {code} (expected 01-08)")
        utts.append(
            Utterance(os.path.abspath(path), match.group(7), RAVDESS_EMOTIONS[code], root.name,
                      path.stem, "ravdess")
        )
    if not utts:
        raise CorpusError(f"{root}: no RAVDESS file names (like 03-01-05-01-01-01-12.wav) found")
    return utts


def _iemocap_sessions(root: Path) -> list[Path]:
    if _SESSION_DIR.match(root.name):
        return [root]
    return sorted(
        (p for p in root.iterdir() if p.is_dir() and _SESSION_DIR.match(p.name)),
        key=lambda p: int(_SESSION_DIR.match(p.name).group(1)),
    )


def _read_iemocap(root: Path) -> list[Utterance]:
    sessions = _iemocap_sessions(root)
    if not sessions:
        raise CorpusError(f"{root}: no Session1 ... Session5 folders (IEMOCAP layout)")
    utts = []
    for session in sessions:
        label_dir = session / "dialog" / "EmoEvaluation"
        if not label_dir.is_dir():
            raise CorpusError(f"{label_dir}: missing (IEMOCAP label folder)")
        for label_file in sorted(label_dir.glob("*.txt")):
            dialog = label_file.stem
            if "impro" not in dialog:
                continue
            try:
                lines = label_file.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError as exc:
                raise CorpusError(f"{label_file}: cannot read ({exc.strerror or exc})") from exc
            for line in lines:
                match = _IEMOCAP_LINE.match(line)
                if match is None:
                    continue
                utt_id, code = match.group(1), match.group(2)
                if code not in IEMOCAP_EMOTIONS:
                    raise CorpusError(f"{label_file}: {utt_id}: unknown IEMOCAP label {code!r}")
                label = IEMOCAP_EMOTIONS[code]
                if label is None:
                    continue
                gender = utt_id.rsplit("_", 1)[-1][:1]
                speaker = utt_id[:5] + gender
                wav = session / "sentences" / "wav" / dialog / f"{utt_id}.wav"
                utts.append(Utterance(os.path.abspath(wav), speaker, label, "iemocap", utt_id, "iemocap"))
    if not utts:
        raise CorpusError(f"{root}: no labelled improvised utterances found")
    return utts


def _detect(source: Path) -> str:
    if source.is_file():
        if source.suffix.lower() == ".csv":
            return "manifest"
        raise CorpusError(f"{source}: a corpus source is a folder or a .csv manifest")
    if (source / "manifest.csv").is_file():
        return "manifest"
    if _iemocap_sessions(source):
        return "iemocap"
    stems = [p.stem for p in _audio_files(source)]
    if not stems:
        raise CorpusError(f"{source}: no audio files and no manifest.csv")
    n_emodb = sum(bool(_EMODB_NAME.match(s)) for s in stems)
    n_ravdess = sum(bool(_RAVDESS_NAME.match(s)) for s in stems)
    if max(n_emodb, n_ravdess) == 0:
        raise CorpusError(
            f"{source}: cannot tell the corpus format (no manifest.csv, no Session folders, "
            "file names are neither EMO-DB nor RAVDESS); pass a manifest CSV"
        )
    return "emodb" if n_emodb >= n_ravdess else "ravdess"


def _read_one(source: Path, format: str) -> list[Utterance]:
    if not source.exists():
        raise CorpusError(f"{source}: corpus source does not exist")
    fmt = _detect(source) if format == "auto" else format
    if fmt == "manifest":
        csv_path = source if source.is_file() else source / "manifest.csv"
        return _read_manifest(csv_path)
    if source.is_file():
        raise CorpusError(f"{source}: format {fmt!r} needs a folder")
    if fmt == "emodb":
        return _read_emodb(source)
    if fmt == "ravdess":
        return _read_ravdess(source)
    return _read_iemocap(source)


def read_corpus(
    sources: str | os.PathLike | Sequence[str | os.PathLike], format: str = "auto"
) -> list[Utterance]:
    """Read one or several corpora into a list of utterances.

    Parameters
    ----------
    sources : path-like or sequence of path-like
        Corpus folders or manifest CSVs, in priority order.
    format : {"auto", "manifest", "emodb", "ravdess", "iemocap"}
        ``auto``: a ``.csv`` is a manifest; a folder with ``manifest.csv`` is a manifest (corpus
        name = folder name); a folder with ``Session1`` … is IEMOCAP; else file names decide
        between EMO-DB and RAVDESS.

    Returns
    -------
    list of Utterance
        In source order, then file order. An ``utt_id`` already taken in the same family by an
        earlier source is skipped (first source wins). Speakers get a ``family:`` prefix when
        more than one family is present.

    Raises
    ------
    CorpusError
        A source is missing, of unknown format, empty, or has a malformed manifest (the message
        names the file and line).
    ConfigError
        ``format`` is not one of the above.

    Examples
    --------
    >>> utts = read_corpus(["data/emodb_original_subset", "data/emodb"])  # doctest: +SKIP
    >>> len(utts)  # originals where present, 2 s copies for the rest  # doctest: +SKIP
    535
    """
    if format not in FORMATS:
        raise ConfigError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise CorpusError("no corpus source given")
    seen: set[tuple[str, str]] = set()
    utts: list[Utterance] = []
    for source in sources:
        for utt in _read_one(Path(source), format):
            key = (utt.family, utt.utt_id)
            if key in seen:
                continue
            seen.add(key)
            utts.append(utt)
    families = {u.family for u in utts}
    if len(families) > 1:
        utts = [replace(u, speaker=f"{u.family}:{u.speaker}") for u in utts]
    return utts


def select_classes(utterances: Sequence[Utterance], classes: Sequence[str] | None = None) -> tuple[list[Utterance], list[str]]:
    """Keep the utterances of the given classes, and fix the class order.

    Parameters
    ----------
    utterances : sequence of Utterance
    classes : sequence of str, optional
        Class names in output order (e.g. the paper's ``neutral, happy, angry, sad``). Labels
        outside them are dropped. ``None`` keeps every label, sorted alphabetically.

    Returns
    -------
    utterances : list of Utterance
    classes : list of str

    Raises
    ------
    CorpusError
        A requested class has no utterance in the data, a class is repeated, or fewer than two
        classes remain.

    Examples
    --------
    >>> u = [Utterance("a.wav", "1", "sad", "c", "a"), Utterance("b.wav", "1", "fear", "c", "b"),
    ...      Utterance("c.wav", "2", "happy", "c", "c")]
    >>> select_classes(u, ["happy", "sad"])[1]
    ['happy', 'sad']
    """
    present = Counter(u.label for u in utterances)
    if classes is None:
        chosen = sorted(present)
    else:
        chosen = [c.strip().lower() for c in classes if c.strip()]
        repeated = [c for c, n in Counter(chosen).items() if n > 1]
        if repeated:
            raise CorpusError(f"classes: {', '.join(repeated)} given more than once")
        absent = [c for c in chosen if c not in present]
        if absent:
            raise CorpusError(
                f"classes: {', '.join(absent)} not in the data (labels present: "
                f"{', '.join(sorted(present)) or 'none'})"
            )
    if len(chosen) < 2:
        raise CorpusError(f"classes: need at least 2 classes, found {chosen}")
    keep = set(chosen)
    return [u for u in utterances if u.label in keep], chosen


def describe(utterances: Sequence[Utterance]) -> dict:
    """Counts per corpus, class, speaker and speaker × class (for model metadata and reports)."""
    by_speaker_class: dict[str, dict[str, int]] = {}
    for u in utterances:
        row = by_speaker_class.setdefault(u.speaker, {})
        row[u.label] = row.get(u.label, 0) + 1
    return {
        "n_utterances": len(utterances),
        "corpora": dict(sorted(Counter(u.corpus for u in utterances).items())),
        "classes": dict(sorted(Counter(u.label for u in utterances).items())),
        "speakers": dict(sorted(Counter(u.speaker for u in utterances).items())),
        "speaker_class": dict(sorted(by_speaker_class.items())),
    }
