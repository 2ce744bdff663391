"""Ensembles of screening models on the inner fold, from their committed predictions.

Each member's utterance probabilities (``predictions.csv``: softmax of its mean segment logit)
are averaged over the members; the ensemble's label is the arg-max. The members must have been
trained on the same speakers and scored on the same utterances with the same classes (the
``classes`` of their ``metrics.json``), so this measures what averaging independently trained
models buys, at no training cost. Each corpus is scored over the classes its utterances have,
as ``evaluate`` does (``ser_cli.evaluation.corpus_metrics``).

    python docs/ensemble_screen.py ser12-adamw ser12-adamw-utt crops12-adamw
    python docs/ensemble_screen.py ser48-7c-joint ser48-7c-joint-s1

A RUN is a folder under ``docs/results/screening/``, or any ``evaluate`` output folder given
as a path with a ``/`` (``results/classes48/joint7``): the same averaging pools two test-fold
runs of one configuration with different seeds.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from render_paper_tables import mcnemar

from ser_cli.evaluation import confusion_matrix, corpus_metrics, metrics_from_confusion

SCREEN = Path(__file__).resolve().parent / "results" / "screening"
NAMES = {"emodb": "EMO-DB", "ravdess": "RAVDESS"}


def folder(run: str) -> Path:
    return Path(run) if "/" in run else SCREEN / run


def read(run: str, classes: list[str]) -> dict[str, dict]:
    """utterance id -> row with ``label``, ``family``, ``fold`` and ``probs``.

    ``family`` is the corpus of a run that mixes corpora (speaker ``emodb:03``), else ``""``.
    """
    with open(folder(run) / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = {r["utt"]: {"label": r["true"], "family": r["speaker"].partition(":")[0] if ":" in r["speaker"] else "",
                      "speaker": r["speaker"], "fold": int(r["fold"]),
                      "probs": np.array([float(r[c]) for c in classes])}
           for r in rows}
    if len(out) != len(rows):
        raise SystemExit(f"{run}: an utterance id occurs twice in its predictions.csv")
    return out


def score(rows: list[dict], classes: list[str]) -> tuple[dict, dict, dict[str, bool]]:
    """(per-corpus metrics, pooled metrics, utterance -> right) of rows with ``probs``.

    Per corpus, and for ``right``, an utterance's label is the arg-max over the classes its
    corpus has (``corpus_metrics``); the per-corpus dict is empty for a single corpus.
    """
    scored = [{**r, "corpus": r["family"], "scores": {"logits": r["probs"], "probs": r["probs"]}} for r in rows]
    by_corpus = corpus_metrics(scored, classes, "probs")
    pooled = metrics_from_confusion(confusion_matrix(
        [classes.index(r["label"]) for r in rows], [int(np.argmax(r["probs"])) for r in rows],
        len(classes)), classes)

    def right(r: dict) -> bool:
        present = by_corpus[r["family"]]["classes"] if by_corpus else classes
        return present[int(np.argmax(r["probs"][[classes.index(c) for c in present]]))] == r["label"]

    return by_corpus, pooled, {r["utt"]: right(r) for r in rows}


def members(runs: list[str]) -> tuple[list[str], list[list[dict]]]:
    """(classes, each run's rows over the utterances all runs scored, in one order)."""
    classes = json.loads((folder(runs[0]) / "metrics.json").read_text())["classes"]
    for run in runs[1:]:
        if json.loads((folder(run) / "metrics.json").read_text())["classes"] != classes:
            raise SystemExit(f"{run}: its classes differ from {runs[0]}'s")
    tables = [read(r, classes) for r in runs]
    utts = sorted(set.intersection(*(set(t) for t in tables)))
    return classes, [[{**t[u], "utt": u} for u in utts] for t in tables]


def average(rows_of_members: list[list[dict]]) -> list[dict]:
    """The ensemble's rows: each utterance's probabilities averaged over the members."""
    return [{**rows[0], "probs": np.mean([r["probs"] for r in rows], axis=0)} for rows in zip(*rows_of_members)]


def line(by_corpus: dict, pooled: dict) -> str:
    parts = [f"{NAMES.get(name, name)} WA {100 * m['wa']:.1f} UA {100 * m['ua']:.1f}"
             for name, m in by_corpus.items()]
    return (", ".join(parts + [f"pooled UA {100 * pooled['ua']:.1f}"]) if parts
            else f"WA {100 * pooled['wa']:.1f} UA {100 * pooled['ua']:.1f}")


def main(runs: list[str]) -> None:
    classes, rows = members(runs)
    rights = []
    for run, member in zip(runs, rows):
        by_corpus, pooled, right = score(member, classes)
        rights.append(right)
        print(f"{run:<28} {line(by_corpus, pooled)}")
    by_corpus, pooled, right_ens = score(average(rows), classes)
    print(f"{'ensemble of ' + str(len(runs)):<28} {line(by_corpus, pooled)}")
    for run, right in zip(runs, rights):
        only_ens, only_run, p = mcnemar(right_ens, right)
        print(f"  vs {run}: right only with the ensemble {only_ens}, only with {run} {only_run}, p = {p:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
