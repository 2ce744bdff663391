"""Ensembles of screening models on the inner fold, from their committed predictions.

Each member's utterance probabilities (``predictions.csv``: softmax of its mean segment logit)
are averaged over the members; the ensemble's label is the arg-max. The members must have been
trained on the same speakers and scored on the same utterances with the same classes (the
``classes`` of their ``metrics.json``), so this measures what averaging independently trained
models buys, at no training cost. Each corpus is scored over the classes its utterances have,
as ``evaluate`` does (``ser_cli.evaluation.corpus_metrics``).

    python docs/ensemble_screen.py ser12-adamw ser12-adamw-utt crops12-adamw
    python docs/ensemble_screen.py ser48-7c-joint ser48-7c-joint-s1
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


def read(run: str, classes: list[str]) -> dict[str, dict]:
    """utterance id -> row with ``label``, ``family``, ``fold`` and ``probs``.

    ``family`` is the corpus of a run that mixes corpora (speaker ``emodb:03``), else ``""``.
    """
    with open(SCREEN / run / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = {r["utt"]: {"label": r["true"], "family": r["speaker"].partition(":")[0] if ":" in r["speaker"] else "",
                      "speaker": r["speaker"], "fold": int(r["fold"]),
                      "probs": np.array([float(r[c]) for c in classes])}
           for r in rows}
    if len(out) != len(rows):
        raise SystemExit(f"{run}: an utterance id occurs twice in its predictions.csv")
    return out


def summary(rows: list[dict], classes: list[str]) -> tuple[str, dict[str, bool]]:
    """One line of WA/UA per corpus and pooled, and utterance -> right (per-corpus labels)."""
    scored = [{**r, "corpus": r["family"], "scores": {"logits": r["probs"], "probs": r["probs"]}} for r in rows]
    by_corpus = corpus_metrics(scored, classes, "probs")
    pooled = metrics_from_confusion(confusion_matrix(
        [classes.index(r["label"]) for r in rows], [int(np.argmax(r["probs"])) for r in rows],
        len(classes)), classes)
    parts = [f"{NAMES.get(name, name)} WA {100 * m['wa']:.1f} UA {100 * m['ua']:.1f}"
             for name, m in by_corpus.items()]
    line = (", ".join(parts + [f"pooled UA {100 * pooled['ua']:.1f}"]) if parts
            else f"WA {100 * pooled['wa']:.1f} UA {100 * pooled['ua']:.1f}")

    def right(r: dict) -> bool:
        present = by_corpus[r["family"]]["classes"] if by_corpus else classes
        return present[int(np.argmax(r["probs"][[classes.index(c) for c in present]]))] == r["label"]

    return line, {r["utt"]: right(r) for r in rows}


def main(runs: list[str]) -> None:
    classes = json.loads((SCREEN / runs[0] / "metrics.json").read_text())["classes"]
    for run in runs[1:]:
        if json.loads((SCREEN / run / "metrics.json").read_text())["classes"] != classes:
            raise SystemExit(f"{run}: its classes differ from {runs[0]}'s")
    members = [read(r, classes) for r in runs]
    utts = sorted(set.intersection(*(set(m) for m in members)))
    rights = []
    for run, m in zip(runs, members):
        line, right = summary([{**m[u], "utt": u} for u in utts], classes)
        rights.append(right)
        print(f"{run:<28} {line}")
    mean = [{**members[0][u], "utt": u, "probs": np.mean([m[u]["probs"] for m in members], axis=0)}
            for u in utts]
    line, right_ens = summary(mean, classes)
    print(f"{'ensemble of ' + str(len(runs)):<28} {line}")
    for run, right in zip(runs, rights):
        only_ens, only_run, p = mcnemar(right_ens, right)
        print(f"  vs {run}: right only with the ensemble {only_ens}, only with {run} {only_run}, p = {p:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
