"""Leave-one-speaker-out evaluation (SPEC §5): WA, UA, per-class recall, confusion.

Speakers are sorted and split into folds: one per speaker by default, or ``folds=k`` contiguous
groups (RAVDESS's 24 actors with k = 6 give 01-04, 05-08, ...). Each fold trains a model on the
other speakers with :func:`ser_cli.training.train` (same recipe, its own checkpoint folder), exports
it, reopens the model file and scores the held-out utterances with scoring segmentation
(``score_hop_frames``, 0.4 s) from the settings inside the file. The predictions of all folds are
pooled before the metrics are computed.

Both D4 averages are computed from the stored segment logits: the metrics of
``scoring_config.average`` are the primary ones, the other is reported beside them.

Resumable: a finished fold's result (every test utterance's segment logits) is written to
``OUT/folds/fold_NN/result.json`` and reused by a rerun with the same data and settings; an
unfinished fold resumes from its last training epoch.

Metrics: WA = correct / utterances; UA = mean over classes of recall = diag / row sum of the
confusion matrix (rows = true class, columns = predicted). A class with no test utterance has no
recall (``null``) and is left out of UA's mean.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ser_cli.corpora import Utterance, describe
from ser_cli.errors import ConfigError, CorpusError, SerError
from ser_cli.model import config_dict
from ser_cli.scoring import ScoringConfig, utterance_scores

__all__ = [
    "EvalResult",
    "evaluate",
    "make_folds",
    "confusion_matrix",
    "metrics_from_confusion",
    "corpus_metrics",
]

_AVERAGES = ("logits", "probs")


@dataclass
class EvalResult:
    """Pooled metrics of an evaluation (primary D4 average).

    Attributes
    ----------
    out_dir : Path
    classes : list of str
    wa, ua : float
        Weighted accuracy and unweighted (mean per-class recall) accuracy, in [0, 1].
    recalls : dict
        Class → recall in [0, 1], or None for a class with no test utterance.
    confusion : list of list of int
        ``confusion[i][j]``: utterances of true class i predicted as j.
    n_folds : int
        Folds the speakers were split into.
    folds_run : list of int
        1-based folds whose predictions are pooled.
    partial : bool
        True when only some folds ran (``only_folds``).
    n_utterances : int
        Test utterances scored.
    skipped : list of dict
        Files that could not be read (``path``, ``reason``).
    metrics : dict
        Everything written to metrics.json.
    """

    out_dir: Path
    classes: list[str]
    wa: float
    ua: float
    recalls: dict[str, float | None]
    confusion: list[list[int]]
    n_folds: int
    folds_run: list[int]
    partial: bool
    n_utterances: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def _family_of_speaker(speaker: str) -> str:
    """``"emodb:03"`` -> ``"emodb"``; a speaker id without a corpus prefix -> ``""``."""
    return speaker.split(":", 1)[0] if ":" in speaker else ""


def make_folds(speakers: Sequence[str], folds: int | str | Mapping[str, int] | None = None) -> list[list[str]]:
    """Split speakers into contiguous groups of their sorted order.

    Parameters
    ----------
    speakers : sequence of str
        Speaker ids (duplicates are ignored). When corpora mix they carry their corpus family,
        ``"emodb:03"`` (see :mod:`ser_cli.corpora`).
    folds : int, "corpus" or mapping, optional
        Number of folds, 2 <= folds <= number of speakers; default one fold per speaker.
        ``"corpus"``: one fold per corpus family, i.e. cross-corpus evaluation (train on the
        other corpora, test on this one). A
        mapping ``{family: k}`` splits each corpus family's speakers into its own k groups and
        fold i holds out group i of every family that has one: ``{"emodb": 10, "ravdess": 6}``
        gives 10 folds, each with one EMO-DB speaker, the first six also with four RAVDESS
        actors. Every family in ``speakers`` needs an entry (one family without prefixes: the
        mapping's only entry).

    Returns
    -------
    list of list of str
        Sizes differ by at most one, larger groups first (per family with a mapping).

    Raises
    ------
    ConfigError
        Fewer than 2 speakers, ``folds`` out of range, or a family missing from the mapping.

    Examples
    --------
    >>> make_folds([f"{i:02d}" for i in range(1, 25)], 6)[1]
    ['05', '06', '07', '08']
    >>> spk = [f"a:{i}" for i in range(3)] + [f"b:{i}" for i in range(4)]
    >>> make_folds(spk, {"a": 3, "b": 2})
    [['a:0', 'b:0', 'b:1'], ['a:1', 'b:2', 'b:3'], ['a:2']]
    >>> make_folds(spk, "corpus")
    [['a:0', 'a:1', 'a:2'], ['b:0', 'b:1', 'b:2', 'b:3']]
    """
    ordered = sorted(set(speakers))
    if folds == "corpus":
        families = sorted({_family_of_speaker(s) for s in ordered})
        if len(families) < 2 or "" in families:
            raise ConfigError(
                "folds='corpus' (cross-corpus) needs at least two corpus families "
                f"(speaker ids like 'emodb:03'), found {', '.join(repr(f) for f in families)}"
            )
        return [[s for s in ordered if _family_of_speaker(s) == f] for f in families]
    if isinstance(folds, Mapping):
        by_family: dict[str, list[str]] = {}
        for speaker in ordered:
            by_family.setdefault(_family_of_speaker(speaker), []).append(speaker)
        if list(by_family) == [""] and len(folds) == 1:
            by_family = {next(iter(folds)): by_family[""]}
        missing = sorted(set(by_family) - set(folds))
        if missing:
            raise ConfigError(
                f"folds={dict(folds)}: no fold count for corpus famil{'y' if len(missing) == 1 else 'ies'} "
                f"{', '.join(repr(m) for m in missing)} (speakers look like {by_family[missing[0]][0]!r})"
            )
        groups = {family: make_folds(spk, folds[family]) for family, spk in by_family.items()}
        n = max(len(g) for g in groups.values())
        return [[s for g in groups.values() if i < len(g) for s in g[i]] for i in range(n)]
    if len(ordered) < 2:
        raise ConfigError(f"leave-one-speaker-out needs at least 2 speakers, found {len(ordered)}")
    if folds is None:
        return [[s] for s in ordered]
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= len(ordered):
        raise ConfigError(f"folds={folds!r} must be an int in 2..{len(ordered)} (the number of speakers)")
    return [list(group) for group in np.array_split(np.array(ordered, dtype=object), int(folds))]


def confusion_matrix(true: Sequence[int], pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of true class i predicted as j.

    Examples
    --------
    >>> confusion_matrix([0, 0, 1], [0, 1, 1], 2).tolist()
    [[1, 1], [0, 1]]
    """
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return matrix


def metrics_from_confusion(confusion, classes: Sequence[str]) -> dict[str, Any]:
    """WA, UA and per-class recall of a confusion matrix (rows = true class).

    Parameters
    ----------
    confusion : array-like, shape (K, K), int
    classes : sequence of K str

    Returns
    -------
    dict
        ``n``, ``wa``, ``ua`` (floats in [0, 1], NaN-free: 0.0 for an empty matrix),
        ``recalls`` (class → recall or None when the class has no utterance), ``confusion``.

    Examples
    --------
    >>> m = metrics_from_confusion([[8, 2], [5, 5]], ["a", "b"])
    >>> round(m["wa"], 3), round(m["ua"], 3)
    (0.65, 0.65)
    """
    matrix = np.asarray(confusion, dtype=np.int64)
    if matrix.shape != (len(classes), len(classes)):
        raise ConfigError(f"confusion has shape {matrix.shape}, expected {(len(classes), len(classes))}")
    total = int(matrix.sum())
    support = matrix.sum(axis=1)
    recalls: dict[str, float | None] = {}
    for i, name in enumerate(classes):
        recalls[name] = float(matrix[i, i] / support[i]) if support[i] else None
    defined = [r for r in recalls.values() if r is not None]
    return {
        "n": total,
        "wa": float(np.trace(matrix) / total) if total else 0.0,
        "ua": float(np.mean(defined)) if defined else 0.0,
        "recalls": recalls,
        "support": {name: int(support[i]) for i, name in enumerate(classes)},
        "confusion": matrix.tolist(),
    }


def _family(prediction: dict) -> str:
    return prediction.get("family") or _family_of_speaker(prediction["speaker"]) or prediction["corpus"]


def corpus_metrics(predictions: Sequence[dict], classes: Sequence[str], average: str) -> dict[str, Any]:
    """WA/UA per corpus family, each scored over the classes that family's test utterances have.

    A model trained on several corpora may know classes one test corpus lacks (RAVDESS's calm
    and surprise for EMO-DB); the task on that corpus is its own label set, so the utterance's
    prediction is the argmax over those classes only. Empty unless families mix.

    Parameters
    ----------
    predictions : sequence of dict
        Pooled rows with ``label``, ``speaker``, ``fold``, ``scores[average]`` (K scores).
    classes : sequence of K str
    average : {"logits", "probs"}

    Returns
    -------
    dict
        Family → :func:`metrics_from_confusion` output over that family's ``classes``, plus
        ``classes``, ``folds`` and ``by_average`` (WA/UA with each D4 average).
    """
    families = sorted({_family(p) for p in predictions})
    if len(families) < 2:
        return {}
    out: dict[str, Any] = {}
    for family in families:
        rows = [p for p in predictions if _family(p) == family]
        present = [c for c in classes if any(p["label"] == c for p in rows)]
        columns = [list(classes).index(c) for c in present]
        true = [present.index(p["label"]) for p in rows]
        result: dict[str, Any] = {}
        for avg in _AVERAGES:
            pred = [int(np.argmax(np.asarray(p["scores"][avg])[columns])) for p in rows]
            result[avg] = metrics_from_confusion(confusion_matrix(true, pred, len(present)), present)
        out[family] = {
            **result[average],
            "classes": present,
            "folds": sorted({p["fold"] for p in rows}),
            "by_average": {avg: {"wa": m["wa"], "ua": m["ua"]} for avg, m in result.items()},
        }
    return out


def _fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _run_fold(
    *,
    index: int,
    test_speakers: list[str],
    train_utts: list[Utterance],
    test_utts: list[Utterance],
    fold_dir: Path,
    fingerprint: str,
    classes: list[str],
    configs: dict[str, Any],
    cache_dir,
    device: str,
    precision: str,
    threads: int | None,
    progress: bool,
    command: str,
    shared_trunk: bool = False,
    progress_prefix: str | None = None,
    reuse_checkpoint: Path | None = None,
) -> dict[str, Any]:
    import torch

    from ser_cli.model import load_model, resolve_device, resolve_precision
    from ser_cli.training import extract_segments, predict_logits, train

    result_path = fold_dir / "result.json"
    if result_path.is_file():
        try:
            previous = json.loads(result_path.read_text())
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous and previous.get("fingerprint") == fingerprint:
            if progress:
                print(f"fold {index}: reusing {result_path}", file=sys.stderr, flush=True)
            return previous
    fold_dir.mkdir(parents=True, exist_ok=True)
    if progress:
        print(
            f"fold {index}: test speakers {', '.join(test_speakers)} ({len(test_utts)} utterances), "
            f"training on {len(train_utts)} utterances",
            file=sys.stderr,
            flush=True,
        )
    model_path = fold_dir / "model.pt"
    if reuse_checkpoint is not None:
        own = fold_dir / "work" / reuse_checkpoint.name
        if not own.is_file():
            own.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(reuse_checkpoint, own)
    trained = train(
        train_utts,
        model_path,
        classes=classes,
        work_dir=fold_dir / "work",
        cache_dir=cache_dir,
        device=device,
        precision=precision,
        threads=threads,
        progress=progress,
        progress_prefix=progress_prefix,
        command=command,
        extra_metadata={"fold": {"index": index, "test_speakers": test_speakers}},
        resume_only=reuse_checkpoint is not None,
        **configs,
    )
    loaded = load_model(model_path, device=device)
    torch_device = resolve_device(device)
    precision_used = resolve_precision(precision, torch_device)
    if shared_trunk:
        from ser_cli.trunk import require_shared_trunk

        require_shared_trunk(loaded)
    rows = []
    skipped = []
    t0 = time.perf_counter()
    n_segments = 0
    for utt in test_utts:
        try:
            if shared_trunk:
                logits = _shared_trunk_logits(utt.path, loaded, torch_device)
            else:
                segments = extract_segments(
                    utt.path, loaded.segment_config.score_hop_frames, loaded.feature_config,
                    loaded.segment_config, cache_dir,
                )
        except SerError as exc:
            skipped.append({"path": utt.path, "reason": str(exc)})
            continue
        if not shared_trunk:
            with torch.inference_mode():
                logits = predict_logits(loaded.module, segments, torch_device, precision_used)
        n_segments += len(logits)
        rows.append(
            {
                "utt_id": utt.utt_id,
                "path": utt.path,
                "speaker": utt.speaker,
                "corpus": utt.corpus,
                "family": utt.family or utt.corpus,
                "label": utt.label,
                "segment_logits": np.round(logits.astype(np.float64), 6).tolist(),
            }
        )
    result = {
        "fingerprint": fingerprint,
        "fold": index,
        "test_speakers": test_speakers,
        "n_train_utterances": trained.n_utterances,
        "n_train_segments": trained.n_segments,
        "train_history": trained.history,
        "train_skipped": trained.skipped,
        "skipped": skipped,
        "scoring_seconds": round(time.perf_counter() - t0, 3),
        "n_test_segments": n_segments,
        "utterances": rows,
    }
    _write_atomic(result_path, json.dumps(result) + "\n")
    return result


def _exit_with_parent(parent_pid: int, every: float = 1.0) -> None:
    """Worker initializer: end this process once ``parent_pid`` is no longer its parent.

    A fold worker otherwise outlives an ``evaluate`` killed by SIGTERM or SIGKILL (a batch
    system's time limit, ``kill``), training on for up to an hour and holding the fold's lock,
    so that a resumed run is refused. Checked every ``every`` seconds by a daemon thread; the
    fold's last finished epoch is already on disk, so the resumed run loses at most one epoch.
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every)
        print(f"fold worker {os.getpid()}: evaluate (pid {parent_pid}) has ended; stopping",
              file=sys.stderr, flush=True)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_parallel(tasks: dict[int, dict], jobs: int, threads: int | None, progress: bool) -> list[dict]:
    """Run folds in ``jobs`` spawned processes, which end with this one; results in fold order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(jobs, len(tasks))
    per_fold = threads or max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {
            index: pool.submit(_run_fold, **{**task, "threads": per_fold,
                                             "progress_prefix": f"fold {index}: " if progress else None})
            for index, task in tasks.items()
        }
        return [futures[index].result() for index in tasks]


def _shared_trunk_logits(path: str, loaded, device) -> np.ndarray:
    """Segment logits of one test file by shared-trunk scoring (fp32; ser_cli.trunk)."""
    from ser_cli import audio, features
    from ser_cli.training import _audio_config
    from ser_cli.trunk import shared_trunk_logits

    audio_config = _audio_config()  # as extract_segments decodes
    samples = audio.load(path, audio_config.sample_rate, quality=audio_config.resample_quality)
    spec = features.spectrogram(samples, fmax=loaded.feature_config.fmax)
    if spec.shape[1] == 0:
        raise SerError(f"{path}: too short for one frame ({len(samples)} samples, need at least 640)")
    spec = features.normalize(spec, "utterance", mu=loaded.feature_config.mu)
    logits, _ = shared_trunk_logits(
        loaded.module, spec, loaded.segment_config.score_hop_frames, loaded.segment_config,
        loaded.model_config, device=device,
    )
    return logits


def evaluate(
    utterances: Sequence[Utterance],
    out_dir: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    folds: int | str | Mapping[str, int] | None = None,
    only_folds: Sequence[int] | None = None,
    feature_config=None,
    segment_config=None,
    model_config=None,
    train_config=None,
    scoring_config: ScoringConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    command: str | None = None,
    shared_trunk: bool = False,
    jobs: int = 1,
    reuse_models: str | os.PathLike | None = None,
) -> EvalResult:
    """k-fold leave-one-speaker-out evaluation with pooled predictions.

    Parameters
    ----------
    utterances : sequence of Utterance
        Labelled data (already restricted to ``classes``).
    out_dir : path-like
        Receives ``predictions.csv``, ``metrics.json``, ``metrics.csv``, ``confusion.png``
        (when matplotlib is importable), ``command.txt`` and ``folds/fold_NN/``.
    classes : sequence of str, optional
        Class order; default the sorted labels.
    folds : int, "corpus" or mapping, optional
        Number of contiguous speaker groups (default: one fold per speaker), per corpus
        family ``{"emodb": 10, "ravdess": 6}``, or ``"corpus"`` for cross-corpus folds
        (:func:`make_folds`).
    only_folds : sequence of int, optional
        1-based folds to run; the result is marked partial.
    feature_config, segment_config, model_config, train_config, scoring_config
        As for :func:`ser_cli.training.train`; ``scoring_config.average`` picks the primary D4
        average (both are reported).
    cache_dir, device, precision, threads, progress, command
        As for :func:`ser_cli.training.train`.
    shared_trunk : bool
        Score the test utterances with a shared trunk (:mod:`ser_cli.trunk`, fp32) instead of
        segment by segment; needs ``feature_config.normalization == "utterance"``. Finished
        folds scored the other way are rescored; trained fold models are reused.
    reuse_models : path-like, optional
        A finished evaluation's output folder: each fold resumes from that fold's final
        checkpoint instead of training, so the same models are rescored with another D4
        average, scoring hop, D5 tail (crop recipes) or shared trunk into ``out_dir``. Data,
        folds and every training setting must match, or it is an error.
    jobs : int
        Folds trained at once, each in its own process with ``threads`` (default: cores //
        jobs) torch threads; progress lines are then plain and prefixed by the fold. On a
        2-core CPU two 1-thread folds train about 1.6x faster than one 2-thread fold (the
        network's batch norm and pooling are memory-bound and scale poorly with threads).

    Returns
    -------
    EvalResult

    Raises
    ------
    ConfigError
        Bad ``folds`` / ``only_folds`` or configs.
    CorpusError
        No utterances, or a label outside ``classes``.

    Examples
    --------
    >>> result = evaluate(utts, "eval-emodb", classes=classes, folds=5)  # doctest: +SKIP
    >>> round(100 * result.ua, 1)  # doctest: +SKIP
    """
    from ser_cli.features import FeatureConfig
    from ser_cli.model import ModelConfig
    from ser_cli.segmentation import SegmentConfig
    from ser_cli.training import TrainConfig

    utterances = list(utterances)
    if not utterances:
        raise CorpusError("no utterances to evaluate")
    classes = list(classes) if classes is not None else sorted({u.label for u in utterances})
    class_index = {c: i for i, c in enumerate(classes)}
    for utt in utterances:
        if utt.label not in class_index:
            raise CorpusError(f"{utt.path}: label {utt.label!r} is not one of the classes {classes}")
    segment_config = segment_config or SegmentConfig()
    if shared_trunk and (feature_config or FeatureConfig()).normalization != "utterance":
        raise ConfigError(
            "shared_trunk=True needs normalization='utterance' (--normalization utterance): "
            "per-segment normalised segments are not slices of one spectrogram"
        )
    configs = {
        "feature_config": feature_config or FeatureConfig(),
        "segment_config": segment_config,
        "model_config": model_config or ModelConfig(n_classes=len(classes)),
        "train_config": train_config or TrainConfig(),
        "scoring_config": scoring_config or ScoringConfig(),
    }
    primary = configs["scoring_config"].average
    groups = make_folds([u.speaker for u in utterances], folds)
    n_folds = len(groups)
    if only_folds:
        wanted = sorted({int(f) for f in only_folds})
        bad = [f for f in wanted if not 1 <= f <= n_folds]
        if bad:
            raise ConfigError(f"only_folds={list(only_folds)}: fold(s) {bad} not in 1..{n_folds}")
    else:
        wanted = list(range(1, n_folds + 1))
    partial = len(wanted) < n_folds
    if command is None:
        command = shlex.join(sys.argv)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs_json = {name: config_dict(cfg) for name, cfg in configs.items()}

    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise ConfigError(f"jobs={jobs!r} must be an integer >= 1")
    reuse_dir = Path(reuse_models) if reuse_models is not None else None
    if reuse_dir is not None and reuse_dir.resolve() == out.resolve():
        raise ConfigError(f"reuse_models={str(reuse_dir)!r} is the output folder itself")
    if reuse_dir is not None:
        from ser_cli.training import _CHECKPOINT_NAME  # deferred like train(): it imports torch
    started = time.time()
    tasks = {}
    for index in wanted:
        test_speakers = groups[index - 1]
        test_set = set(test_speakers)
        train_utts = [u for u in utterances if u.speaker not in test_set]
        test_utts = [u for u in utterances if u.speaker in test_set]
        fingerprint = _fingerprint(
            [configs_json, classes, [(u.path, u.speaker, u.label) for u in train_utts],
             [(u.path, u.speaker, u.label) for u in test_utts]]
            + ([{"shared_trunk": True}] if shared_trunk else [])
        )
        reuse_checkpoint = None
        if reuse_dir is not None:
            reuse_checkpoint = reuse_dir / "folds" / f"fold_{index:02d}" / "work" / _CHECKPOINT_NAME
            if not reuse_checkpoint.is_file():
                raise ConfigError(f"{reuse_checkpoint}: missing, so fold {index} cannot be reused")
        tasks[index] = dict(
            reuse_checkpoint=reuse_checkpoint,
            index=index, test_speakers=test_speakers, train_utts=train_utts, test_utts=test_utts,
            fold_dir=out / "folds" / f"fold_{index:02d}", fingerprint=fingerprint, classes=classes,
            configs=configs, cache_dir=cache_dir, device=device, precision=precision,
            threads=threads, progress=progress, command=command, shared_trunk=shared_trunk,
        )
    if jobs > 1 and len(tasks) > 1:
        fold_results = _run_parallel(tasks, jobs, threads, progress)
    else:
        fold_results = [_run_fold(**task) for task in tasks.values()]

    # pool
    predictions = []
    skipped: list[dict[str, str]] = []
    for result in fold_results:
        skipped.extend(result["skipped"])
        for row in result["utterances"]:
            scores = {
                avg: utterance_scores(row["segment_logits"], ScoringConfig(average=avg))
                for avg in _AVERAGES
            }
            predictions.append({**row, "fold": result["fold"], "scores": scores})
    for result in fold_results:
        for item in result["train_skipped"]:
            if item not in skipped:
                skipped.append(item)
    by_average = {}
    for avg in _AVERAGES:
        true = [class_index[p["label"]] for p in predictions]
        pred = [int(np.argmax(p["scores"][avg])) for p in predictions]
        by_average[avg] = metrics_from_confusion(confusion_matrix(true, pred, len(classes)), classes)
    by_corpus = corpus_metrics(predictions, classes, primary)
    per_fold = []
    for result in fold_results:
        rows = [p for p in predictions if p["fold"] == result["fold"]]
        true = [class_index[p["label"]] for p in rows]
        pred = [int(np.argmax(p["scores"][primary])) for p in rows]
        m = metrics_from_confusion(confusion_matrix(true, pred, len(classes)), classes)
        per_fold.append(
            {
                "fold": result["fold"],
                "speakers": result["test_speakers"],
                "n": m["n"],
                "wa": m["wa"],
                "ua": m["ua"],
                "recalls": m["recalls"],
                "n_train_utterances": result["n_train_utterances"],
                "n_train_segments": result["n_train_segments"],
                "final_train_loss": result["train_history"][-1]["loss"] if result["train_history"] else None,
                "train_seconds": round(sum(h["seconds"] for h in result["train_history"]), 3),
            }
        )
    main_metrics = by_average[primary]
    metrics = {
        "classes": classes,
        "primary_average": primary,
        "wa": main_metrics["wa"],
        "ua": main_metrics["ua"],
        "recalls": main_metrics["recalls"],
        "support": main_metrics["support"],
        "confusion": main_metrics["confusion"],
        "n_utterances": main_metrics["n"],
        "by_average": by_average,
        "by_corpus": by_corpus,
        "per_fold": per_fold,
        "n_folds": n_folds,
        "folds_spec": dict(folds) if isinstance(folds, Mapping) else folds,
        "folds_run": wanted,
        "fold_speakers": {str(i + 1): g for i, g in enumerate(groups)},
        "partial": partial,
        "shared_trunk": bool(shared_trunk),
        "epochs": configs["train_config"].epochs,
        "configs": configs_json,
        "command": command,
        "data": describe(utterances),
        "skipped": skipped,
        "seconds": round(time.time() - started, 3),
    }
    _write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    # Written with the results, not at the start: a run that is still going (another process
    # training other folds into the same folder) or was interrupted must not relabel the
    # results of the run that finished.
    _write_atomic(out / "command.txt", command + "\n")
    _write_predictions(out / "predictions.csv", predictions, classes, primary)
    _write_metrics_csv(out / "metrics.csv", metrics, classes)
    note = _plot_confusion(out / "confusion.png", np.asarray(main_metrics["confusion"]), classes,
                           f"WA {100 * main_metrics['wa']:.1f} %  UA {100 * main_metrics['ua']:.1f} %"
                           + (" (partial)" if partial else ""))
    for family, m in by_corpus.items():
        note = _plot_confusion(out / f"confusion_{family}.png", np.asarray(m["confusion"]), m["classes"],
                               f"{family}: WA {100 * m['wa']:.1f} %  UA {100 * m['ua']:.1f} %"
                               + (" (partial)" if partial else "")) or note
    if note and progress:
        print(note, file=sys.stderr, flush=True)
    return EvalResult(
        out_dir=out,
        classes=classes,
        wa=main_metrics["wa"],
        ua=main_metrics["ua"],
        recalls=main_metrics["recalls"],
        confusion=main_metrics["confusion"],
        n_folds=n_folds,
        folds_run=wanted,
        partial=partial,
        n_utterances=main_metrics["n"],
        skipped=skipped,
        metrics=metrics,
    )


def _write_predictions(path: Path, predictions: list[dict], classes: list[str], primary: str) -> None:
    other = "probs" if primary == "logits" else "logits"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["utt", "path", "speaker", "fold", "true", "pred", *classes, f"pred_{other}", "n_segments"]
        )
        for p in predictions:
            scores = p["scores"][primary]
            writer.writerow(
                [p["utt_id"], p["path"], p["speaker"], p["fold"], p["label"],
                 classes[int(np.argmax(scores))], *(f"{s:.6f}" for s in scores),
                 classes[int(np.argmax(p["scores"][other]))], len(p["segment_logits"])]
            )
    os.replace(tmp, path)


