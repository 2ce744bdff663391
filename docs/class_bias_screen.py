"""Would a per-class offset on the ensemble's scores help? (issue #10: threshold moving for UA)

UA weighs every class's recall the same, and the arg-max of a model trained on imbalanced data
does not: moving the decision toward a rarer class can raise UA. Here one offset per class is
added to the ensemble's utterance log-probabilities (as adding it to the logits does) before the
arg-max. The offsets are chosen on the inner cross-validation of outer fold 1's training
speakers (all four inner folds, so every speaker but EMO-DB 03 and RAVDESS 01-04 is scored by
a model that did not see it), maximising the mean of the corpora's UA on a grid (the first
class's offset fixed at 0, the others in [-LIM, LIM] in steps of STEP); then applied, unchanged,
to the test-fold ensemble, and paired with it there.

    cd docs && python class_bias_screen.py \\
        --inner ser48-adamw+ser48-adamw-f234,ser48-adamw-s1+ser48-adamw-s1-f234 \\
        --test results/default-model/joint,results/default-model/joint-s1

Members are separated by commas and combined as a ``ser-cli ensemble`` model scores (mean
utterance logits); PART+PART is one member whose folds ran as separate reports (inner fold 1,
and inner folds 2-4), joined by ``ensemble_screen.read``. Folders are resolved as there.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ensemble_screen import NAMES, average, members, score  # noqa: E402
from render_paper_tables import fmt_p, mcnemar  # noqa: E402


def ensemble(runs: str) -> tuple[list[str], list[dict]]:
    """(classes, the ensemble's rows) of RUN,RUN,...: members combined by mean utterance logits."""
    classes, tables = members(runs.split(","))
    return classes, average(tables, "logits")


def shifted(rows: list[dict], offset: np.ndarray) -> list[dict]:
    out = []
    for r in rows:
        z = np.log(np.maximum(r["probs"], 1e-6)) + offset
        e = np.exp(z - z.max())
        out.append({**r, "probs": e / e.sum()})
    return out


def mean_corpus_ua(logp: np.ndarray, labels: np.ndarray, corpus: np.ndarray, offset: np.ndarray,
                   n_classes: int) -> float:
    """Mean over corpora of UA (over the classes each corpus has) of arg-max(logp + offset)."""
    pred = np.argmax(logp + offset, axis=1)
    uas = []
    for c in np.unique(corpus):
        m = corpus == c
        recalls = [np.mean(pred[m & (labels == k)] == k) for k in range(n_classes) if np.any(m & (labels == k))]
        uas.append(np.mean(recalls))
    return float(np.mean(uas))


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inner", required=True, help="RUN,RUN: the inner cross-validation's members")
    ap.add_argument("--test", required=True, help="RUN,RUN: the test-fold members")
    ap.add_argument("--lim", type=float, default=1.0)
    ap.add_argument("--step", type=float, default=0.05)
    args = ap.parse_args(argv)

    classes, inner = ensemble(args.inner)
    logp = np.log(np.maximum([r["probs"] for r in inner], 1e-6))
    labels = np.array([classes.index(r["label"]) for r in inner])
    corpus = np.array([r["family"] for r in inner])
    grid = np.round(np.arange(-args.lim, args.lim + args.step / 2, args.step), 6)
    best, best_offset = -1.0, np.zeros(len(classes))
    for rest in itertools.product(grid, repeat=len(classes) - 1):
        offset = np.array((0.0, *rest))
        ua = mean_corpus_ua(logp, labels, corpus, offset, len(classes))
        # ties go to the smallest offsets, so no offset is kept where none helps
        if ua > best + 1e-12 or (abs(ua - best) <= 1e-12 and np.abs(offset).sum() < np.abs(best_offset).sum()):
            best, best_offset = ua, offset
    plain = mean_corpus_ua(logp, labels, corpus, np.zeros(len(classes)), len(classes))
    print(f"inner CV ({len(inner)} utterances): mean corpus UA {100 * plain:.1f} -> {100 * best:.1f} "
          f"with offsets " + ", ".join(f"{c} {o:+.2f}" for c, o in zip(classes, best_offset)))
    test_classes, test = ensemble(args.test)
    if test_classes != classes:
        raise SystemExit("the inner and test runs have different classes")
    for name, rows in (("inner CV", inner), ("test folds", test)):
        before, after = score(rows, classes), score(shifted(rows, best_offset), classes)
        family = {r["utt"]: r["family"] for r in rows}
        for c in before[0]:
            keys = [u for u in before[2] if family[u] == c]
            a, b, p = mcnemar({u: after[2][u] for u in keys}, {u: before[2][u] for u in keys})
            recalls = ", ".join(f"{k} {100 * v:.1f}" for k, v in after[0][c]["recalls"].items())
            print(f"{name} {NAMES.get(c, c)}: UA {100 * before[0][c]['ua']:.1f} -> {100 * after[0][c]['ua']:.1f}, "
                  f"WA {100 * before[0][c]['wa']:.1f} -> {100 * after[0][c]['wa']:.1f}; right only with the offsets "
                  f"{a}, only without {b}, {fmt_p(p)}; recalls {recalls}")


if __name__ == "__main__":
    main(sys.argv[1:])
