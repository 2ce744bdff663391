"""Ensembles of screening models on the inner fold, from their committed predictions.

Each member's utterance probabilities (``predictions.csv``: softmax of its mean segment logit)
are averaged over the members; the ensemble's label is the arg-max. All members were trained on
the same 627 utterances and scored on the same 233 (docs/results.md, "Screening the levers"), so
this measures what averaging independently trained models buys, at no training cost.

    python docs/ensemble_screen.py ser12-adamw ser12-adamw-utt crops12-adamw
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from render_paper_tables import mcnemar

from ser_cli.evaluation import confusion_matrix, metrics_from_confusion

SCREEN = Path(__file__).resolve().parent / "results" / "screening"
CLASSES = ["neutral", "happy", "angry", "sad"]


def read(run: str) -> dict[str, tuple[str, np.ndarray]]:
    """utterance (``corpus:utt``) -> (true label, class probabilities)."""
    with open(SCREEN / run / "predictions.csv", newline="") as f:
        return {f"{r['speaker'].split(':')[0]}:{r['utt']}": (r["true"], np.array([float(r[c]) for c in CLASSES]))
                for r in csv.DictReader(f)}


def metrics(labels: dict[str, tuple[str, str]], corpus: str | None = None) -> dict:
    rows = [(CLASSES.index(t), CLASSES.index(p)) for u, (t, p) in labels.items()
            if corpus is None or u.startswith(corpus + ":")]
    true, pred = zip(*rows)
    return metrics_from_confusion(confusion_matrix(true, pred, len(CLASSES)), CLASSES)


def ua_by_corpus(labels: dict[str, tuple[str, str]]) -> str:
    parts = [f"{name} WA {100 * m['wa']:.1f} UA {100 * m['ua']:.1f}"
             for name, m in (("EMO-DB", metrics(labels, "emodb")), ("RAVDESS", metrics(labels, "ravdess")))]
    return ", ".join(parts) + f", pooled UA {100 * metrics(labels)['ua']:.1f}"


def main(runs: list[str]) -> None:
    members = [read(r) for r in runs]
    utts = sorted(set.intersection(*(set(m) for m in members)))
    for run, m in zip(runs, members):
        print(f"{run:<28} {ua_by_corpus({u: (m[u][0], CLASSES[int(np.argmax(m[u][1]))]) for u in utts})}")
    mean = {u: (members[0][u][0], CLASSES[int(np.argmax(np.mean([m[u][1] for m in members], axis=0)))])
            for u in utts}
    print(f"{'ensemble of ' + str(len(runs)):<28} {ua_by_corpus(mean)}")
    right = {u: t == p for u, (t, p) in mean.items()}
    for run, m in zip(runs, members):
        only_ens, only_run, p = mcnemar(right, {u: m[u][0] == CLASSES[int(np.argmax(m[u][1]))] for u in utts})
        print(f"  vs {run}: right only with the ensemble {only_ens}, only with {run} {only_run}, p = {p:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