def _write_metrics_csv(path: Path, metrics: dict, classes: list[str]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")

    def fmt(value):
        return "" if value is None else f"{value:.6f}"

    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scope", "average", "speakers", "n", "wa", "ua", *(f"recall_{c}" for c in classes)])
        for avg, m in metrics["by_average"].items():
            writer.writerow(["pooled" + (" (partial)" if metrics["partial"] else ""), avg, "", m["n"],
                             fmt(m["wa"]), fmt(m["ua"]), *(fmt(m["recalls"][c]) for c in classes)])
        for family, m in metrics.get("by_corpus", {}).items():
            writer.writerow([f"corpus {family}", metrics["primary_average"], "", m["n"], fmt(m["wa"]),
                             fmt(m["ua"]), *(fmt(m["recalls"].get(c)) for c in classes)])
        for fold in metrics["per_fold"]:
            writer.writerow([f"fold {fold['fold']}", metrics["primary_average"], " ".join(fold["speakers"]),
                             fold["n"], fmt(fold["wa"]), fmt(fold["ua"]),
                             *(fmt(fold["recalls"][c]) for c in classes)])
    os.replace(tmp, path)


def _plot_confusion(path: Path, matrix: np.ndarray, classes: list[str], title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return f"{path}: not written (matplotlib is not installed)"
    support = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, support, out=np.zeros(matrix.shape, dtype=float), where=support > 0)
    size = 1.2 + 0.9 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{matrix[i, j]}\n{100 * share[i, j]:.0f}%", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label="recall share")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
