"""Does training on more classes help a task with fewer? (issue #10: 7-class models scored on 4)

A model trained on EMO-DB's seven classes (with RAVDESS's six shared ones) can score the 4-class
task: its utterances of neutral, happy, angry and sad, each labelled by the arg-max over those four
classes only (the utterance probabilities of ``predictions.csv`` restricted; an ensemble, written
A+B, averages its members' probabilities first). An ensemble may mix class sets (the 4-class pair
beside the 7-class pair, A+B+C+D): then each member's probabilities are restricted to the four
classes and renormalised before they are averaged, so every member weighs the same. This
compares that with the 4-class model of the same recipe, seed and folds on the same utterances,
reading and scoring both with ``ensemble_screen.py``'s functions: WA and UA per corpus, pooled
UA, and the paired counts of utterances right only with each, with the exact McNemar p. A RUN is resolved as in
``ensemble_screen.py`` (a name under ``results/screening/``, or a path with a ``/``).

    cd docs && python fewer_classes_screen.py ser48-7c-joint ser48-adamw
    cd docs && python fewer_classes_screen.py results/classes48/joint7 results/default-model/joint
    cd docs && python fewer_classes_screen.py ser48-adamw+ser48-adamw-s1+ser48-7c-joint+ser48-7c-joint-s1 ser48-adamw+ser48-adamw-s1

``--classes A,B,...`` (before the runs) scores another subset in the same way, e.g. a model trained
on the nine classes of both corpora (EMO-DB's seven, RAVDESS's calm and surprise) on the 7-class
task, alone or as a third member beside the 7-class pair:

    cd docs && python fewer_classes_screen.py --classes angry,boredom,disgust,fear,happy,neutral,sad \
        ser48-7c-joint+ser48-7c-joint-s1+ser48-9c-joint ser48-7c-joint+ser48-7c-joint-s1
"""

from __future__ import annotations

import json
import sys

import numpy as np

from ensemble_screen import folder, line, read, score
from render_paper_tables import fmt_p, mcnemar

#: The subset scored unless ``--classes`` names another: the 4-class task.
CLASSES = ["neutral", "happy", "angry", "sad"]


def restricted(run: str, subset: list[str]) -> tuple[dict, dict, dict[str, bool], dict[str, str]]:
    """``score`` of ``run`` (A+B: an ensemble) over the utterances and classes of ``subset`` only,
    and each utterance's corpus."""
    parts = run.split("+")
    class_sets = [json.loads((folder(p) / "metrics.json").read_text())["classes"] for p in parts]
    # one class set: restricting each member and averaging is restricting their average
    renormalise = any(c != class_sets[0] for c in class_sets)
    tables = [read(p, c) for p, c in zip(parts, class_sets)]
    utts = sorted(u for u in set.intersection(*(set(t) for t in tables))
                  if tables[0][u]["label"] in subset)
    rows = [{**tables[0][u], "utt": u,
             "probs": np.mean([restrict(t[u]["probs"], c, subset, renormalise)
                               for t, c in zip(tables, class_sets)], axis=0)}
            for u in utts]
    return (*score(rows, subset), {r["utt"]: r["family"] for r in rows})


def restrict(probs: np.ndarray, classes: list[str], subset: list[str], renormalise: bool) -> np.ndarray:
    """A member's probabilities over ``subset`` only (renormalised if asked)."""
    missing = [c for c in subset if c not in classes]
    if missing:
        raise SystemExit(f"a run has no class {', '.join(missing)}: it was trained on {', '.join(classes)}")
    p = probs[[classes.index(c) for c in subset]]
    return p / p.sum() if renormalise else p


def main(here: str, there: str, subset: list[str] = CLASSES) -> None:
    results = {run: restricted(run, subset) for run in (here, there)}
    for run, (by_corpus, pooled, right, _) in results.items():
        print(f"{run}: {line(by_corpus, pooled)} ({len(right)} utterances)")
    (by_corpus, _, right_here, family_of), (_, _, right_there, _) = results[here], results[there]
    if right_here.keys() != right_there.keys():
        raise SystemExit(f"{here} and {there} do not score the same utterances of {', '.join(subset)}")
    for family in [*by_corpus, None]:
        keys = [u for u in right_here if family is None or family_of[u] == family]
        a, b, p = mcnemar({u: right_here[u] for u in keys}, {u: right_there[u] for u in keys})
        print(f"  {family or 'pooled'}: right only with {here} {a}, only with {there} {b}, {fmt_p(p)}")


if __name__ == "__main__":
    args = sys.argv[1:]
    subset = CLASSES
    if args[:1] == ["--classes"] and len(args) > 1:
        subset, args = args[1].split(","), args[2:]
    if len(args) != 2:
        raise SystemExit(__doc__)
    main(*args, subset)
