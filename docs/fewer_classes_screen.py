"""Does training on more classes help the 4-class task? (issue #10: the 7-class models, scored on 4)

A model trained on EMO-DB's seven classes (with RAVDESS's six shared ones) can score the 4-class
task: its utterances of neutral, happy, angry and sad, each labelled by the arg-max over those four
classes only (the utterance probabilities of ``predictions.csv``, the softmax of the mean segment
logits, restricted; an ensemble averages its members' probabilities first, as
``ensemble_screen.py`` does). This compares that with the 4-class model of the same recipe, seed and
folds, on the same utterances: WA and UA per corpus, pooled UA, and the paired counts of utterances
right only with each, with the exact McNemar p. A run of several members is written A+B.

    cd docs/results/screening && python ../../fewer_classes_screen.py ser48-7c-joint ser48-adamw
    cd docs/results && python ../fewer_classes_screen.py classes48/joint7 default-model/joint
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_paper_tables import mcnemar  # noqa: E402

CLASSES = ("neutral", "happy", "angry", "sad")
_NOT_CLASSES = {"utt", "path", "speaker", "fold", "true", "pred", "pred_probs", "n_segments"}


def labels(members: list[str]) -> dict[tuple[str, str], tuple[str, str]]:
    """(corpus family, utterance) -> (true, predicted over CLASSES), members' probabilities averaged."""
    probs: dict[tuple[str, str], list] = {}
    truth = {}
    for run in members:
        with open(Path(run) / "predictions.csv", newline="") as f:
            for row in csv.DictReader(f):
                if row["true"] not in CLASSES:
                    continue
                missing = [c for c in CLASSES if c not in row]
                if missing:
                    raise SystemExit(f"{run}: no score column for {', '.join(missing)}")
                key = (row["speaker"].split(":")[0], row["utt"])
                truth[key] = row["true"]
                probs.setdefault(key, []).append([float(row[c]) for c in CLASSES])
    sizes = {len(p) for p in probs.values()}
    if sizes != {len(members)}:
        raise SystemExit(f"{'+'.join(members)}: the members do not score the same utterances")
    return {k: (truth[k], CLASSES[int(np.argmax(np.mean(p, axis=0)))]) for k, p in probs.items()}


def summary(result: dict, family: str | None = None) -> tuple[float, float]:
    rows = [v for k, v in result.items() if family is None or k[0] == family]
    wa = 100 * np.mean([t == p for t, p in rows])
    ua = 100 * np.mean([np.mean([t == p for t, p in rows if t == c]) for c in CLASSES])
    return wa, ua


def main(here: str, there: str) -> None:
    a, b = labels(here.split("+")), labels(there.split("+"))
    if a.keys() != b.keys():
        raise SystemExit(f"{here} and {there} do not score the same 4-class utterances")
    for name, result in ((here, a), (there, b)):
        e, r = summary(result, "emodb"), summary(result, "ravdess")
        print(f"{name}: EMO-DB WA {e[0]:.1f} UA {e[1]:.1f}, RAVDESS WA {r[0]:.1f} UA {r[1]:.1f}, "
              f"pooled UA {summary(result)[1]:.1f} ({len(result)} utterances)")
    for family in ("emodb", "ravdess", None):
        keys = [k for k in a if family is None or k[0] == family]
        only_a, only_b, p = mcnemar({k: a[k][0] == a[k][1] for k in keys}, {k: b[k][0] == b[k][1] for k in keys})
        print(f"  {family or 'pooled'}: right only with {here} {only_a}, only with {there} {only_b}, p = {p:.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
